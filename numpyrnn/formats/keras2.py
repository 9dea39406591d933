r"""Keras 2 (``tf_keras``) specifics for a Keras file reader: ``CuDNNGRU``/``CuDNNLSTM`` weights and old defaults.

Keras 2's cuDNN layers store one flat bias of ``2*G*H`` values: the input-side
biases of every gate, then the recurrent-side ones, the gates in the Keras order
of the matching plain layer. Kernels are the plain layer's:

================  ===============  ========================================================================
layer             weights          torch
================  ===============  ========================================================================
``CuDNNLSTM``     ``kernel``       ``(I, 4*H)``, gates ``i, f, c, o`` (torch's ``i, f, g, o``)
                  ``recurrent``    ``(H, 4*H)``
                  ``bias``         ``(8*H,)``: ``[:4H]`` -> ``bias_ih``, ``[4H:]`` -> ``bias_hh``
``CuDNNGRU``      ``kernel``       ``(I, 3*H)``, gates ``z, r, h``
                  ``recurrent``    ``(H, 3*H)``
                  ``bias``         ``(6*H,)``: the ``(2, 3*H)`` bias of ``GRU(reset_after=True)``, flattened
================  ===============  ========================================================================

cuDNN's GRU applies the reset gate after the recurrent matmul, like ``nn.GRU``
and ``GRU(reset_after=True)``. Both layers have fixed activations (tanh and the
logistic sigmoid). The plain Keras 2 layers' old default
``recurrent_activation="hard_sigmoid"`` is refused (:func:`check_config`).

These helpers take the arrays a reader found (by the layer's ``weight_names``)
and return modules through :meth:`NumpyLSTM.from_keras` / :meth:`NumpyGRU.from_keras`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import LayoutError

__all__ = ["CUDNN_LAYERS", "REFUSES", "check_config", "cudnn_weights", "build_cudnn"]

#: Keras 2 cuDNN layer -> (numpyrnn cell, gates).
CUDNN_LAYERS = {"CuDNNLSTM": ("lstm", 4), "CuDNNGRU": ("gru", 3)}

REFUSES = {
    "hard_sigmoid": (
        "Keras 2's hard_sigmoid is clip(0.2 * x + 0.5, 0, 1), a piecewise-linear gate; torch's LSTM and GRU "
        "compute the logistic sigmoid, so every step would differ"
    ),
    "activation": "torch's LSTM and GRU compute tanh for the candidate and cell output; Keras 2 computes {found}",
    "recurrent_activation": "torch's LSTM and GRU compute the logistic sigmoid for their gates; Keras 2 computes {found}",
    "reset_after=False": (
        "GRU(reset_after=False) (the Keras 2 default) applies the reset gate before the recurrent matmul; "
        "nn.GRU applies it after"
    ),
}


def _name(value: Any) -> str:
    if isinstance(value, Mapping):  # a serialised function: {"class_name": ..., "config": ...}
        return str(value.get("config", {}).get("name") or value.get("class_name"))
    return str(value)


def check_config(class_name: str, config: Mapping[str, Any], *, where: str = "layer") -> None:
    """Refuse a Keras 2 recurrent layer config that torch cannot compute, with the reason.

    Args:
        class_name: the layer's class, e.g. ``"LSTM"``, ``"GRU"``, ``"CuDNNGRU"``.
        config: its ``config`` dict from ``model_config``.
        where: how messages name the layer (file and layer name).

    Raises:
        LayoutError: ``recurrent_activation`` other than sigmoid (``hard_sigmoid``, the old
            default, named as such), ``activation`` other than tanh, or a GRU without
            ``reset_after``.
    """
    if class_name in CUDNN_LAYERS:
        return
    if class_name in ("LSTM", "GRU"):
        rec = _name(config.get("recurrent_activation", "hard_sigmoid"))
        if rec == "hard_sigmoid":
            raise LayoutError(f"{where}: {class_name}(recurrent_activation='hard_sigmoid') cannot be loaded into "
                              f"torch: " + REFUSES["hard_sigmoid"])
        if rec != "sigmoid":
            raise LayoutError(f"{where}: {class_name}(recurrent_activation={rec!r}) cannot be loaded into torch: "
                              + REFUSES["recurrent_activation"].format(found=rec))
        act = _name(config.get("activation", "tanh"))
        if act != "tanh":
            raise LayoutError(f"{where}: {class_name}(activation={act!r}) cannot be loaded into torch: "
                              + REFUSES["activation"].format(found=act))
    if class_name == "GRU" and not config.get("reset_after", False):
        raise LayoutError(f"{where}: GRU(reset_after=False) cannot be loaded into torch: " + REFUSES["reset_after=False"])


def cudnn_weights(class_name: str, weights: Sequence[Any], *, where: str = "layer") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """A cuDNN layer's weights as the plain Keras layer's ``get_weights()`` list, plus the recurrent biases.

    Args:
        class_name: ``"CuDNNLSTM"`` or ``"CuDNNGRU"``.
        weights: ``[kernel, recurrent_kernel, bias]``, or 6 arrays for a ``Bidirectional`` wrapper
            (forward then backward).

    Returns:
        ``(keras, recurrent)``: for ``CuDNNGRU`` the ``GRU(reset_after=True)`` list (bias ``(2, 3*H)``) and
        no recurrent biases; for ``CuDNNLSTM`` the ``LSTM`` list with the input-side bias ``(4*H,)`` and,
        per direction, the recurrent-side bias that goes to torch's ``bias_hh``.

    Raises:
        LayoutError: another layer, another number of arrays, or shapes that are not the layer's.
    """
    if class_name not in CUDNN_LAYERS:
        raise LayoutError(f"{where}: {class_name!r} is not a Keras 2 cuDNN layer; expected one of {sorted(CUDNN_LAYERS)}")
    cell, G = CUDNN_LAYERS[class_name]
    if len(weights) not in (3, 6):
        raise LayoutError(f"{where}: {len(weights)} arrays; a {class_name} has 3 (kernel, recurrent_kernel, bias) "
                          f"and a Bidirectional({class_name}) 6")
    keras: list[np.ndarray] = []
    recurrent: list[np.ndarray] = []
    for d in range(len(weights) // 3):
        names = ("kernel", "recurrent_kernel", "bias")
        k, rk, b = (np.asarray(w) for w in weights[3 * d:3 * d + 3])
        at = [f"{where}[{3 * d + j}] ({n})" for j, n in enumerate(names)]
        if rk.ndim != 2 or rk.shape[0] < 1 or rk.shape[1] != G * rk.shape[0]:
            raise LayoutError(f"{at[1]}: expected (units, {G}*units) for a {class_name}, got shape {rk.shape}")
        H = int(rk.shape[0])
        if k.ndim != 2 or k.shape[1] != G * H:
            raise LayoutError(f"{at[0]}: expected (input, {G}*units={G * H}) for a {class_name}, got shape {k.shape}")
        if b.shape != (2 * G * H,):
            raise LayoutError(f"{at[2]}: expected the flat ({2 * G}*units={2 * G * H},) bias of a {class_name} "
                              f"(input half, then recurrent half), got shape {b.shape}")
        if cell == "gru":
            keras += [k, rk, b.reshape(2, G * H)]
        else:
            keras += [k, rk, b[:G * H]]
            recurrent.append(b[G * H:])
    return keras, recurrent


def build_cudnn(class_name: str, weights: Sequence[Any], *, where: str = "layer", batch_first: bool = True,
                dropout: float = 0.0, device: Any = None, dtype: Any = None, freeze: bool = False, **_: Any) -> Any:
    """The ``NumpyLSTM``/``NumpyGRU`` that computes a Keras 2 ``CuDNNLSTM``/``CuDNNGRU`` (or its Bidirectional).

    ``weights`` is one layer's arrays (3, or 6 for a ``Bidirectional``), or a list
    of such lists for a stack, bottom first. ``bias_ih`` gets the input half of
    the flat bias, ``bias_hh`` the recurrent half, exactly as cuDNN holds them.
    Other arguments as in ``from_keras``.
    """
    import torch

    from ..modules import NumpyGRU, NumpyLSTM

    stack = bool(weights) and not hasattr(weights[0], "shape") and isinstance(weights[0], (list, tuple))
    layers = list(weights) if stack else [weights]
    keras, recurrent = [], []
    for k, layer in enumerate(layers):
        got = cudnn_weights(class_name, layer, where=f"{where}[{k}]" if stack else where)
        keras.append(got[0])
        recurrent.append(got[1])
    cls: Any = NumpyLSTM if CUDNN_LAYERS[class_name][0] == "lstm" else NumpyGRU
    module = cls.from_keras(keras if stack else keras[0], batch_first=batch_first, dropout=dropout, device=device,
                            dtype=dtype, freeze=freeze)
    with torch.no_grad():
        for k, biases in enumerate(recurrent):
            for suffix, b in zip(("", "_reverse"), biases):
                param = getattr(module, f"bias_hh_l{k}" + suffix)
                param.copy_(torch.as_tensor(np.ascontiguousarray(b), dtype=param.dtype))
    return module
