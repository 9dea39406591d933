"""TF1 checkpoints as ``.npz`` of variable names (``rnn/multi_rnn_cell/cell_0/lstm_cell/kernel``).

The layout is declared in :mod:`numpyrnn.layouts.tf1`. Variables are grouped
into modules by their outer variable scope (``encoder/rnn/...`` and
``decoder/rnn/...`` are two modules); within a scope, ``cell_<k>`` of a
``MultiRNNCell`` or ``stack_bidirectional_rnn`` is layer ``k`` of one stack. The
cell is read from the scope names TF1 writes (``lstm_cell``, ``basic_rnn_cell``,
``gates/kernel`` of a GRU); where the names do not say, ``cell`` is needed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LayoutError
from ..files import fail, read_npz, write_npz, zip_names
from ..layouts.tf1 import TF1
from . import (
    CELL_NAMES,
    Format,
    ModelFile,
    NeedsOption,
    check_cell,
    module_class,
    option,
    register,
    try_entry,
)

__all__ = ["tf1_structure", "tf1_arrays", "read", "write", "LAYOUT"]

LAYOUT = TF1


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]



#: Variable names inside a TF1 cell's scope, longest first (so "gates/kernel" wins over "kernel").
_TF1_LEAVES = tuple(sorted((
    "kernel", "bias", "projection/kernel", "w_i_diag", "w_f_diag", "w_o_diag",
    "gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias",
    "candidate/input_projection/kernel", "candidate/input_projection/bias",
    "candidate/hidden_projection/kernel", "candidate/hidden_projection/bias",
), key=len, reverse=True))

#: The cell scope ``numpyrnn export --to tf1`` writes for each mode.
_TF1_SCOPES = {"LSTM": "lstm_cell", "GRU": "cudnn_compatible_gru_cell", "RNN_TANH": "basic_rnn_cell",
               "RNN_RELU": "basic_rnn_cell"}


def tf1_structure(arrays: Mapping[str, np.ndarray], *, where: str = "tf1") -> tuple[Any, list[str]]:
    """Group TF1 variables (``.../cell_0/lstm_cell/kernel``) into what ``from_tf1`` takes.

    Variables are grouped by the cell scope their names share; what a cell
    may hold (and what is refused, such as peepholes) is the TF1 layout's to
    judge.

    The layer is the ``cell_<k>`` path component (else the order of the names),
    the direction a ``fw``/``bw`` component. Other variables (optimizer slots,
    ``global_step``) are ignored and returned.

    Returns:
        ``(source, ignored)``: one mapping (one layer) or a list of mappings,
        bottom first, each ``{"kernel", "bias"[, "projection/kernel"]}`` or
        ``{"fw": ..., "bw": ...}``; and the names that were ignored.

    Raises:
        LayoutError: no TF1 cell variables, or two groups for one layer.
    """
    groups: dict[str, dict[str, np.ndarray]] = {}
    ignored = []
    for name, arr in arrays.items():
        for leaf in _TF1_LEAVES:
            if name == leaf or name.endswith("/" + leaf):
                groups.setdefault(name[: len(name) - len(leaf)].rstrip("/"), {})[leaf] = arr
                break
        else:
            ignored.append(name)
    if not groups:
        raise LayoutError(f"{where}: no TF1 cell variables (names ending in /kernel and /bias) among "
                          f"{', '.join(list(arrays)[:6]) or 'no arrays'}")
    layers: dict[int, dict[str, dict]] = {}
    counters: dict[str, int] = {}
    for prefix in sorted(groups, key=_natural):
        parts = prefix.split("/")
        cells = [int(m.group(1)) for p in parts if (m := re.fullmatch(r"cell_(\d+)", p))]
        direction = "bw" if "bw" in parts else ("fw" if "fw" in parts else "")
        if cells:
            layer = cells[-1]
        else:
            layer = counters.get(direction, 0)
            counters[direction] = layer + 1
        slot = layers.setdefault(layer, {})
        if direction in slot:
            raise LayoutError(f"{where}: two variable groups for layer {layer}{' ' + direction if direction else ''}: "
                              f"{slot[direction]['_prefix']!r} and {prefix!r}")
        slot[direction] = {**groups[prefix], "_prefix": prefix}
    if sorted(layers) != list(range(len(layers))):
        raise LayoutError(f"{where}: layer numbers must run 0..N-1, got cell_{sorted(layers)}")
    out = []
    for k in sorted(layers):
        slot = {d: {kk: v for kk, v in g.items() if kk != "_prefix"} for d, g in layers[k].items()}
        if set(slot) == {""}:
            out.append(slot[""])
        elif set(slot) == {"fw", "bw"}:
            out.append(slot)
        else:
            raise LayoutError(f"{where}: layer {k} has directions {sorted(slot)}; expected one unnamed or both fw and bw")
    return (out[0] if len(out) == 1 else out), ignored


def tf1_arrays(layers: list, mode: str = "LSTM") -> dict[str, np.ndarray]:
    """``to_tf1()``'s per-layer mappings as TF1 variable names.

    One unidirectional layer: ``rnn/<cell>/kernel``; a stack:
    ``rnn/multi_rnn_cell/cell_<k>/<cell>/...``; bidirectional:
    ``stack_bidirectional_rnn/cell_<k>/bidirectional_rnn/{fw,bw}/<cell>/...``, where
    ``<cell>`` is ``lstm_cell``, ``cudnn_compatible_gru_cell`` or ``basic_rnn_cell``.
    """
    scope = _TF1_SCOPES[mode]
    out: dict[str, np.ndarray] = {}
    for k, layer in enumerate(layers):
        if "fw" in layer:
            for d in ("fw", "bw"):
                for leaf, arr in layer[d].items():
                    out[f"stack_bidirectional_rnn/cell_{k}/bidirectional_rnn/{d}/{scope}/{leaf}"] = np.asarray(arr)
        else:
            base = f"rnn/{scope}" if len(layers) == 1 else f"rnn/multi_rnn_cell/cell_{k}/{scope}"
            for leaf, arr in layer.items():
                out[f"{base}/{leaf}"] = np.asarray(arr)
    return out




#: Scope components that belong to TF1's own structure, not to the user's variable scope.
_STRUCTURE = re.compile(r"^(rnn|multi_rnn_cell|stack_bidirectional_rnn|bidirectional_rnn|fw|bw|cell_\d+|"
                        r"lstm_cell|basic_lstm_cell|gru_cell|cudnn_compatible_gru_cell|basic_rnn_cell|"
                        r"gates|candidate|kernel|bias|projection|w_[ifo]_diag)$")

#: Cell scope name -> cell.
_SCOPE_CELLS = {"lstm_cell": "lstm", "basic_lstm_cell": "lstm", "basic_rnn_cell": "rnn",
                "cudnn_compatible_gru_cell": "gru", "gru_cell": "gru"}


def _outer(name: str) -> str:
    parts = name.split("/")
    for k, p in enumerate(parts):
        if _STRUCTURE.match(p):
            return "/".join(parts[:k])
    return "/".join(parts[:-1])


def recorded_cell(names: list[str]) -> str | None:
    """The cell TF1's scope names prove, or ``None``."""
    cells = {_SCOPE_CELLS[p] for n in names for p in n.split("/") if p in _SCOPE_CELLS}
    if any(n.endswith("gates/kernel") for n in names):
        cells.add("gru")
    return cells.pop() if len(cells) == 1 else None


