r"""PaddlePaddle ``.pdparams`` files: ``paddle.nn.LSTM``/``GRU``/``SimpleRNN`` state dicts, read without Paddle.

A ``.pdparams`` file is a pickle of ``{name: numpy.ndarray}`` (``paddle.save(layer.state_dict())``).
It is read by an allow-list unpickler: numpy arrays, numpy dtypes and scalars and
plain containers (dict, list, tuple, str, numbers) are the only things it can
build; any other global the pickle names is refused, by name, before anything is
called. Arrays of non-numeric dtype are refused after loading.

Paddle's recurrent layers hold their weights per cell, ``{k}.cell.*`` for layer
``k`` (``{k}.cell_fw.*`` / ``{k}.cell_bw.*`` with ``direction="bidirect"``), and
repeat them under torch-like flat names (``weight_ih_l{k}[_reverse]``). Gates and
shapes are torch's:

=================  ================  =====================================================
Paddle             shape             torch
=================  ================  =====================================================
``weight_ih``      ``(G*H, I)``      ``weight_ih_l{k}``; LSTM gates ``i, f, g, o``, GRU ``r, z, c``
``weight_hh``      ``(G*H, R)``      ``weight_hh_l{k}``
``bias_ih``        ``(G*H,)``        ``bias_ih_l{k}``
``bias_hh``        ``(G*H,)``        ``bias_hh_l{k}`` (GRU: inside ``r * (W_hc h + b_hc)``, as torch)
``weight_ho``      ``(H, P)``        ``weight_hr_l{k}`` ``(P, H)``, transposed (``proj_size``)
=================  ================  =====================================================

The per-cell names are read: with ``proj_size`` Paddle 3.3's flat names are
attached to the wrong arrays (they assume four parameters per cell, the fifth,
``weight_ho``, shifts every later name), so flat names are used only for a layer
without per-cell names and without projection, and checked by shape.

Not stored in the file, and so options: ``time_major`` (Paddle's default False is
torch's ``batch_first=True``) and ``nonlinearity`` of a ``SimpleRNN`` (``"tanh"``,
Paddle's default, or ``"relu"``).
"""

from __future__ import annotations

import os
import pickle
import pickletools
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import LayoutError
from ..safeio import check_depth, open_regular
from ..spec import RNNSpec

__all__ = ["read_pdparams", "scan", "read", "load_all_from_pdparams", "sniff", "FORMAT"]

#: numpy dtype names an array of a state dict may have (numpy pickles a dtype by these).
NUMERIC = {"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"}


class _Refused(Exception):
    pass


class _DType:
    """What a pickled ``numpy.dtype`` becomes: checked, and turned into a dtype only when numeric."""

    def __init__(self, name: Any = None, *_: Any) -> None:
        if not isinstance(name, str) or name not in NUMERIC:
            raise _Refused(f"numpy.dtype({name!r}) (only numeric dtypes are read)")
        self.dtype = np.dtype(name)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise ValueError(f"dtype state {str(state)[:60]}")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


class _Array:
    """What a pickled ``numpy.ndarray`` becomes: its bytes checked against shape and dtype, then copied."""

    def __init__(self, cls: Any = None, *_: Any) -> None:
        if cls is not np.ndarray:
            raise _Refused(f"numpy.core.multiarray._reconstruct({getattr(cls, '__name__', cls)!r}) "
                           f"(only plain numpy arrays are read)")
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise ValueError("array state is not (version, shape, dtype, fortran, data)")
        _, shape, dtype, fortran, data = state
        if not isinstance(dtype, _DType):
            raise ValueError("array state holds no numeric dtype")
        if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape) or len(shape) > 32:
            raise ValueError(f"array shape {str(shape)[:60]}")
        if not isinstance(data, (bytes, bytearray)):
            raise _Refused("an array whose data is not raw bytes (an object array)")
        count = 1
        for n in shape:
            count *= n
        if count * dtype.dtype.itemsize != len(data):
            raise ValueError(f"array of shape {shape} and dtype {dtype.dtype} needs {count * dtype.dtype.itemsize} "
                             f"bytes, the pickle holds {len(data)}")
        arr = np.frombuffer(bytes(data), dtype.dtype).reshape(shape, order="F" if fortran else "C")
        self.array = np.ascontiguousarray(arr).astype(dtype.dtype.newbyteorder("="), copy=True)


