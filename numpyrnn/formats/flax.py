"""Flax linen checkpoints: ``flax.serialization.to_bytes`` ``.msgpack`` files.

The layout is declared in :mod:`numpyrnn.layouts.flax`. The file is decoded
with ``msgpack`` directly (Flax and jax are not imported); array records are
checked (dtype, shape against the byte count) before they become arrays.

Params carry no graph: nothing in a checkpoint says that ``RNN_1`` reads
``RNN_0``'s output (a ``Dense`` may sit between them, and its params may even
live elsewhere). So every recurrent layer is its own module, keyed by its param
path; ``stack=True`` asserts that they all feed each other, bottom first.
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .. import safeio
from ..errors import LayoutError
from ..files import _one_line, fail, read_bytes, write_bytes
from ..layouts.flax import FLAX
from . import Format, ModelFile, check_cell, module_class, option, register, try_entry

__all__ = ["read_msgpack", "flax_layers", "flax_named_layers", "write_msgpack", "read", "write", "LAYOUT"]

LAYOUT = FLAX

_FLOAT_NAMES = {"float16", "float32", "float64", "bfloat16"}



def _msgpack(path: Any = None, verb: str = "reading") -> Any:
    try:
        import msgpack
    except ImportError:
        where = f"{Path(path).name}: " if path is not None else ""
        raise LayoutError(f"{where}{verb} Flax .msgpack files needs the msgpack package: "
                          f"pip install \"numpyrnn[files]\"") from None
    return msgpack


def _decode_array(data: bytes, where: str) -> np.ndarray:
    msgpack = _msgpack()
    try:
        shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
        name = dtype_name.decode() if isinstance(dtype_name, bytes) else str(dtype_name)
        shape = tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise ValueError(f"negative dimension in shape {shape}")
    except Exception as exc:  # noqa: BLE001 - any malformed record
        raise LayoutError(f"{where}: malformed array record ({_one_line(exc)})") from None
    if name not in _FLOAT_NAMES and not re.fullmatch(r"u?int(8|16|32|64)|bool", name):
        raise LayoutError(f"{where}: array dtype {name!r} is not a plain numeric type; refused")
    if name == "bfloat16":
        dtype = np.dtype(np.uint16)
    else:
        dtype = np.dtype(name)
    if math.prod(shape) * dtype.itemsize != len(buffer):
        raise LayoutError(f"{where}: array record declares shape {shape} of {name} "
                          f"({math.prod(shape) * dtype.itemsize} bytes) but holds {len(buffer)} bytes: corrupted")
    arr = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    if name == "bfloat16":  # keep the values: widen to float32 exactly
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def read_msgpack(path: str | os.PathLike) -> dict:
    """A Flax ``msgpack`` checkpoint (``flax.serialization.to_bytes``) as a nested dict of arrays.

    Decoded with ``msgpack`` directly: Flax and jax are not imported. Chunked
    large arrays are joined back.

    Raises:
        LayoutError: the file is not such a checkpoint, or an array record is bad.
    """
    path = Path(path)
    msgpack = _msgpack(path)

    def ext_hook(code: int, data: bytes) -> Any:
        if code in (1, 3):  # ndarray, numpy scalar
            return _decode_array(data, path.name)
        raise LayoutError(f"{path.name}: unsupported msgpack extension type {code}")

    try:
        tree = msgpack.unpackb(read_bytes(path), ext_hook=ext_hook, raw=False, strict_map_key=False)
    except LayoutError:
        raise
    except RecursionError:
        raise fail(path, f"nests deeper than {safeio.current_limits().depth} levels; "
                         f"{safeio.how_to_raise('depth')}") from None
    except Exception as exc:  # noqa: BLE001 - msgpack raises several unrelated types
        raise fail(path, f"not a readable Flax msgpack checkpoint ({_one_line(exc)})") from None
    if not isinstance(tree, dict):
        raise fail(path, f"expected a tree of parameters, got {type(tree).__name__}")
    safeio.check_depth(tree, path.name)
    try:
        return _unchunk(tree, path)
    except RecursionError:  # a depth limit raised past what Python's stack allows
        raise fail(path, f"nests deeper than Python's recursion limit ({sys.getrecursionlimit()})") from None


def _unchunk(node: Any, path: Path) -> Any:
    if isinstance(node, dict):
        if node.get("__msgpack_chunked_array__"):
            try:
                shape = tuple(int(node["shape"][str(i)]) for i in range(len(node["shape"])))
                chunks = [node["chunks"][str(i)] for i in range(len(node["chunks"]))]
                flat = np.concatenate(chunks) if chunks else np.zeros(0)
                return flat.reshape(shape)
            except (KeyError, ValueError, TypeError) as exc:
                raise fail(path, f"malformed chunked array ({_one_line(exc)})") from None
        return {str(k): _unchunk(v, path) for k, v in node.items()}
    return node


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


_CELL_KEYS = ({"ir", "iz", "in", "hr", "hz", "hn"}, {"ii", "if", "ig", "io", "hi", "hf", "hg", "ho"}, {"i", "h"})


def _is_flax_layer(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    keys = set(node)
    return "cell" in keys or {"forward_rnn", "backward_rnn"} <= keys or any(keys == c for c in _CELL_KEYS)


def flax_layers(tree: dict) -> list:
    """The recurrent layers of a Flax param tree, bottom first.

    Accepts one cell/``nn.RNN``/``nn.Bidirectional`` tree, flax's form of a list
    (``{"0": ..., "1": ...}``), an optional ``"params"`` wrapper, or a model tree
    whose layers are submodules (ordered by their names' numbers, e.g.
    ``RNN_0``, ``RNN_1``).

    Raises:
        LayoutError: no recurrent layer is found.
    """
    if set(tree) == {"params"} and isinstance(tree["params"], dict):
        tree = tree["params"]
    if _is_flax_layer(tree):
        return [tree]
    found: list = []

    def walk(node: dict) -> None:
        for key in sorted(node, key=_natural):
            v = node[key]
            if _is_flax_layer(v):
                found.append(v)
            elif isinstance(v, dict):
                walk(v)

    walk(tree)
    if not found:
        raise LayoutError(
            "no recurrent layer found: expected cell params (GRUCell ir/iz/in/hr/hz/hn, LSTMCell ii/if/ig/io/hi/hf/hg/ho, "
            f"SimpleCell i/h), {{'cell': ...}} from nn.RNN or {{'forward_rnn', 'backward_rnn'}}; top-level keys: {sorted(tree)}"
        )
    return found


def write_msgpack(path: str | os.PathLike, tree: Any) -> int:
    """Write a tree of arrays as ``flax.serialization.to_bytes`` would (lists become ``{"0": ...}``).

    Returns:
        The number of bytes written.
    """
    msgpack = _msgpack(path, "writing")

    def norm(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {str(k): norm(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return {str(i): norm(v) for i, v in enumerate(node)}
        arr = np.ascontiguousarray(node)
        record = msgpack.packb((arr.shape, arr.dtype.name, arr.tobytes("C")), use_bin_type=True)
        return msgpack.ExtType(1, record)

    return write_bytes(path, msgpack.packb(norm(tree), use_bin_type=True))




def flax_named_layers(tree: dict) -> tuple[list[tuple[str, Any]], list[tuple[str, str]]]:
    """``(param path, layer tree)`` of every recurrent layer, and ``(path, kind)`` of every other one.

    Layers are in the order of their names' numbers (``RNN_0``, ``Dense_0``,
    ``RNN_1`` sort as ``Dense_0``, ``RNN_0``, ``RNN_1``: Flax numbers each class
    separately, so the order across classes is not recorded).
    """
    prefix = ""
    if set(tree) == {"params"} and isinstance(tree["params"], dict):
        tree, prefix = tree["params"], "params"
    if _is_flax_layer(tree):
        return [(prefix or "params", tree)], []
    found: list[tuple[str, Any]] = []
    other: list[tuple[str, str]] = []

    def walk(node: dict, path: str) -> None:
        for key in sorted(node, key=_natural):
            v = node[key]
            where = f"{path}/{key}" if path else str(key)
            if _is_flax_layer(v):
                found.append((where, v))
            elif isinstance(v, dict) and v and all(not isinstance(x, dict) for x in v.values()):
                other.append((where, re.sub(r"_\d+$", "", str(key)) or "params"))
            elif isinstance(v, dict):
                walk(v, where)
            else:
                other.append((where, "array"))

    walk(tree, "")
    return found, other


def _flax_cell(layer: Any) -> str | None:
    """The cell a layer's param names prove."""
    node = layer
    while isinstance(node, dict):
        keys = set(node)
        if keys == _CELL_KEYS[0]:
            return "gru"
        if keys == _CELL_KEYS[1]:
            return "lstm"
        if keys == _CELL_KEYS[2]:
            return "rnn"
        node = node.get("cell", node.get("forward_rnn"))
    return None