def read(path: str | os.PathLike, *, cell: str | None = None, forget_bias: float | None = None,
         nonlinearity: str | None = None, dtype: Any = None, batch_first: bool = False, variants: bool = False,
         **_: Any) -> ModelFile:
    """One module per outer variable scope.

    Raises:
        LayoutError: a bad file, no TF1 cell variables, or no ``cell`` where the
            scope names do not say.
    """
    path = Path(path)
    arrays = read_npz(path)
    scopes: dict[str, dict[str, np.ndarray]] = {}
    for name, arr in arrays.items():
        scopes.setdefault(_outer(name), {})[name] = arr
    mf = ModelFile(path=path, format="tf1", modules=[])
    fb = 1.0 if forget_bias is None else float(forget_bias)
    for scope in sorted(scopes, key=_natural):
        group = scopes[scope]
        name = scope or "rnn"
        try:
            source, ignored = tf1_structure(group, where=f"{path.name}[{name!r}]")
        except LayoutError:
            mf.skipped.extend((n, "variable (not a TF1 cell's)") for n in group)
            continue
        mf.skipped.extend((n, "variable (not a TF1 cell's)") for n in ignored)
        proven = recorded_cell(list(group))
        if proven is not None:
            check_cell(path, proven, cell, f"scope {name!r}")
        chosen = (cell or proven or "").lower()
        if chosen not in CELL_NAMES:
            raise NeedsOption(f"{path.name}: the variable names of scope {name!r} do not record the cell; pass "
                             f"{option('cell', 'lstm')} or {option('cell', 'rnn')}", "cell")
        cls = module_class(chosen)
        kind = str(next(iter(group.values())).dtype)
        extra = {"nonlinearity": nonlinearity} if chosen == "rnn" and nonlinearity else {}

        def make(source: Any = source, cls: Any = cls, extra: dict = extra, **opts: Any) -> Any:
            return cls.from_tf1(source, forget_bias=fb, **extra, **opts)

        try_entry(mf, name, make, variants=variants, batch_first=bool(batch_first), dtype=dtype or kind,
                  forget_bias=fb, arrays=source)
    if not mf.modules and not mf.problems:
        raise fail(path, f"no TF1 cell variables (names ending in /kernel and /bias) among "
                         f"{', '.join(list(arrays)[:6]) or 'no arrays'}")
    return mf


def write(path: str | os.PathLike, module: Any, *, forget_bias: float = 1.0) -> int:
    """A module's variables under TF1's names, as an ``.npz``; returns the bytes written."""
    return write_npz(path, tf1_arrays(module.to_tf1(forget_bias=forget_bias), mode=module.spec.mode))


def _sniff(path: Path) -> bool:
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        names = [n[:-4] for n in zip_names(path) if n.endswith(".npy")]
    except LayoutError:
        return False
    return any(n.endswith(("/kernel", "/bias")) for n in names)


register(Format("tf1", (".npz",), _sniff, read, "TF1 variables by name (.npz), e.g. rnn/lstm_cell/kernel"))