def _scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, _DType) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise ValueError("a numpy scalar without a numeric dtype and its bytes")
    return np.frombuffer(data, dtype.dtype)[0]


#: (module, name) -> what the unpickler returns for it; nothing else is importable.
ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("numpy._core.multiarray", "_reconstruct"): _Array,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _DType,
    ("collections", "OrderedDict"): OrderedDict,
}


class _AllowList(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        obj = ALLOWED.get((module, name))
        if obj is None:
            raise _Refused(f"{module}.{name}")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"persistent id {str(pid)[:40]!r}")


def _resolve(node: Any, path: str, where: Path) -> Any:
    """The loaded tree with every array placeholder replaced by its array; anything unexpected refused."""
    if isinstance(node, _Array):
        if node.array is None:
            raise LayoutError(f"{where}: {path}: an array without its data; the file is damaged")
        return node.array
    if isinstance(node, Mapping):
        out = {}
        for k, v in node.items():
            if not isinstance(k, (str, int)):
                raise LayoutError(f"{where}: {path}: a key of type {type(k).__name__}; expected names")
            out[k] = _resolve(v, f"{path}[{k!r}]" if path else repr(k), where)
        return out
    if isinstance(node, (list, tuple)):
        return [_resolve(v, f"{path}[{i}]", where) for i, v in enumerate(node)]
    if isinstance(node, (_DType, np.ndarray)) or not isinstance(node, (str, bytes, int, float, bool, type(None), np.generic)):
        raise LayoutError(f"{where}: {path}: a {type(node).__name__}; a .pdparams file holds arrays in plain containers")
    return node


class _Capped:
    """A file read as :mod:`pickletools` reads it, where no read asks for more than the file holds."""

    def __init__(self, fp: Any):
        self.fp = fp
        self.size = os.fstat(fp.fileno()).st_size
        self.readline = fp.readline
        self.tell = fp.tell

    def read(self, n: int = -1) -> bytes:
        left = max(0, self.size - self.fp.tell())
        return self.fp.read(left if n < 0 else min(n, left))


def _check_opcodes(fp: Any) -> None:
    """Walk the pickle's opcodes (no object is built) so that every length it declares is checked
    against the bytes that follow it. Python's unpickler allocates what a ``BINBYTES8`` or
    ``BYTEARRAY8`` declares before it reads: a damaged length becomes a huge allocation, and
    CPython's cleanup after the ``MemoryError`` prints ``SystemError: deallocated bytearray object
    has exported buffers``. Raises what :mod:`pickletools` raises (``ValueError`` for a length
    past the end or an unknown opcode)."""
    for _ in pickletools.genops(_Capped(fp)):  # type: ignore[arg-type]  # read, readline and tell suffice
        pass


