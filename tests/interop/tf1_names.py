"""TF1 variable names, written by hand as TensorFlow 1 scopes them (not through numpyrnn's export)."""

from __future__ import annotations

import numpy as np

SCOPES = {"lstm": "lstm_cell", "rnn": "basic_rnn_cell", "gru": "cudnn_compatible_gru_cell"}


def tf1_names(layers: list, cell: str) -> dict[str, np.ndarray]:
    """``layers[k]`` is one cell's ``{leaf: array}`` or ``{"fw": ..., "bw": ...}``.

    One layer: ``rnn/<cell>/<leaf>``; a stack: ``rnn/multi_rnn_cell/cell_<k>/<cell>/<leaf>``;
    bidirectional: ``stack_bidirectional_rnn/cell_<k>/bidirectional_rnn/<fw|bw>/<cell>/<leaf>``.
    """
    scope = SCOPES[cell]
    out = {}
    for k, layer in enumerate(layers):
        if "fw" in layer:
            for d in ("fw", "bw"):
                for leaf, a in layer[d].items():
                    out[f"stack_bidirectional_rnn/cell_{k}/bidirectional_rnn/{d}/{scope}/{leaf}"] = a
        else:
            base = f"rnn/{scope}" if len(layers) == 1 else f"rnn/multi_rnn_cell/cell_{k}/{scope}"
            for leaf, a in layer.items():
                out[f"{base}/{leaf}"] = a
    return out


def random_cell(rng: np.random.Generator, cell: str, width: int, H: int, proj: int | None = None) -> dict:
    """Random variables of one TF1 cell in TensorFlow's shapes."""
    R = proj or H

    def u(*shape: int) -> np.ndarray:
        return rng.uniform(-0.6, 0.6, shape).astype(np.float32)

    if cell == "gru":
        return {"gates/kernel": u(width + H, 2 * H), "gates/bias": u(2 * H),
                "candidate/input_projection/kernel": u(width, H), "candidate/input_projection/bias": u(H),
                "candidate/hidden_projection/kernel": u(H, H), "candidate/hidden_projection/bias": u(H)}
    G = 4 if cell == "lstm" else 1
    out = {"kernel": u(width + R, G * H), "bias": u(G * H)}
    if proj:
        out["projection/kernel"] = u(H, proj)
    return out
