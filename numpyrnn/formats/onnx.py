"""ONNX models (``.onnx``), with external data beside them as torch's exporter writes it.

The layout is declared in :mod:`numpyrnn.layouts.onnx`. ``GRU``/``LSTM``/``RNN``
nodes become modules keyed by their node names. Consecutive nodes form one
stacked module only when the upper one reads the lower one's ``Y`` through
reshaping ops alone (the layout's chain check) and both have the same cell,
directions, size and activations; anything else between them (a ``Linear``'s
``MatMul``, a second branch) makes them separate modules.

External data (``model.onnx.data``) is read only from files in the model's own
folder: absolute names, names with ``..`` and symlinks that leave the folder
are refused (:func:`numpyrnn.files.read_beside`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from .. import safeio
from ..errors import LayoutError
from ..files import _one_line, atomic_write, fail, read_beside, read_bytes
from ..layouts.onnx import ONNX, _check_chain, _text, _where
from . import Format, ModelFile, check_cell, check_nonlinearity, module_class, register, try_entry

__all__ = ["read_onnx", "write_onnx", "read", "write", "LAYOUT"]

LAYOUT = ONNX


def read_onnx(path: str | os.PathLike) -> Any:
    """An ``onnx.ModelProto`` with its external data (if any) read from the model's own folder.

    Raises:
        LayoutError: the onnx package is missing, the file is not a model, or an
            external data file is refused (outside the folder) or missing.
    """
    path = Path(path)
    try:
        import onnx
    except ImportError:
        raise fail(path, "reading .onnx needs the onnx package: pip install \"numpyrnn[files]\"") from None
    try:
        model = onnx.load_model_from_string(read_bytes(path))
    except LayoutError:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError and friends
        raise fail(path, f"not a readable ONNX model ({_one_line(exc)})") from None
    if not model.graph.node:
        raise fail(path, "not an ONNX model with a graph (no nodes; the file may be corrupted)")
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            _load_external(path, t)
        _check_initializer(path, t, onnx)
    return model


_ONNX_FIELDS = ("float_data", "double_data", "int32_data", "int64_data", "uint64_data", "string_data")


def _check_initializer(path: Path, t: Any, onnx: Any) -> None:
    """Refuse an initializer whose dims do not fit the values it holds, before any array is made."""
    dims = [int(n) for n in t.dims]
    where = f"initializer {t.name!r}"
    if any(n < 0 for n in dims):
        raise fail(path, f"{where}: negative dimension in shape {tuple(dims)}: corrupted")
    count = math.prod(dims)
    if t.HasField("raw_data"):
        try:
            itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            raise fail(path, f"{where}: unknown element type {t.data_type}") from None
        have, need = len(t.raw_data), count * itemsize
    else:
        have = sum(len(getattr(t, f)) for f in _ONNX_FIELDS if hasattr(t, f))
        need = count * (2 if t.data_type in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128) else 1)
    if have != need:
        raise fail(path, f"{where}: shape {tuple(dims)} needs {need} {'bytes' if t.HasField('raw_data') else 'values'}, "
                         f"the file holds {have}: corrupted")


def _load_external(path: Path, tensor: Any) -> None:
    info = {e.key: e.value for e in tensor.external_data}
    what = f"initializer {tensor.name!r}: external data file"
    location = info.get("location", "")
    try:
        offset = int(info.get("offset", 0) or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise fail(path, f"{what} {location!r}: offset/length {info.get('offset')!r}/{info.get('length')!r} "
                         f"are not numbers") from None
    tensor.raw_data = read_beside(path, location, offset, length, what=what)
    del tensor.external_data[:]
    tensor.data_location = 0  # DEFAULT: the data now lives in the tensor



_ONNX_OPS = {"GRU": "GRU", "LSTM": "LSTM", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}


def write_onnx(path: str | os.PathLike, layers: list[Mapping[str, np.ndarray]], *, mode: str,
               opset: int = 14) -> int:
    """A runnable ONNX model from ``to_onnx()``'s per-layer ``{"W", "R", "B"}`` dicts.

    The graph takes ``X`` of shape ``(T, N, I)`` and returns ``Y`` of shape
    ``(T, N, D*H)`` as a torch module does (seq-major): one ONNX node per
    layer, each output transposed and reshaped to feed the next.

    Returns:
        The number of bytes written.
    """
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise fail(path, "writing .onnx needs the onnx package: pip install \"numpyrnn[files]\"") from None

    first = layers[0]
    dtype = np.asarray(first["W"]).dtype
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    D, _, I = (int(n) for n in np.asarray(first["W"]).shape)
    H = int(np.asarray(first["R"]).shape[-1])
    op = _ONNX_OPS[mode]
    nodes, inits = [], [numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "flat_shape")]
    x = "X"
    for k, layer in enumerate(layers):
        names = []
        for key in ("W", "R", "B"):
            if layer.get(key) is None:
                names.append("")
                continue
            inits.append(numpy_helper.from_array(np.ascontiguousarray(layer[key]), f"{key}_{k}"))
            names.append(f"{key}_{k}")
        while names and names[-1] == "":
            names.pop()
        attrs: dict[str, Any] = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        if op == "GRU":
            attrs["linear_before_reset"] = 1
        if mode == "RNN_RELU":
            attrs["activations"] = ["Relu"] * D
        nodes.append(helper.make_node(op, [x, *names], [f"Y4_{k}"], name=f"{op.lower()}_{k}", **attrs))
        nodes.append(helper.make_node("Transpose", [f"Y4_{k}"], [f"Yt_{k}"], perm=[0, 2, 1, 3]))
        x = "Y" if k == len(layers) - 1 else f"Y_{k}"
        nodes.append(helper.make_node("Reshape", [f"Yt_{k}", "flat_shape"], [x]))
    graph = helper.make_graph(
        nodes, "numpyrnn",
        [helper.make_tensor_value_info("X", elem, ["T", "N", I])],
        [helper.make_tensor_value_info("Y", elem, ["T", "N", D * H])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="numpyrnn")
    onnx.checker.check_model(model)
    def write(tmp: str) -> None:
        with safeio.open_fresh(tmp) as f:
            f.write(model.SerializeToString())

    return atomic_write(path, write)



_CELLS = {"GRU": "gru", "LSTM": "lstm", "RNN": "rnn"}


def _label(node: Any) -> str:
    """A node's name, else its first output's, else its op (a damaged node may have neither)."""
    return node.name or (node.output[0] if node.output and node.output[0] else node.op_type)


def _signature(node: Any) -> tuple:
    """What two stacked nodes must share: op, direction, hidden size, activations, GRU linear_before_reset."""
    from onnx import helper

    attrs = {a.name: _text(helper.get_attribute_value(a), f"{_where(node)} attribute {a.name}") for a in node.attribute}
    acts = tuple(str(a).lower() for a in attrs.get("activations", ()))
    return (node.op_type, attrs.get("direction", "forward"), attrs.get("hidden_size"), acts,
            attrs.get("linear_before_reset", 0), attrs.get("layout", 0), len([i for i in node.input[3:4] if i]))


def _view(graph: Any, group: list[Any], recurrent: list[Any], computed: dict[str, Any]) -> Any:
    """``graph`` as the layout sees it when only ``group`` are recurrent: the others become opaque nodes.

    Weights that the exporter computes from initializers with reshaping ops
    (torch's dynamo exporter slices and concatenates ``weight_hh`` into ONNX
    gate order) are given as the initializers they fold to.
    """
    from onnx import numpy_helper

    inside = {id(n) for n in group}
    nodes = [n if id(n) in inside or n not in recurrent else
             SimpleNamespace(op_type=n.op_type, domain="numpyrnn.separate", input=list(n.input),
                             output=list(n.output), name=n.name, attribute=[])
             for n in graph.node]
    names = {t.name for t in graph.initializer}
    extra = [numpy_helper.from_array(arr, name) for name, arr in computed.items() if name not in names
             and any(name in list(n.input)[1:4] for n in group)]
    return SimpleNamespace(graph=SimpleNamespace(node=nodes, initializer=[*graph.initializer, *extra]))


#: Ops whose result on constant inputs numpyrnn computes (they only move numbers around).
_FOLDABLE = frozenset({"Constant", "Identity", "Cast", "Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape",
                       "Transpose", "ConstantOfShape", "Expand"})


class _Folder:
    """Values of tensors computed from initializers by data-moving ops only (no arithmetic)."""

    def __init__(self, graph: Any, path: Path | None = None):
        from onnx import numpy_helper

        self.values: dict[str, Any] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.path = path
        #: what the model stores: a folded value may not declare far more (the resource limits)
        self.stored = sum(int(v.nbytes) for v in self.values.values())
        self.producer = {o: n for n in graph.node for o in n.output if o}
        self._failed: set[str] = set()

    def get(self, name: str) -> Any:
        if not name or name in self._failed:
            return None
        if name in self.values:
            return self.values[name]
        node = self.producer.get(name)
        out = None
        if node is not None and node.op_type in _FOLDABLE and node.domain in ("", "ai.onnx"):
            try:
                out = self._run(node)
            except LayoutError:
                raise
            except (ValueError, IndexError, TypeError, KeyError):
                out = None
        if out is None:
            self._failed.add(name)
            return None
        self.values[name] = out
        return out

    def _run(self, node: Any) -> Any:
        from onnx import helper, numpy_helper

        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        op = node.op_type
        if op == "Constant":
            return numpy_helper.to_array(attrs["value"]) if "value" in attrs else None
        if op == "ConstantOfShape":
            shape = self.get(node.input[0])
            if shape is None:
                return None
            value = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
            dims = [int(n) for n in np.asarray(shape).reshape(-1)]
            if any(n < 0 for n in dims):
                return None
            self._budget(node, math.prod(dims) * value.dtype.itemsize)
            return np.full(dims, value.reshape(-1)[0], dtype=value.dtype)
        ins: list[Any] = [self.get(i) if i else None for i in node.input]
        if ins[0] is None:
            return None
        x = ins[0]
        if op in ("Identity",):
            return x
        if op == "Cast":
            return x.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))
        if op == "Transpose":
            return np.transpose(x, attrs.get("perm"))
        if op == "Concat":
            if any(v is None for v in ins):
                return None
            self._budget(node, sum(int(np.asarray(v).nbytes) for v in ins))
            return np.concatenate(ins, axis=int(attrs["axis"]))
        if op in ("Unsqueeze", "Squeeze"):
            axes: Any = attrs.get("axes", None)
            if axes is None and len(ins) > 1 and ins[1] is not None:
                axes = [int(a) for a in ins[1]]
            if op == "Squeeze":
                return np.squeeze(x, axis=tuple(axes) if axes is not None else None)
            out = x
            for a in sorted(int(a) % (x.ndim + len(axes)) for a in axes):
                out = np.expand_dims(out, a)
            return out
        if op == "Reshape":
            if ins[1] is None:
                return None
            shape = [int(d) if int(d) != 0 else x.shape[k] for k, d in enumerate(ins[1])]
            return x.reshape(shape)
        if op == "Slice":
            if any(v is None for v in ins[1:3]):
                return None
            starts, ends = ins[1], ins[2]
            axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
            steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
            index = [slice(None)] * x.ndim
            for a, b, e, st in zip(axes, starts, ends, steps):
                index[int(a)] = slice(int(b), int(e), int(st))
            return x[tuple(index)]
        if op == "Expand":
            return None  # its shape comes from the input: not a constant
        return None

    def _budget(self, node: Any, nbytes: int) -> None:
        """Refuse, before allocating, a folded value far larger than what the model stores."""
        where = f"node {_label(node)!r} ({node.op_type})"
        safeio.check_declared(f"{self.path.name}: {where}" if self.path is not None else where, nbytes,
                              self.stored, "computes")

    def zero(self, name: str) -> bool:
        """Whether ``name`` is a constant zero (also an ``Expand`` or ``ConstantOfShape`` of zeros)."""
        if not name:
            return True
        v = self.get(name)
        if v is not None:
            return not np.any(v)
        node = self.producer.get(name)
        if node is None:
            return False
        if node.op_type == "ConstantOfShape":
            from onnx import helper, numpy_helper

            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            return "value" not in attrs or not np.any(numpy_helper.to_array(attrs["value"]))
        if node.op_type in ("Expand", "Identity", "Cast", "Reshape", "Unsqueeze", "Squeeze", "Transpose"):
            return self.zero(node.input[0])
        return False


def _chained(graph: Any, below: Any, above: Any, folder: _Folder) -> bool:
    if _signature(below) != _signature(above):
        return False
    try:
        _check_chain(graph, [below, above])
    except LayoutError:
        return False
    # sequence lengths and initial states: a stacked torch module starts every layer from zeros
    return all(folder.zero(i) for n in (below, above) for i in list(n.input)[4:])


def read(path: str | os.PathLike, *, cell: str | None = None, nonlinearity: str | None = None,
         linear_before_reset: int | None = None, dtype: Any = None, batch_first: bool = False,
         variants: bool = False, **_: Any) -> ModelFile:
    """Every ``GRU``/``LSTM``/``RNN`` node, as modules keyed by node name; proven chains stacked.

    Raises:
        LayoutError: a bad file, or a model with no recurrent node.
    """
    path = Path(path)
    model = read_onnx(path)
    graph = model.graph
    recurrent = [n for n in graph.node if n.op_type in _CELLS and n.domain in ("", "ai.onnx")]
    if not recurrent:
        try:  # the layout's message says what the model holds instead
            ONNX.infer(model, mode="LSTM")
        except LayoutError as exc:
            raise fail(path, str(exc).replace("source: ", "", 1)) from None
    mf = ModelFile(path=path, format="onnx", modules=[])
    plumbing = _FOLDABLE | {"Shape", "Gather", "Transpose", "Reshape", "Flatten", "Dropout", "Range"}
    mf.skipped.extend((_label(n), n.op_type) for n in graph.node
                      if n.op_type not in _CELLS and n.op_type not in plumbing)
    folder = _Folder(graph, path)
    computed: dict[str, Any] = {}
    for n in recurrent:
        for name in list(n.input)[1:4]:
            if name and name not in {t.name for t in graph.initializer}:
                value = folder.get(name)
                if value is not None:
                    computed[name] = value
    groups: list[list[Any]] = []
    for n in recurrent:
        if groups and _chained(graph, groups[-1][-1], n, folder):
            groups[-1].append(n)
        else:
            groups.append([n])
    initializers = {t.name: t for t in graph.initializer}
    for group in groups:
        first = group[0]
        name = _label(first)
        recorded = _CELLS[first.op_type]
        check_cell(path, recorded, cell, _where(first))
        cls = module_class(recorded)
        source = _view(graph, group, recurrent, computed)
        for n in group:
            for k, what in ((4, "sequence_lens"), (5, "initial_h"), (6, "initial_c")):
                if len(n.input) > k and not folder.zero(n.input[k]):
                    mf.notes.append(f"{_where(n)}: takes {what} from the graph ({n.input[k]!r}); the module "
                                    f"starts from zeros unless you pass that state yourself")
        mode_nl: dict[str, Any] = {}
        if recorded == "rnn":
            acts = _signature(first)[3]
            rec = ("relu" if acts and acts[0] == "relu" else "tanh") if acts else None
            mode_nl = {"nonlinearity": check_nonlinearity(path, rec, nonlinearity, _where(first))}
        w = first.input[1] if len(first.input) > 1 else ""
        kind = (str(np.dtype(_np_dtype(initializers[w].data_type))) if w in initializers else
                str(computed[w].dtype) if w in computed else None)

        def make(source: Any = source, cls: Any = cls, nl: dict = mode_nl, **opts: Any) -> Any:
            lbr = {"linear_before_reset": linear_before_reset} if linear_before_reset is not None else {}
            return cls.from_onnx(source, **lbr, **nl, **opts)

        more: dict[str, Any] = {"layers": [_label(n) for n in group]} if len(group) > 1 else {}
        try_entry(mf, name, make, variants=variants, batch_first=bool(batch_first), dtype=dtype or kind, arrays=source,
                  **more)
    return mf


def _np_dtype(elem: int) -> Any:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(elem)


def write(path: str | os.PathLike, module: Any) -> int:
    """A runnable ONNX model of a module's weights; returns the bytes written."""
    return write_onnx(path, module.to_onnx(), mode=module.spec.mode)


def _sniff(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".onnx"


register(Format("onnx", (".onnx",), _sniff, read, "ONNX models (.onnx, external data beside it)"))
