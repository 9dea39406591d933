"""Foreign structures with a key missing, a key too many, or the wrong nesting.

Valid Keras lists, ONNX mappings, Flax trees and TF1 variable mappings come from
exporting a random module; one structural change is then made inside a layer.
Each must be refused with ``LayoutError`` or ``TypeError`` whose message names
where in the structure the problem is, and nothing is built.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN
from numpyrnn.spec import RNNSpec

from .mutations import REFUSED
from .profiles import budget

CLASSES = {"GRU": NumpyGRU, "LSTM": NumpyLSTM, "RNN_TANH": NumpyRNN}
#: Per layout: its cells, and keys a layer may lack without being wrong.
LAYOUTS = {
    "keras": (("GRU", "LSTM", "RNN_TANH"), set()),
    "onnx": (("GRU", "LSTM", "RNN_TANH"), {"B"}),
    "flax": (("GRU", "LSTM", "RNN_TANH"), set()),
    "tf1": (("LSTM",), set()),
}
KWARGS = {"onnx": {"linear_before_reset": 1}, "tf1": {"forget_bias": 0.0}}


def _export(name: str, module) -> Any:
    return module.to_tf1(forget_bias=0.0) if name == "tf1" else getattr(module, f"to_{name}")()


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a node below the layer list (dict keys and list indices)."""
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(path + (k,))
            out.extend(_paths(v, path + (k,)))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            out.append(path + (i,))
            out.extend(_paths(v, path + (i,)))
    return out


def _get(node: Any, path: tuple) -> Any:
    for p in path:
        node = node[p]
    return node


def _set(node: Any, path: tuple, value: Any, *, delete: bool = False) -> Any:
    """A copy of ``node`` (containers only) with ``path`` replaced or deleted."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    new: Any = dict(node) if isinstance(node, dict) else list(node)
    if delete and not rest:
        del new[head]
    else:
        new[head] = _set(node[head], rest, value, delete=delete)
    return new


@st.composite
def mutated(draw, name: str):
    cells, optional = LAYOUTS[name]
    mode = draw(st.sampled_from(cells), label="cell")
    layers = draw(st.integers(1, 3), label="layers")
    bi = draw(st.booleans(), label="bidirectional")
    spec = RNNSpec(mode, input_size=draw(st.integers(1, 4)), hidden_size=draw(st.integers(2, 5)),
                   num_layers=layers, bidirectional=bi, bias=True)
    torch.manual_seed(draw(st.integers(0, 1000)))
    module = CLASSES[mode](**spec.module_kwargs())
    source = _export(name, module)
    # only changes inside one layer: changing the list of layers itself can describe another valid stack
    every = _paths(source)
    paths = [p for p in every if len(p) >= 2]
    containers = [p for p in every if isinstance(_get(source, p), (dict, list, tuple))]
    dict_keys = [p for p in paths if isinstance(_get(source, p[:-1]), dict) and p[-1] not in optional]
    leaves = [p for p in paths if isinstance(_get(source, p), np.ndarray)]
    kinds = ["extra_key", "wrap_leaf"] + (["drop_key"] if dict_keys else []) + (["dict_to_list"] if containers else [])
    kind = draw(st.sampled_from(kinds), label="kind")
    if kind == "drop_key":
        path = draw(st.sampled_from(dict_keys), label="path")
        bad = _set(source, path, None, delete=True)
        names = [str(k) for k in path]
    elif kind == "extra_key":
        dict_paths = [p for p in containers if isinstance(_get(source, p), dict)]
        if dict_paths:
            path = draw(st.sampled_from(dict_paths), label="path")
            bad = _set(source, path, {**_get(source, path), "surplus": np.zeros(2, np.float32)})
            names = ["surplus"]
        else:  # Keras: lists only; one array too many in a layer's list
            list_paths = [p for p in containers if isinstance(_get(source, p), (list, tuple))]
            path = draw(st.sampled_from(list_paths), label="path")
            bad = _set(source, path, [*_get(source, path), np.zeros(2, np.float32)])
            names = [str(k) for k in path]
    elif kind == "wrap_leaf":
        path = draw(st.sampled_from(leaves), label="path")
        bad = _set(source, path, [_get(source, path)])
        names = [str(k) for k in path]
    else:
        path = draw(st.sampled_from(containers), label="path")
        node = _get(source, path)
        bad = _set(source, path, list(node.values()) if isinstance(node, dict) else {str(i): v for i, v in enumerate(node)})
        names = [str(k) for k in path]
    return mode, bad, kind, path, names


def _build(name: str, mode: str, source: Any):
    kwargs = KWARGS.get(name, {}) if (name, mode) != ("onnx", "LSTM") and (name, mode) != ("onnx", "RNN_TANH") else {}
    return getattr(CLASSES[mode], f"from_{name}")(source, **kwargs)


@pytest.mark.parametrize("name", list(LAYOUTS))
@budget("foreign_structures", 150)
@given(data=st.data())
def test_structural_damage_is_refused_naming_the_place(name, data):
    mode, bad, kind, path, names = data.draw(mutated(name), label="mutation")
    with pytest.raises(REFUSED) as info:
        _build(name, mode, bad)
    msg = str(info.value)
    # the message points into the structure: a key on the damaged path, or an index path like [1][2]
    pointed = any(re.search(rf"(^|\W){re.escape(n)}(\W|$)", msg) for n in names if not n.isdigit())
    indexed = re.search(r"\[\d+\]", msg) is not None
    assert pointed or indexed, f"{kind} at {path}: message names no place: {msg}"