def read_pdparams(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of a ``.pdparams`` file, by name, through the allow-list unpickler.

    Non-array entries (Paddle's ``StructuredToParameterName@@`` name table) are left out.

    Raises:
        LayoutError: the pickle names anything but numpy arrays and plain containers (the
            message names it), is damaged, or holds no arrays.
    """
    p = Path(path)
    try:
        with open_regular(p, str(p)) as fp:
            _check_opcodes(fp)
            fp.seek(0)
            tree = _AllowList(fp).load()
    except _Refused as exc:
        text = str(exc)
        raise LayoutError(f"{p}: refused: the pickle names {text}" + ("" if "(only" in text else
                          "; a .pdparams file holds numpy arrays in plain containers only, and building anything "
                          "else would run code from the file")) from None
    except FileNotFoundError:
        raise LayoutError(f"{p}: no such file") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError, SystemError) as exc:
        lines = str(exc).strip().splitlines()
        raise LayoutError(f"{p}: not a readable .pdparams pickle ({type(exc).__name__}: {lines[0] if lines else ''})") from None
    if not isinstance(tree, Mapping):
        raise LayoutError(f"{p}: expected a state dict (a mapping of names to arrays), got {type(tree).__name__}")
    check_depth(tree, str(p))  # before the recursive walk: a deep pickle is one LayoutError
    tree = _resolve(tree, "", p)
    arrays = {str(k): v for k, v in tree.items() if isinstance(v, np.ndarray)}
    if not arrays:
        raise LayoutError(f"{p}: no arrays in the state dict (keys {list(tree)[:5]})")
    return arrays


# --------------------------------------------------------------------------------------
# state dict -> modules
# --------------------------------------------------------------------------------------

_CELL = re.compile(r"(?P<prefix>.*?)(?:(?P<layer>\d+)\.)?cell(?P<dir>_fw|_bw)?\."
                   r"(?P<param>weight_ih|weight_hh|bias_ih|bias_hh|weight_ho)")
_FLAT = re.compile(r"(?P<prefix>.*?)(?P<param>weight_ih|weight_hh|bias_ih|bias_hh)_l(?P<layer>\d+)(?P<rev>_reverse)?")
_CELLS = {1: "rnn", 3: "gru", 4: "lstm"}
_MODES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN_TANH"}


def _group(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, dict[tuple[int, int], dict[str, str]]], list[str]]:
    """prefix -> (layer, direction) -> param -> key; and the keys that are no recurrent weights."""
    cells: dict[str, dict[tuple[int, int], dict[str, str]]] = {}
    flat: dict[str, dict[tuple[int, int], dict[str, str]]] = {}
    other = []
    for key in arrays:
        m = _CELL.fullmatch(key)
        if m:
            d = 1 if m["dir"] == "_bw" else 0
            slot = cells.setdefault(m["prefix"].rstrip("."), {}).setdefault((int(m["layer"] or 0), d), {})
            slot[m["param"]] = key
            continue
        m = _FLAT.fullmatch(key)
        if m:
            slot = flat.setdefault(m["prefix"].rstrip("."), {}).setdefault((int(m["layer"]), int(bool(m["rev"]))), {})
            slot[m["param"]] = key
            continue
        other.append(key)
    for prefix, units in flat.items():
        if prefix not in cells:  # only flat names (e.g. a hand-made state dict): use them
            cells[prefix] = units
    return cells, other


def _shape(arrays: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    return tuple(int(n) for n in arrays[key].shape)


def _config(where: str, name: str, units: dict[tuple[int, int], dict[str, str]],
            arrays: Mapping[str, np.ndarray], bidirect: set[int]) -> dict:
    layers = sorted({k for k, _ in units})
    if layers != list(range(len(layers))):
        raise LayoutError(f"{where}: {name or 'the state dict'}: layers {layers}; expected 0..{len(layers) - 1}")
    D = 2 if bidirect else 1
    for k in layers:
        if sorted(d for kk, d in units if kk == k) != list(range(D)):
            raise LayoutError(f"{where}: {name or 'the state dict'}: layer {k} lacks a direction (cell_fw and cell_bw "
                              f"are both needed when any layer has them)")
    first = units[(0, 0)]
    for req in ("weight_ih", "weight_hh"):
        if req not in first:
            raise LayoutError(f"{where}: {name or 'the state dict'}: layer 0 has no {req} ({sorted(first.values())})")
    wih, whh = _shape(arrays, first["weight_ih"]), _shape(arrays, first["weight_hh"])
    if len(wih) != 2 or len(whh) != 2:
        raise LayoutError(f"{where}: {first['weight_ih']}: expected 2-D weights (G*hidden, input), got {wih} and {whh}")
    proj = 0
    if "weight_ho" in first:
        ho = _shape(arrays, first["weight_ho"])
        if len(ho) != 2:
            raise LayoutError(f"{where}: {first['weight_ho']}: expected (hidden, proj_size), got shape {ho}")
        hidden, proj = ho
        if wih[0] != 4 * hidden:
            raise LayoutError(f"{where}: {first['weight_ih']}: shape {wih}; a projected LSTM of hidden {hidden} "
                              f"has (4*hidden={4 * hidden}, input)")
        cell = "lstm"
    else:
        hidden = whh[1]
        if hidden < 1 or wih[0] % hidden or wih[0] // hidden not in _CELLS:
            raise LayoutError(f"{where}: {first['weight_ih']}: shape {wih} with {first['weight_hh']} {whh} is not "
                              f"(G*hidden, input) for G = 1 (SimpleRNN), 3 (GRU) or 4 (LSTM)")
        cell = _CELLS[wih[0] // hidden]
    bias = "bias_ih" in first or "bias_hh" in first
    need = {"weight_ih", "weight_hh"} | ({"bias_ih", "bias_hh"} if bias else set()) | ({"weight_ho"} if proj else set())
    for (k, d), unit in sorted(units.items()):
        missing, extra = sorted(need - set(unit)), sorted(set(unit) - need)
        if missing or extra:
            cell_name = f"{k}.cell" + (("_bw" if d else "_fw") if D == 2 else "")
            raise LayoutError(f"{where}: {name + '.' if name else ''}{cell_name}: "
                              + (f"missing {missing}" if missing else f"unexpected {extra}")
                              + f"; every cell of this layer has {sorted(need)} (as layer 0 has)")
    return dict(cell=cell, input_size=wih[1], hidden_size=hidden, num_layers=len(layers), bidirectional=D == 2,
                bias=bias, proj_size=proj, batch_first=True, dtype=str(arrays[first["weight_ih"]].dtype),
                source=name or "state dict")


def _build(where: str, name: str, units: dict[tuple[int, int], dict[str, str]], arrays: Mapping[str, np.ndarray],
           config: dict) -> Callable[..., Any]:
    def build(*, time_major: bool | None = None, batch_first: bool | None = None, nonlinearity: str | None = None,
              dropout: float = 0.0, device: Any = None, dtype: Any = None, freeze: bool = False, **_: Any) -> Any:
        import torch

        from .. import engine
        from ..engine import Axis
        from ..modules import NumpyGRU, NumpyLSTM, NumpyRNN

        if time_major is not None and batch_first is not None and batch_first == time_major:
            raise LayoutError(f"{where}: time_major={time_major} and batch_first={batch_first} contradict each other")
        bf = (not time_major) if time_major is not None else (True if batch_first is None else batch_first)
        mode = _MODES[config["cell"]]
        if nonlinearity is not None:
            if config["cell"] != "rnn":
                raise TypeError(f"nonlinearity= applies to a SimpleRNN only; {name or 'this'} is a {config['cell'].upper()}")
            if nonlinearity not in ("tanh", "relu"):
                raise LayoutError(f"{where}: nonlinearity={nonlinearity!r}; torch's RNN computes 'tanh' or 'relu'")
            mode = "RNN_RELU" if nonlinearity == "relu" else "RNN_TANH"
        spec = RNNSpec(mode=mode, input_size=config["input_size"], hidden_size=config["hidden_size"],
                       num_layers=config["num_layers"], bidirectional=config["bidirectional"], bias=config["bias"],
                       proj_size=config["proj_size"])
        leaves: dict[str, Any] = {}
        for layer, d in spec.units():
            s, unit = spec.suffix(layer, d), units[(layer, d)]
            for param in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                if param in unit:
                    leaves[param + s] = arrays[unit[param]]
            if "weight_ho" in unit:
                leaves["weight_hr" + s] = np.ascontiguousarray(arrays[unit["weight_ho"]].T)
        keys = {spec.suffix(k, d): units[(k, d)] for k, d in spec.units()}

        def paddle_name(leaf: str) -> str:
            for s, unit in keys.items():
                if leaf.endswith(s):
                    param = leaf[: -len(s)]
                    return unit.get("weight_ho" if param == "weight_hr" else param, leaf)
            return leaf

        expected = {k: tuple(Axis(f"{k}[{i}]", n) for i, n in enumerate(shape)) for k, shape in spec.param_shapes().items()}
        extra = sorted(set(leaves) - set(expected))
        if extra:
            raise LayoutError(f"{where}: {[paddle_name(k) for k in extra]} do not fit a {spec.describe()}")
        try:
            checked = engine.check_leaves(leaves, expected, layout="paddle")
        except LayoutError as exc:
            text = str(exc)
            for k in sorted(expected, key=len, reverse=True):
                text = text.replace(k, f"{paddle_name(k)} ({k})")
            raise LayoutError(f"{where}: {text}") from None
        cls: Any = {"lstm": NumpyLSTM, "gru": NumpyGRU, "rnn": NumpyRNN}[config["cell"]]
        first = next(iter(checked.values()))
        torch_dtype = dtype or (torch.float64 if first.dtype == np.float64 else torch.float32)
        module = engine.build(cls, spec, batch_first=bf, dropout=dropout, device=device, dtype=torch_dtype)
        with torch.no_grad():
            for k, arr in checked.items():
                param = getattr(module, k)
                param.copy_(torch.as_tensor(np.ascontiguousarray(arr)).to(param.dtype))
        if freeze:
            module.requires_grad_(False)
        return module

    # the registry's Entry.arrays: per layer, per direction (forward first), the cell's {param: array}
    D = 2 if config["bidirectional"] else 1
    build.arrays = [[{param: arrays[key] for param, key in units[(k, d)].items()} for d in range(D)]  # type: ignore[attr-defined]
                    for k in range(config["num_layers"])]
    return build


def scan(path: str | os.PathLike, **options: Any) -> tuple[list[tuple[str, str, dict, Callable[..., Any]]],
                                                            list[tuple[str, str]], list[str]]:
    """``(modules, skipped, problems)`` of a ``.pdparams`` file; modules as :func:`read` returns them."""
    p = Path(path)
    arrays = read_pdparams(p)
    groups, other = _group(arrays)
    if not groups:
        raise LayoutError(f"{p}: no paddle.nn.LSTM/GRU/SimpleRNN weights (keys like '0.cell.weight_ih' or "
                          f"'weight_ih_l0') among {', '.join(list(arrays)[:5])}")
    out = []
    problems = []
    for name in sorted(groups):
        units = groups[name]
        bidirect = {k for k, d in units if d == 1}
        config = _config(str(p), name, units, arrays, bidirect)
        if config["cell"] == "rnn":
            problems.append(f"{name or 'state dict'}: a SimpleRNN's activation is not stored; built with Paddle's "
                            f"default tanh (nonlinearity='relu' for activation='relu')")
        out.append((name or "rnn", config["cell"], config, _build(str(p), name, units, arrays, config)))
    return out, [(k, "not a recurrent weight") for k in other], problems


def read(path: str | os.PathLike, **options: Any) -> list[tuple[str, str, dict, Callable[..., Any]]]:
    """``(name, cell, config, build)`` per recurrent layer of a ``.pdparams`` state dict.

    ``name`` is the layer's attribute path in the saved model (``"rnn"`` when the
    state dict is the layer's own). ``build(**options)``: ``time_major`` (default
    False, Paddle's) or ``batch_first``, ``nonlinearity`` (SimpleRNN), ``dropout``,
    ``device``, ``dtype``, ``freeze``.
    """
    return scan(path, **options)[0]


def load_all_from_pdparams(path: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Every recurrent layer of a ``.pdparams`` file, built: ``{name: NumpyLSTM/NumpyGRU/NumpyRNN}``."""
    return {name: build(**options) for name, _, _, build in read(path, **options)}


def sniff(path: str | os.PathLike) -> bool:
    """True for a ``.pdparams`` file that starts like a pickle."""
    p = Path(path)
    if p.suffix.lower() != ".pdparams":
        return False
    try:
        with open_regular(p) as fp:  # a FIFO is refused, never waited on
            return fp.read(1) == b"\x80"
    except OSError:
        return False


FORMAT = dict(name="paddle", suffixes=(".pdparams",), sniff=sniff, read=read, scan=scan)



def _register() -> None:
    from . import register_scanner

    register_scanner('paddle', (".pdparams",), sniff, scan, 'PaddlePaddle nn.LSTM/GRU/SimpleRNN state dicts (.pdparams), read with an allow-list unpickler')


_register()
