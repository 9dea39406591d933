"""The TensorFlow checkpoint cases, shared by the fixture tests and the live TensorFlow tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from numpyrnn.formats import tfckpt

DATA = Path(__file__).resolve().parent.parent / "data" / "tf_checkpoints"

#: case -> module names it holds (in the order read returns them)
CASES = {
    "lstm_stack": ["rnn"],
    "lstm_proj": ["rnn"],
    "basic": ["decoder/rnn", "encoder/rnn"],
    "bidir": ["bidirectional_rnn"],
    "stack_bidir": ["stack_bidirectional_rnn"],
    "independent": ["bidirectional_rnn/bw", "bidirectional_rnn/fw"],
    "stacked_multi": ["encoder"],
    "block_cell": ["rnn"],
    "cudnn_lstm": ["cudnn_lstm/rnn"],
    "cudnn_lstm_bidir": ["cudnn_lstm/stack_bidirectional_rnn"],
    "cudnn_gru": ["cudnn_gru/rnn"],
    "keras_weights": ["layer_with_weights-0", "layer_with_weights-1", "layer_with_weights-2"],
    "keras_object": ["model/layer_with_weights-0", "model/layer_with_weights-1", "model/layer_with_weights-2"],
    "keras_savedmodel": ["layer_with_weights-0", "layer_with_weights-1", "layer_with_weights-2"],
    "keras_cu_dnnlstm": ["cu_dnnlstm"],
    "keras_cu_dnngru": ["cu_dnngru"],
}
#: cases whose path is a directory (a SavedModel), not a checkpoint prefix
FOLDERS = {"keras_savedmodel"}
#: Keras layer names in the model the checkpoints were written from, in layer order.
KERAS_LAYERS = ["lstm", "bidi", "simple"]


def expected(data, case: str, k: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """What TensorFlow computed for the case's ``k``-th module, ``name``: ``(output, its input)``."""
    x = data["x"]
    if case.startswith("keras_cu"):
        return data[f"y:{name}"], x
    if case.startswith("keras"):
        return data[f"y:{KERAS_LAYERS[k]}"], (x if k == 0 else data[f"y:{KERAS_LAYERS[k - 1]}"])
    want = data["y"] if "y" in data else data[f"y:{name}"]
    return want, x[::-1].copy() if name.endswith("/bw") else x


def check_case(directory: Path, case: str) -> None:
    """Every module of the case's checkpoint reproduces TensorFlow's saved output."""
    data = np.load(directory / f"{case}.npz")
    modules = tfckpt.load_all_from_checkpoint(directory / (case if case in FOLDERS else f"{case}.ckpt"))
    assert list(modules) == CASES[case]
    for k, (name, module) in enumerate(modules.items()):
        want, inp = expected(data, case, k, name)
        with torch.no_grad():
            got = module(torch.from_numpy(inp))[0].numpy()
        if name.endswith("/bw"):
            got = got[::-1]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{case}: {name}")
