"""The block layout on disk: an ``.npz`` or a folder of ``.npy`` files holding ``w0``, ``w``, ``b0``, ``b``, ``proj``.

The layout itself is declared in :mod:`numpyrnn.layouts.blocks`. The arrays do
not record the cell (a GRU and an LSTM block can have the same shape), so
``cell`` is needed unless ``proj`` (LSTM only) or the bias shape says it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LayoutError
from ..files import fail, read_npy, read_npz, write_npz
from ..layouts.blocks import BLOCKS
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

__all__ = ["BLOCK_KEYS", "read_blocks", "read", "write", "LAYOUT"]

LAYOUT = BLOCKS

#: Keys of the block layout, in the order :func:`numpyrnn.to_numpy` returns them.
BLOCK_KEYS = ("w0", "w", "b0", "b", "proj")


def read_blocks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Block-layout arrays from an ``.npz`` or from a folder of ``.npy`` files.

    Keys are ``w0``, ``w``, ``b0``, ``b`` and ``proj``; ``w0`` is required. A
    folder's ``.npy`` files are memory-mapped.

    Raises:
        LayoutError: a missing ``w0``, an unknown key, or a bad file.
    """
    path = Path(path)
    if path.is_dir():
        found = {p.stem: p for p in sorted(path.glob("*.npy"))}
        unknown = [k for k in found if k not in BLOCK_KEYS]
        if unknown:
            raise fail(path, f"unexpected file(s) {', '.join(k + '.npy' for k in unknown)}; "
                             f"the block layout uses {', '.join(k + '.npy' for k in BLOCK_KEYS)}")
        arrays = {k: read_npy(p) for k, p in found.items()}
    else:
        if path.suffix.lower() != ".npz":
            raise fail(path, f"the block layout reads an .npz or a folder of .npy files, got a {path.suffix or 'suffix-less'} "
                             f"file; a single .npy holds one array: put w0.npy (and w.npy, b0.npy, ...) in a folder")
        arrays = read_npz(path)
        unknown = [k for k in arrays if k not in BLOCK_KEYS]
        if unknown:
            raise fail(path, f"unexpected key(s) {', '.join(map(repr, unknown))}; the block layout uses "
                             f"{', '.join(map(repr, BLOCK_KEYS))} (TF1 variable names need {option('format', 'tf1')})")
    if "w0" not in arrays:
        raise fail(path, f"no 'w0'; the block layout needs w0 of shape (directions, hidden, G*(input+hidden)), "
                         f"found {', '.join(map(repr, arrays)) or 'nothing'}")
    return arrays


def recorded_cell(arrays: dict[str, Any]) -> str | None:
    """The cell the arrays themselves prove: ``proj`` is an LSTM's; ``b0`` is ``(D, H, 2*G)``."""
    if "proj" in arrays:
        return "lstm"
    b0 = arrays.get("b0")
    if b0 is not None and getattr(b0, "ndim", 0) == 3:
        return {6: "gru", 8: "lstm", 2: "rnn"}.get(int(b0.shape[-1]))
    return None


def _source_dtype(arrays: dict[str, Any]) -> Any:
    kinds = [a.dtype for a in arrays.values() if getattr(a, "dtype", None) is not None and a.dtype.kind == "f"]
    return str(kinds[0]) if kinds else None


def read(path: str | os.PathLike, *, cell: str | None = None, nonlinearity: str | None = None,
         gates: str | None = None, rowwise: bool = False, dtype: Any = None, batch_first: bool = False,
         **_: Any) -> ModelFile:
    """One module from block arrays; ``cell`` is needed unless the arrays prove it.

    Raises:
        LayoutError: a bad file, no ``cell`` where the arrays do not prove one,
            or a ``cell`` that contradicts them.
    """
    path = Path(path)
    arrays = read_blocks(path)
    proven = recorded_cell(arrays)
    if proven is not None:
        check_cell(path, proven, cell, "the block arrays' shapes")
    chosen = (cell or proven or "").lower()
    if chosen not in CELL_NAMES:
        raise NeedsOption(f"{path.name}: block arrays do not record their cell; pass {option('cell', 'gru')}, "
                         f"{option('cell', 'lstm')} or {option('cell', 'rnn')}", "cell")
    if nonlinearity not in (None, "tanh") and chosen != "rnn":
        raise fail(path, f"{option('nonlinearity', nonlinearity)} applies to {option('cell', 'rnn')} only, "
                         f"not {option('cell', chosen)}")
    cls = module_class(chosen)
    extra = {"nonlinearity": nonlinearity or "tanh"} if chosen == "rnn" else {}
    name = path.stem if path.suffix else path.name

    def make(**opts: Any) -> Any:
        return cls.from_numpy(**arrays, gates=gates, rowwise=bool(rowwise), **extra, **opts)

    mf = ModelFile(path=path, format="blocks", modules=[])
    try_entry(mf, name, make, batch_first=bool(batch_first), dtype=dtype or _source_dtype(arrays), arrays=arrays)
    if mf.problems:  # one module, no other layers: its problem is the file's
        raise LayoutError(mf.problems[0].replace(f"layer {name!r}: ", "", 1))
    return mf


def write(path: str | os.PathLike, module: Any, *, gates: str | None = None, rowwise: bool = False) -> int:
    """A module's block arrays as an ``.npz``; returns the bytes written."""
    return write_npz(path, module.to_numpy(gates=gates, rowwise=rowwise))


def _sniff(path: Path) -> bool:
    """Folders and ``.npz`` files (sniffed last: TF1's ``.npz`` names are recognised first)."""
    return path.is_dir() or path.suffix.lower() == ".npz"


register(Format("blocks", (".npz",), _sniff, read, "block arrays w0, w, b0, b, proj (.npz or a folder of .npy)"))