def _dtype(layer: Any) -> str | None:
    from ..files import listing

    kinds = [d for _, _, d in listing(layer) if "float" in d]
    return kinds[0] if kinds else None


def read(path: str | os.PathLike, *, stack: bool = False, cell: str | None = None, nonlinearity: str | None = None,
         dtype: Any = None, batch_first: bool = True, **_: Any) -> ModelFile:
    """Every recurrent layer as its own module, or (``stack=True``) all of them as one stack.

    Raises:
        LayoutError: a bad file, no recurrent layer, or a ``cell`` that contradicts the params.
    """
    path = Path(path)
    tree = read_msgpack(path)
    layers, other = flax_named_layers(tree)
    if not layers:
        raise fail(path, "no recurrent layer found: expected cell params (GRUCell ir/iz/in/hr/hz/hn, LSTMCell "
                         "ii/if/ig/io/hi/hf/hg/ho, SimpleCell i/h), {'cell': ...} from nn.RNN or "
                         f"{{'forward_rnn', 'backward_rnn'}}; top-level keys: {sorted(tree)}")
    mf = ModelFile(path=path, format="flax", modules=[], skipped=list(other))
    mf.notes.append("Flax params record no graph: " + (
        f"{option('stack', True)} asserts that the recurrent layers feed each other, bottom first" if stack else
        f"each recurrent layer is its own module (pass {option('stack', True)} if they feed each other)"))
    groups = [layers] if stack else [[layer] for layer in layers]
    for group in groups:
        name = group[0][0]
        cells = {_flax_cell(layer) for _, layer in group}
        recorded = cells.pop() if len(cells) == 1 else None
        if recorded is None:
            mf.problems.append(f"layer {name!r}: the stacked layers mix cells "
                               f"({', '.join(f'{p}: {_flax_cell(t)}' for p, t in group)}); one module has one cell")
            continue
        check_cell(path, recorded, cell, f"layer {name!r}")
        cls = module_class(recorded)
        extra = {"nonlinearity": nonlinearity} if recorded == "rnn" and nonlinearity else {}
        source = [layer for _, layer in group] if stack else group[0][1]

        def make(source: Any = source, cls: Any = cls, extra: dict = extra, **opts: Any) -> Any:
            return cls.from_flax(source, **extra, **opts)

        more: dict[str, Any] = {"layers": [p for p, _ in group]} if stack and len(group) > 1 else {}
        try_entry(mf, name, make, batch_first=bool(batch_first), dtype=dtype or _dtype(group[0][1]), arrays=source,
                  **more)
    return mf


def write(path: str | os.PathLike, module: Any) -> int:
    """A module's params as ``flax.serialization.to_bytes`` writes a list of layers; returns the bytes written."""
    return write_msgpack(path, module.to_flax())


def _sniff(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".msgpack"


register(Format("flax", (".msgpack",), _sniff, read, "Flax linen params (flax.serialization.to_bytes .msgpack)"))
