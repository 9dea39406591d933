"""The one engine that moves weights between any layout and torch parameters.

A layout (see :mod:`numpyrnn.layouts`) turns a foreign structure into named
*leaves* (arrays) and declares, as a list of :class:`Piece`, where every block
of every torch parameter comes from: which leaf, which basic index into it,
which einops pattern turns that into torch orientation, and which foreign gate
order it uses. This module carries any such declaration out:

1. :func:`check_leaves` validates every leaf (type, dtype, shape, finiteness)
   before anything is written;
2. :func:`plan` builds einops *views* of source and destination (never a
   copy; a pattern that would copy is an internal error);
3. :func:`load` writes every destination view once from its source view,
   zeroing what no piece covers: on the CPU in blocks spread over worker
   threads, across the bus one raw span at a time, permuted on the device;
4. :func:`export` runs the same plan backwards into fresh numpy arrays.

Fresh modules come from :func:`build`: built on ``meta``, materialised
uninitialised (large CPU tensors get transparent huge pages), never randomly
initialised.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import nn

from .errors import LayoutError
from .spec import RNNSpec

__all__ = [
    "Axis", "Piece", "check_leaves", "plan", "load", "export", "build", "shape_text",
    "import_layout", "load_layout", "export_layout",
]


@dataclass(frozen=True)
class Axis:
    """One expected axis of a leaf: a readable name and its length."""

    name: str
    size: int

    def __str__(self) -> str:
        return f"{self.name}={self.size}" if self.name != str(self.size) else self.name


def shape_text(axes: Sequence[Axis]) -> str:
    """``(directions=2, hidden=4, 3*(input+hidden)=30)``."""
    return "(" + ", ".join(str(a) for a in axes) + ("," if len(axes) == 1 else "") + ")"


@dataclass(frozen=True)
class Piece:
    """Where one block of one torch parameter lives in a foreign layout.

    The source is ``rearrange(leaves[source][index], pattern, **sizes)``. For
    weights it must come out as ``(g, H, width)``, for biases as ``(g, H)``,
    with the ``g`` axis ordered as ``gates`` (torch letters, e.g. ``"zrn"``).
    A piece with ``gates=""`` covers the whole parameter (``weight_hr``).

    Attributes:
        param: torch parameter name, e.g. ``"weight_ih_l0_reverse"``.
        source: leaf key, e.g. ``"w0"`` or ``"layers[1].forward_rnn.cell.ir.kernel"``.
        index: basic index into the leaf (ints and slices only, so it is a view).
        pattern: einops pattern from the indexed leaf to torch orientation.
        sizes: axis lengths the pattern needs (e.g. ``{"g": 3}``).
        gates: the leaf's gate order along ``g``, in torch letters.
        interleaved: the torch rows are read as ``(h g)`` instead of ``(g h)``:
            the row-major reshape the original row loop performed.
        offsets: constants per gate letter added on import and subtracted on
            export (TF1's run-time ``forget_bias``).
        fold: another parameter whose same gates are summed into this leaf on
            export and set to zero on import (single-bias layouts).
    """

    param: str
    source: str
    index: tuple = ()
    pattern: str = ""
    sizes: Mapping[str, int] = field(default_factory=dict)
    gates: str = ""
    interleaved: bool = False
    offsets: Mapping[str, float] = field(default_factory=dict)
    fold: str | None = None


# --------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------

_FLOAT_KINDS = "f"


@functools.lru_cache(maxsize=64)
def _is_bfloat16(dtype: np.dtype) -> bool:
    return dtype.name == "bfloat16"  # ml_dtypes (jax) bfloat16; .name is slow, hence the cache


def to_array(value: Any, name: str) -> np.ndarray | torch.Tensor:
    """Accept numpy arrays, torch tensors and array-likes (jax arrays, lists).

    Raises:
        TypeError: ``value`` is ``None``, not array-like, a sparse tensor or a
            tensor on the ``meta`` device.
        LayoutError: a masked array with masked entries (they hold no value).
    """
    if isinstance(value, np.ma.MaskedArray):
        masked = np.ma.getmaskarray(value)
        if masked.any():
            idx = [int(i) for i in np.unravel_index(int(np.argmax(masked)), masked.shape)]
            raise LayoutError(
                f"{name}: masked array with a masked entry at index {idx}; a masked entry has no weight value: "
                f"fill it explicitly, e.g. {name.split('[')[0].split('.')[0]}.filled(0.0)"
            )
        return np.ma.getdata(value)
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise TypeError(f"{name}: a {value.layout} tensor; numpyrnn reads dense tensors: convert with .to_dense()")
        if value.device.type == "meta":
            raise TypeError(f"{name}: a tensor on the meta device holds no values; pass one with data")
        return value.detach()
    if value is None:
        raise TypeError(f"{name}: expected an array, got None")
    if isinstance(value, (str, bytes, dict)):
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - anything that is not array-like
        raise TypeError(f"{name}: expected an array, got {type(value).__name__} ({exc})") from None
    return arr


def _check_dtype(name: str, arr: np.ndarray | torch.Tensor) -> None:
    if isinstance(arr, torch.Tensor):
        if not arr.is_floating_point():
            raise TypeError(
                f"{name}: dtype {arr.dtype} cannot hold weights; expected a floating dtype "
                f"(float16, bfloat16, float32, float64); convert with .float() if intended"
            )
        return
    dt = arr.dtype
    if dt.kind in _FLOAT_KINDS or _is_bfloat16(dt):
        return
    kinds = {"i": "integer", "u": "unsigned integer", "b": "bool", "c": "complex", "O": "object",
             "U": "string", "S": "bytes", "V": "structured", "M": "datetime", "m": "timedelta"}
    what = kinds.get(dt.kind, dt.kind)
    fix = {
        "c": "; numpyrnn will not drop imaginary parts: pass .real explicitly if that is what you want",
        "O": "; object arrays may hold anything: build a float array with np.asarray(x, dtype=np.float32)",
    }.get(dt.kind, f"; convert with {name.split('[')[0].split('.')[0]}.astype(np.float32) if the values are intended")
    raise TypeError(
        f"{name}: dtype {dt} ({what}) cannot hold weights; expected a floating dtype "
        f"(float16, float32, float64){fix}"
    )


# Elements per block when hunting for the first bad value: small enough that the
# temporary masks stay a few MB whatever the size of the leaf.
_LOCATE_BLOCK = 1 << 18


# Below this many elements the check runs single-threaded in numpy: waking torch's
# thread pool costs more than the pass itself, and far more on a busy machine.
_SMALL = 1 << 21


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every element is finite: one read pass, no big temporaries.

    float32/float64 use a sum in their own dtype (NaN and Inf propagate; a finite sum
    proves every element finite). Narrow dtypes would overflow a sum in their own dtype
    and an upcast sum materialises a copy, so they use the minimum and maximum, which
    propagate NaN and see an Inf. A sum that overflows from huge finite values only
    sends the caller to :func:`_locate_nonfinite`, which then finds nothing. Large
    tensors use torch's multithreaded reductions, small ones numpy's.
    """
    wide = t.dtype in (torch.float32, torch.float64)
    if t.numel() < _SMALL and t.device.type == "cpu" and t.dtype in (torch.float16, torch.float32, torch.float64):
        a = _numpy_view(t)
        with np.errstate(over="ignore", invalid="ignore"):
            if wide:
                return bool(np.isfinite(a.sum(dtype=a.dtype)))
            return bool(np.isfinite(a.min())) and bool(np.isfinite(a.max()))
    if wide:
        return bool(torch.isfinite(t.sum(dtype=t.dtype)))
    lo, hi = torch.aminmax(t)
    return bool(torch.isfinite(lo)) and bool(torch.isfinite(hi))


def _locate_nonfinite(t: torch.Tensor) -> tuple[int, ...] | None:
    """Index of the first NaN/Inf in row-major order, scanning in bounded blocks."""
    if t.numel() <= _LOCATE_BLOCK:
        bad = torch.isfinite(t).logical_not_().reshape(-1).view(torch.uint8)
        first = int(bad.argmax())  # argmax gives the first of equal maxima
        if not bad[first]:
            return None
        return tuple(int(i) for i in np.unravel_index(first, tuple(t.shape)))
    if t.dim() == 1:
        for start in range(0, t.shape[0], _LOCATE_BLOCK):
            block = t[start : start + _LOCATE_BLOCK]
            if not _all_finite(block):
                found = _locate_nonfinite(block)
                if found is not None:
                    return (start + found[0],)
        return None
    for i in range(t.shape[0]):
        sub = t[i]
        if sub.numel() and not _all_finite(sub):
            found = _locate_nonfinite(sub)
            if found is not None:
                return (i,) + found
    return None


def _first_nonfinite(arr: np.ndarray | torch.Tensor) -> tuple[tuple[int, ...], float] | None:
    """Index and value of the first NaN/Inf, or ``None``. One read pass, no big temporaries."""
    t = _as_tensor(arr) if isinstance(arr, np.ndarray) else arr
    if t.numel() == 0 or t.device.type == "meta":
        return None
    if _all_finite(t):
        return None
    idx = _locate_nonfinite(t)
    if idx is None:  # only huge finite values that overflowed the sum
        return None
    return idx, float(t[idx]) if idx else float(t)


def check_leaves(
    leaves: Mapping[str, Any],
    expected: Mapping[str, Sequence[Axis]],
    *,
    layout: str,
    hint: Any = None,
    finite: bool = True,
) -> dict[str, np.ndarray | torch.Tensor]:
    """Validate every leaf against its expected shape; return them as arrays.

    Checks, in order, so that the first message is the most useful one: every
    expected leaf is present and array-like, has a floating dtype, the expected
    number of axes and lengths, and holds only finite values.

    Args:
        leaves: leaf key -> array (numpy, torch, or array-like).
        expected: leaf key -> expected shape as named axes.
        layout: the layout's name, for messages.
        hint: optional ``hint(key, got_shape) -> str`` adding a likely cause.
        finite: also check that every value is finite (see :func:`check_finite`);
            :func:`load` with ``fresh=True`` does that while it copies instead.

    Raises:
        TypeError: a leaf is missing an array or has a non-floating dtype.
        LayoutError: wrong shape, unexpected keys, NaN or Inf.
    """
    extra = [k for k in leaves if k not in expected]
    if extra:
        raise LayoutError(
            f"{layout}: unexpected array(s) {', '.join(map(repr, extra))}; this configuration takes "
            f"{', '.join(map(repr, expected)) or 'no arrays'}"
        )
    out: dict[str, np.ndarray | torch.Tensor] = {}
    for key, axes in expected.items():
        if key not in leaves or leaves[key] is None:
            raise TypeError(
                f"{key}: expected an array of shape {shape_text(axes)} ({layout} layout), got None"
                if key in leaves
                else f"{key}: missing; the {layout} layout needs an array of shape {shape_text(axes)}"
            )
        arr = to_array(leaves[key], key)
        _check_dtype(key, arr)
        got = tuple(arr.shape)
        want = tuple(a.size for a in axes)
        if got != want:
            if len(got) != len(want):
                detail = f"expected {len(want)} axes {shape_text(axes)}, got {len(got)} axes {got}"
            else:
                bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
                detail = (
                    f"expected {shape_text(axes)}, got {got}: "
                    + "; ".join(f"axis {i} ({axes[i].name}) is {got[i]}, expected {want[i]}" for i in bad)
                )
            extra_hint = hint(key, got) if hint else ""
            raise LayoutError(f"{key} ({layout} layout): {detail}" + (f"; {extra_hint}" if extra_hint else ""))
        out[key] = arr
    if finite:
        check_finite(out)
    return out


def check_finite(leaves: Mapping[str, np.ndarray | torch.Tensor]) -> None:
    """Raise for the first leaf, in order, that holds a NaN or Inf.

    Raises:
        LayoutError: naming the leaf, the index of its first bad value and the value.
    """
    for key, arr in leaves.items():
        found = _first_nonfinite(arr)
        if found is not None:
            idx, val = found
            raise LayoutError(
                f"{key}: holds {val} at index {list(idx)}; weights must be finite "
                f"(check the source for overflow or uninitialised memory)"
            )


# --------------------------------------------------------------------------------------
# numpy -> torch without copies
# --------------------------------------------------------------------------------------

_warn_lock = threading.Lock()


def _as_tensor(arr: np.ndarray) -> torch.Tensor:
    """A CPU tensor over ``arr``'s memory, copying only where torch cannot view it.

    Read-only arrays and memory maps are viewed without torch's "not writable"
    warning: numpyrnn only ever reads from them. Negative strides and non-native
    byte order are copied once; bfloat16 (ml_dtypes) is reinterpreted.
    """
    if _is_bfloat16(arr.dtype):
        return _as_tensor(arr.view(np.uint16)).view(torch.bfloat16)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype == np.longdouble and np.dtype(np.longdouble).itemsize > 8:
        arr = arr.astype(np.float64)
    if any(s < 0 for s in arr.strides):
        arr = _positive_strides(arr)
    if not arr.flags.writeable:
        with _warn_lock, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(arr)
    return torch.from_numpy(arr)


def _positive_strides(arr: np.ndarray) -> np.ndarray:
    """Negative strides are fine in numpy but refused by torch: copy, and fix size-1 axes."""
    if any(s < 0 and n > 1 for s, n in zip(arr.strides, arr.shape)):
        arr = np.ascontiguousarray(arr)
    if any(s < 0 for s in arr.strides):  # a size-1 axis may keep a negative stride
        strides = tuple(0 if s < 0 else s for s in arr.strides)
        arr = np.lib.stride_tricks.as_strided(arr, arr.shape, strides, writeable=False)
    return arr


# --------------------------------------------------------------------------------------
# memory: fresh CPU buffers and host -> device transfers
# --------------------------------------------------------------------------------------

_HUGE_PAGE = 2 << 20
_MADV_HUGEPAGE = 14
_madvise: Any = None


def _advise_huge_pages(t: torch.Tensor) -> None:
    """Ask Linux to back a fresh, untouched CPU tensor with transparent huge pages.

    Faulting in 2 MB pages instead of 4 KB ones is most of the difference between
    writing a fresh torch tensor and a fresh numpy array (numpy gives the same advice
    for its large arrays). Only advice: where it is not available nothing changes.
    """
    global _madvise
    if _madvise is None:
        _madvise = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                fn = libc.madvise
                fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                fn.restype = ctypes.c_int
                _madvise = fn
            except (OSError, AttributeError):  # pragma: no cover - no libc madvise
                _madvise = False
    if not _madvise:
        return
    start = t.data_ptr()
    stop = start + t.numel() * t.element_size()
    lo = (start + _HUGE_PAGE - 1) // _HUGE_PAGE * _HUGE_PAGE
    hi = stop // _HUGE_PAGE * _HUGE_PAGE
    if hi > lo:
        _madvise(lo, hi - lo, _MADV_HUGEPAGE)  # a failure only means 4 KB pages


def empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.empty``, with huge-page advice for large CPU tensors (see :func:`_advise_huge_pages`)."""
    t = torch.empty(tuple(shape), dtype=dtype, device=device)
    if t.device.type == "cpu" and t.numel() * t.element_size() >= 2 * _HUGE_PAGE:
        _advise_huge_pages(t)
    return t


#: Bytes per staging buffer for host -> device transfers.
CHUNK_BYTES = 64 << 20


def chunk_plan(nbytes: int, chunk_bytes: int = CHUNK_BYTES, align: int = 1) -> list[tuple[int, int]]:
    """Split ``nbytes`` into ``(start, stop)`` byte ranges of at most ``chunk_bytes``.

    Every boundary is a multiple of ``align`` (the element size), so no element is
    split between two chunks; the ranges are in order, disjoint and cover everything.

    Raises:
        ValueError: a size is negative, or ``chunk_bytes`` is smaller than ``align``.
    """
    if nbytes < 0 or align < 1 or chunk_bytes < align:
        raise ValueError(f"chunk_plan: need nbytes >= 0 and chunk_bytes >= align >= 1, got "
                         f"nbytes={nbytes}, chunk_bytes={chunk_bytes}, align={align}")
    step = chunk_bytes // align * align
    return [(start, min(start + step, nbytes)) for start in range(0, nbytes, step)]


class Stager:
    """Host -> device copies through two reusable staging buffers.

    A chunk is copied into one staging buffer (a multithreaded CPU copy) while
    the previous chunk's DMA from the other buffer is still running; a buffer is
    refilled only after the event recorded behind its last DMA has completed. On
    CUDA the buffers are pinned, so the DMA runs asynchronously at full speed.
    Spans shorter than two chunks go through one plain ``copy_``.

    With a CPU ``device`` the same schedule runs with ordinary buffers and no
    events, which is how the logic is tested without a GPU.

    Args:
        device: the destination device.
        chunk_bytes: staging buffer size (default :data:`CHUNK_BYTES`).
        pin: pin the staging buffers (default: on CUDA).
    """

    def __init__(self, device: torch.device, chunk_bytes: int | None = None, pin: bool | None = None):
        self.device = torch.device(device)
        self.chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        self.pin = self.device.type == "cuda" if pin is None else pin
        self._buffers: list[torch.Tensor] = []
        self._events: list[Any] = [None, None]
        self.chunks = 0  # chunks staged so far (for tests and benchmarks)

    def _buffer(self, k: int) -> torch.Tensor:
        while len(self._buffers) <= k:
            self._buffers.append(torch.empty(self.chunk_bytes, dtype=torch.uint8, pin_memory=self.pin))
        return self._buffers[k]

    def _record(self, k: int) -> None:
        if self.device.type == "cuda":
            ev = torch.cuda.Event()
            ev.record(torch.cuda.current_stream(self.device))
            self._events[k] = ev

    def _wait(self, k: int) -> None:
        ev = self._events[k]
        if ev is not None:
            ev.synchronize()
            self._events[k] = None

    def copy(self, dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """Copy the contiguous CPU tensor ``src`` into the contiguous ``dst`` on the device."""
        if not (src.is_contiguous() and dst.is_contiguous()) or src.shape != dst.shape or src.dtype != dst.dtype:
            raise RuntimeError("internal error: staged copies need contiguous tensors of one shape and dtype")
        nbytes = src.numel() * src.element_size()
        if nbytes < 2 * self.chunk_bytes or src.is_pinned():
            return dst.copy_(src, non_blocking=src.is_pinned())
        s8 = src.reshape(-1).view(torch.uint8)
        d8 = dst.reshape(-1).view(torch.uint8)
        for k, (start, stop) in enumerate(chunk_plan(nbytes, self.chunk_bytes, src.element_size())):
            slot = k % 2
            buf = self._buffer(slot)[: stop - start]
            self._wait(slot)  # the DMA that last read this buffer is done
            buf.copy_(s8[start:stop])
            d8[start:stop].copy_(buf, non_blocking=self.pin)
            self._record(slot)
            self.chunks += 1
        return dst

    def to(self, src: torch.Tensor) -> torch.Tensor:
        """A copy of the contiguous CPU tensor ``src`` on the device."""
        return self.copy(torch.empty(src.shape, dtype=src.dtype, device=self.device), src)

    def close(self) -> None:
        """Wait for every DMA still reading a staging buffer."""
        for k in range(2):
            self._wait(k)


def to_device(arr: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """The leaf as a tensor on ``device``: a view on the CPU, one (staged) transfer elsewhere."""
    t = _as_tensor(arr) if isinstance(arr, np.ndarray) else arr
    device = torch.device(device)
    if t.device == device or (device.type == t.device.type and device.index is None):
        return t
    if t.device.type == "cpu" and t.is_contiguous():
        stager = Stager(device)
        try:
            return stager.to(t)
        finally:
            stager.close()
    return t.to(device)


def extent(view: torch.Tensor) -> tuple[int, int]:
    """``(lo, hi)``: the elements of ``view``'s storage that it spans, as offsets.

    Raises:
        RuntimeError: ``view`` is empty.
    """
    if view.numel() == 0:
        raise RuntimeError("internal error: extent of an empty view")
    lo = hi = int(view.storage_offset())
    for n, st in zip(view.shape, view.stride()):
        reach = (n - 1) * st
        if reach < 0:
            lo += reach
        else:
            hi += reach
    return lo, hi + 1


def span_groups(views: Sequence[torch.Tensor]) -> list[tuple[int, int, list[int]]]:
    """Group views of one storage into spans to transfer whole.

    Views whose extents overlap share a span (so the bytes they share cross the
    bus once); views that merely touch do not, which keeps every span about one
    (layer, direction) block. Returns ``(lo, hi, [indices into views])`` sorted by
    ``lo``.
    """
    order = sorted(range(len(views)), key=lambda i: extent(views[i]))
    groups: list[tuple[int, int, list[int]]] = []
    for i in order:
        lo, hi = extent(views[i])
        if groups and lo < groups[-1][1]:
            glo, ghi, members = groups[-1]
            groups[-1] = (glo, max(ghi, hi), members + [i])
        else:
            groups.append((lo, hi, [i]))
    return groups


def _storage_key(t: torch.Tensor) -> tuple[int, torch.dtype]:
    return t.untyped_storage().data_ptr(), t.dtype


def _rebase(view: torch.Tensor, base: torch.Tensor, lo: int) -> torch.Tensor:
    """The view with ``view``'s sizes and strides over ``base``, which holds elements ``lo:`` of its storage."""
    return base.as_strided(view.shape, view.stride(), view.storage_offset() - lo)


# --------------------------------------------------------------------------------------
# planning
# --------------------------------------------------------------------------------------

@dataclass
class _Copy:
    dst: torch.Tensor
    src: torch.Tensor
    offset: float = 0.0
    fold: torch.Tensor | None = None  # export only: summed into src


def _view(t: torch.Tensor, index: tuple, pattern: str, sizes: Mapping[str, int], what: str) -> torch.Tensor:
    v = t[index] if index else t
    if pattern:
        v = rearrange(v, pattern, **sizes)
    if v.numel() and v.untyped_storage().data_ptr() != t.untyped_storage().data_ptr():
        raise RuntimeError(f"internal error: pattern {pattern!r} for {what} materialised a copy")
    return v


def _param_view(p: torch.Tensor, piece: Piece, G: int) -> torch.Tensor:
    """The parameter as ``(g, H[, width])``, in torch gate order."""
    if not piece.gates:
        return p
    order = "(h g)" if piece.interleaved else "(g h)"
    pattern = f"{order} x -> g h x" if p.dim() == 2 else f"{order} -> g h"
    return _view(p, (), pattern, {"g": G}, piece.param)


def _runs(piece: Piece, torch_letters: str) -> list[tuple[int, int, int, str]]:
    """(torch_start, source_start, length, letters) runs of consecutive gates."""
    runs: list[tuple[int, int, int, str]] = []
    for k, letter in enumerate(piece.gates):
        t = torch_letters.index(letter)
        if runs and runs[-1][0] + runs[-1][2] == t and runs[-1][1] + runs[-1][2] == k:
            t0, k0, n, ls = runs[-1]
            runs[-1] = (t0, k0, n + 1, ls + letter)
        else:
            runs.append((t, k, 1, letter))
    return runs


def plan(
    spec: RNNSpec,
    pieces: Iterable[Piece],
    params: Mapping[str, torch.Tensor],
    leaves: Mapping[str, torch.Tensor],
    *,
    direction: str,
) -> tuple[list[_Copy], set[str]]:
    """Pair every piece's destination view with its source view.

    For ``direction="import"`` the destination is the parameter; for
    ``"export"`` it is the leaf. Returns the copies and the names of parameters
    that some gate of is not written (they are zeroed first on import).

    Raises:
        RuntimeError: a piece would write a block twice, names an unknown
            parameter, or its pattern is not a view: bugs in a layout.
    """
    G = spec.gates
    torch_letters = spec.gate_letters
    copies: list[_Copy] = []
    covered: dict[str, set[int]] = {}
    for piece in pieces:
        if piece.param not in params:
            raise RuntimeError(f"internal error: layout names unknown parameter {piece.param!r}")
        pview = _param_view(params[piece.param], piece, G)
        lview = _view(leaves[piece.source], piece.index, piece.pattern, piece.sizes, piece.source)
        fview = _param_view(params[piece.fold], piece, G) if piece.fold else None
        if not piece.gates:  # the whole parameter (weight_hr): every slot at once
            runs = [(slice(None), slice(None), "", range(G))]
        else:
            runs = [
                (slice(t0, t0 + n), slice(k0, k0 + n), letters, range(t0, t0 + n))
                for t0, k0, n, letters in _runs(piece, torch_letters)
            ]
        done = covered.setdefault(piece.param, set())
        for tsl, ksl, letters, trange in runs:
            slots = set(trange)
            if done & slots:
                raise RuntimeError(f"internal error: {piece.param} gates {letters!r} written twice")
            done |= slots
            offsets = {piece.offsets.get(c, 0.0) for c in letters} if letters else {0.0}
            if len(offsets) > 1:  # split runs whose gates carry different offsets
                for j, c in enumerate(letters):
                    t, k = tsl.start + j, ksl.start + j
                    copies.append(_pair(pview[t : t + 1], lview[k : k + 1], piece.offsets.get(c, 0.0),
                                        fview[t : t + 1] if fview is not None else None, direction))
                continue
            copies.append(_pair(pview[tsl], lview[ksl], offsets.pop(),
                                fview[tsl] if fview is not None else None, direction))
    partial = {name for name in params if len(covered.get(name, ())) < G}
    return copies, partial


def _pair(pv: torch.Tensor, lv: torch.Tensor, offset: float, fv: torch.Tensor | None, direction: str) -> _Copy:
    if pv.shape != lv.shape:
        raise RuntimeError(f"internal error: layout view {tuple(lv.shape)} does not match parameter view {tuple(pv.shape)}")
    if direction == "import":
        return _Copy(dst=pv, src=lv, offset=offset)
    return _Copy(dst=lv, src=pv, offset=-offset, fold=fv)


# --------------------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------------------

def _params(module: nn.Module, spec: RNNSpec) -> dict[str, torch.Tensor]:
    return {name: getattr(module, name) for name in spec.param_shapes()}


def load(
    module: nn.RNNBase,
    pieces: Sequence[Piece],
    leaves: Mapping[str, np.ndarray | torch.Tensor],
    *,
    fresh: bool = False,
    spec: RNNSpec | None = None,
) -> nn.RNNBase:
    """Write validated leaves into ``module``'s parameters, in place, atomically.

    Everything that can fail (views, shapes) is worked out before the first
    write. Parameters not fully covered by pieces are zeroed first. The
    parameters keep their identity (optimizers and cuDNN's flat buffer survive).

    On the CPU every piece is a strided copy from a view of the source into a
    view of the parameter (dtype casts happen inside it), cut into blocks of a
    few MB that worker threads copy. When the parameters live on another device,
    the source crosses the bus as it is laid out, one span of overlapping pieces
    at a time (see :func:`span_groups`), and is permuted and cast there by the
    same views; device memory beyond the module stays within one span.

    Args:
        module: the module to write into.
        pieces: the layout's declaration.
        leaves: leaves that passed :func:`check_leaves`.
        fresh: ``module`` is new and is discarded if this raises. When every
            copy crosses to another device, the values are then checked there
            after the transfer instead of in a pass over host memory first. Any
            bad value raises exactly what :func:`check_finite` raises.
        spec: the torch-named parameters to write, for a module that is not an
            ``nn.RNNBase`` but has them (:mod:`numpyrnn.variants`); ``None`` reads
            them from ``module``.

    Raises:
        LayoutError: a leaf holds NaN or Inf (checked before anything is written,
            except as described under ``fresh``).
    """
    spec = spec or RNNSpec.of(module)
    params = _params(module, spec)
    first = next(iter(params.values()))
    device = first.device
    tensors = {k: _as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in leaves.items()}
    _check_range(tensors, first.dtype)
    copies, partial = plan(spec, pieces, params, tensors, direction="import")
    local: list[_Copy] = []
    remote: list[_Copy] = []
    for c in copies:
        (remote if c.src.numel() and _crosses(c.src, c.dst) else local).append(c)
    # On the CPU a separate multithreaded pass over the source (torch's vectorised sum)
    # costs less than checking each block in numpy while it is in cache. Across the bus
    # the check runs on the device, on the bytes that arrived.
    fused = fresh and bool(remote) and not local and _covers(tensors, [c.src for c in copies])
    if not fused:
        check_finite(tensors)
    ok = True
    with torch.no_grad():
        for name in partial:
            params[name].zero_()
        _copy_blocks([(c.dst, c.src) for c in local])
        for c in local:
            if c.offset:
                c.dst.add_(c.offset)
        if remote:
            ok &= _load_remote(remote, device, check=fused)
    if not ok:
        check_finite(tensors)  # raises, naming the first bad value in leaf order
        # else only huge finite values overflowed a block's sum: nothing to refuse
    if not fresh and not _flat(module):
        # A fresh module was flattened when build() materialised it, and a module already
        # in cuDNN's one buffer was written through views of it: flattening again would
        # allocate a new buffer. Anything else (weights replaced by hand) is re-flattened.
        module.flatten_parameters()
    return module


def _flat(module: nn.RNNBase) -> bool:
    """Whether every flat weight already lives in one CUDA storage (cuDNN's buffer)."""
    weights = getattr(module, "_flat_weights", [])
    if not weights or not all(isinstance(w, torch.Tensor) and w.is_cuda for w in weights):
        return False
    return len({w.untyped_storage().data_ptr() for w in weights}) == 1


def _crosses(host: torch.Tensor, other: torch.Tensor) -> bool:
    """Whether a copy between ``host`` (a leaf) and ``other`` (a parameter) crosses the bus."""
    return host.device.type == "cpu" and other.device.type != "cpu"


def _write(dst: torch.Tensor, src: torch.Tensor, offset: float) -> None:
    """``dst[...] = src + offset``, casting to ``dst``'s dtype on the way."""
    dst.copy_(src)
    if offset:
        dst.add_(offset)


# CPU copies are cut into blocks of about this many bytes (a few per core's cache)
# and run in numpy by worker threads: numpy releases the GIL while it copies, and
# unlike torch's intra-op pool no worker waits for another at every operation,
# which costs milliseconds per copy on a busy machine.
_BLOCK_BYTES = 4 << 20
# Below this many bytes in all, one thread does everything.
_THREADED_BYTES = 32 << 20
_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64)


def _blockwise(dst: torch.Tensor, src: torch.Tensor) -> bool:
    """Whether the copy can run in numpy blocks: CPU tensors of numpy dtypes."""
    return (dst.device.type == "cpu" and src.device.type == "cpu"
            and dst.dtype in _NUMPY_DTYPES and src.dtype in _NUMPY_DTYPES)


def _covers(leaves: Mapping[str, torch.Tensor], views: Sequence[torch.Tensor]) -> bool:
    """Whether the views (which never overlap on import) read every element of every leaf."""
    read: dict[int, int] = {}
    for v in views:
        key = v.untyped_storage().data_ptr()
        read[key] = read.get(key, 0) + v.numel()
    total: dict[int, int] = {}
    for t in leaves.values():
        if t.numel():
            key = t.untyped_storage().data_ptr()
            total[key] = total.get(key, 0) + t.numel()
    return all(read.get(k, 0) == n for k, n in total.items())


def blocks(dst: torch.Tensor, src: torch.Tensor, target: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Cut a copy into pairs of matching sub-views of at most about ``target`` bytes.

    The leading axes are split first, so each block is a run of whole rows where
    rows are small, and a run of one row's elements where a row alone is larger.
    """
    nbytes = dst.numel() * max(dst.element_size(), src.element_size())
    if nbytes <= target or dst.dim() == 0:
        yield dst, src
        return
    axis = next((i for i, n in enumerate(dst.shape) if n > 1), None)
    if axis is None:
        yield dst, src
        return
    size = dst.shape[axis]
    step = max(1, target // max(1, nbytes // size))
    for start in range(0, size, step):
        n = min(step, size - start)
        yield from blocks(dst.narrow(axis, start, n), src.narrow(axis, start, n), target)


_NUMPY_OF: dict[torch.dtype, Any] = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def _numpy_view(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor's memory that leaves the tensor untouched.

    ``Tensor.numpy()`` marks the storage as not resizable, which a parameter of a
    plain ``nn.GRU`` is not; this view is built from the address instead. The
    tensor must outlive the view.
    """
    dtype = _NUMPY_OF[t.dtype]
    if t.numel() == 0:
        return np.empty(tuple(t.shape), dtype)
    item = t.element_size()
    reach = sum((n - 1) * st for n, st in zip(t.shape, t.stride()))
    buf = (ctypes.c_char * ((reach + 1) * item)).from_address(t.data_ptr())
    base = np.frombuffer(memoryview(buf).cast("B"), dtype=dtype)
    return np.lib.stride_tricks.as_strided(base, tuple(t.shape), tuple(st * item for st in t.stride()))


def _block_task(dst: torch.Tensor, src: torch.Tensor) -> None:
    np.copyto(_numpy_view(dst), _numpy_view(src), casting="unsafe")


_pool: Any = None
_pool_lock = threading.Lock()


def _workers() -> Any:
    global _pool
    with _pool_lock:
        n = max(1, torch.get_num_threads())
        if _pool is None or _pool._max_workers != n:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="numpyrnn-copy")
        return _pool


def _copy_blocks(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """``dst.copy_(src)`` for every pair.

    Pairs numpy can copy are cut into blocks (see :func:`blocks`) and spread over
    ``torch.get_num_threads()`` worker threads when there are enough bytes; the rest
    go through torch.
    """
    numpy_pairs = [(d, s) for d, s in pairs if d.numel() and _blockwise(d, s)]
    for d, s in pairs:
        if d.numel() and not _blockwise(d, s):
            d.copy_(s)
    nbytes = sum(d.numel() * d.element_size() for d, _ in numpy_pairs)
    if nbytes < _THREADED_BYTES or torch.get_num_threads() == 1:
        for d, s in numpy_pairs:
            _block_task(d, s)
        return
    jobs = [b for d, s in numpy_pairs for b in blocks(d, s, _BLOCK_BYTES)]
    for _ in _workers().map(lambda b: _block_task(*b), jobs):
        pass


def _finite_flag(t: torch.Tensor) -> torch.Tensor:
    """A 0-d bool tensor on ``t``'s device: whether ``t`` is all finite (no host sync)."""
    if t.dtype in (torch.float32, torch.float64):
        return torch.isfinite(t.sum(dtype=t.dtype))
    lo, hi = torch.aminmax(t)
    return torch.isfinite(lo) & torch.isfinite(hi)


def _load_remote(copies: Sequence[_Copy], device: torch.device, *, check: bool = False) -> bool:
    """Import copies whose CPU source goes to ``device``: raw spans over, views there.

    With ``check``, every span is checked for NaN/Inf where it landed (at device
    speed, without waiting for it); returns ``False`` if one held any.
    """
    by_storage: dict[tuple[int, torch.dtype], list[_Copy]] = {}
    for c in copies:
        by_storage.setdefault(_storage_key(c.src), []).append(c)
    flags: list[torch.Tensor] = []
    stager = Stager(device)
    try:
        for group in by_storage.values():
            for lo, hi, members in span_groups([c.src for c in group]):
                first = group[members[0]].src
                span = stager.to(first.as_strided((hi - lo,), (1,), lo))
                if check:
                    flags.append(_finite_flag(span))
                for i in members:
                    c = group[i]
                    _write(c.dst, _rebase(c.src, span, lo), c.offset)
                del span
    finally:
        stager.close()
    return bool(torch.stack(flags).all()) if flags else True


def _check_range(tensors: Mapping[str, torch.Tensor], dtype: torch.dtype) -> None:
    """Refuse finite values that ``dtype`` cannot hold: ``copy_`` would turn them into Inf.

    Only leaves of a wider floating dtype than the parameters are read (e.g.
    float64 arrays into a float32 module); one pass, no large temporaries.

    Raises:
        LayoutError: naming the leaf, the first index out of range and the limit.
    """
    if not dtype.is_floating_point:
        return
    limit = torch.finfo(dtype).max
    for key, t in tensors.items():
        if not t.dtype.is_floating_point or not t.numel() or torch.finfo(t.dtype).max <= limit:
            continue
        lo, hi = torch.aminmax(t)
        if float(hi) <= limit and float(lo) >= -limit:
            continue
        over = (t.abs() > limit).reshape(-1).nonzero()
        if not over.numel():  # NaN made the extremes NaN: check_finite names it
            continue
        flat = int(over[0, 0])
        idx = tuple(int(i) for i in np.unravel_index(flat, tuple(t.shape)))
        name = str(dtype).replace("torch.", "")
        raise LayoutError(
            f"{key}: holds {float(t[idx])} at index {list(idx)}, beyond the largest {name} "
            f"({limit:.6g}); loading it would store Inf: rescale the weights or use a wider module dtype "
            f"(from_numpy(..., dtype=torch.float64), or module.double() before loading)"
        )


def build(cls: type[nn.RNNBase], spec: RNNSpec, *, batch_first: bool, dropout: float,
          device: Any, dtype: torch.dtype | None) -> nn.RNNBase:
    """A module of ``cls`` with uninitialised parameters on ``device``.

    Built on the ``meta`` device and materialised with uninitialised memory (see
    :func:`empty`): no random initialisation that would be overwritten anyway. On
    CUDA, torch puts the parameters into cuDNN's flat buffer as it materialises them.
    """
    dtype = dtype or torch.get_default_dtype()
    if not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch dtype, got {dtype}")
    device = torch.device(device) if device is not None else torch.empty(0).device
    kwargs = spec.module_kwargs()
    with warnings.catch_warnings():
        # torch warns about dropout with one layer; forward the user's choice as is
        warnings.simplefilter("default")
        module = cls(**kwargs, batch_first=batch_first, dropout=dropout, device="meta", dtype=dtype)
    # to_empty's empty_like(meta -> device) costs ~0.25 s on its first call (decompositions);
    # a plain empty with the same shape and dtype is what it does, without that cost.
    return module._apply(lambda t: empty(t.shape, t.dtype, device))


def export(
    module: nn.RNNBase,
    pieces: Sequence[Piece],
    shapes: Mapping[str, Sequence[Axis]],
    *,
    spec: RNNSpec | None = None,
) -> dict[str, np.ndarray]:
    """Run the pieces backwards: fresh numpy leaves in the module's dtype.

    Leaves no piece writes stay zero (e.g. a Flax bias of a bias-free module).
    Every leaf is written in one pass: fully covered leaves start as
    ``np.empty``, others as zeros. Parameters on another device are permuted
    there into one span of the leaf at a time, which then crosses the bus whole.

    Raises:
        TypeError: the module's dtype has no numpy equivalent (bfloat16).
    """
    spec = spec or RNNSpec.of(module)
    params = _params(module, spec)
    dtype = next(iter(params.values())).dtype
    if dtype == torch.bfloat16:
        raise TypeError("numpy has no bfloat16: convert the module first, e.g. module.float().to_numpy()")
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    arrays = {k: np.empty(tuple(a.size for a in axes), dtype=np_dtype) for k, axes in shapes.items()}
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    for t in tensors.values():
        if t.numel() * t.element_size() >= 2 * _HUGE_PAGE:
            _advise_huge_pages(t)
    copies, _ = plan(spec, pieces, params, tensors, direction="export")
    written: dict[int, int] = {}
    for c in copies:
        key = c.dst.untyped_storage().data_ptr()
        written[key] = written.get(key, 0) + c.dst.numel()
    for t in tensors.values():
        # pieces never overlap on export (each parameter block has one home), so a
        # leaf whose element count is reached is fully covered
        if t.numel() and written.get(t.untyped_storage().data_ptr(), 0) < t.numel():
            t.zero_()
    remote = [c for c in copies if c.dst.numel() and _crosses(c.dst, c.src)]
    local = [c for c in copies if not (c.dst.numel() and _crosses(c.dst, c.src))]
    with torch.no_grad():
        _copy_blocks([(c.dst, c.src if c.fold is None else c.src + c.fold) for c in local])
        for c in local:
            if c.offset:
                c.dst.add_(c.offset)
        if remote:
            _export_remote(remote)
    return arrays


def _export_remote(copies: Sequence[_Copy]) -> None:
    """Export copies from device parameters: permute into a device span, then one copy back."""
    by_storage: dict[tuple[int, torch.dtype], list[_Copy]] = {}
    for c in copies:
        by_storage.setdefault(_storage_key(c.dst), []).append(c)
    for group in by_storage.values():
        device = group[0].src.device
        for lo, hi, members in span_groups([c.dst for c in group]):
            first = group[members[0]].dst
            host = first.as_strided((hi - lo,), (1,), lo)
            span = torch.zeros(hi - lo, dtype=host.dtype, device=device)
            for i in members:
                c = group[i]
                _write(_rebase(c.dst, span, lo), c.src if c.fold is None else c.src + c.fold, c.offset)
            host.copy_(span)
            del span


# --------------------------------------------------------------------------------------
# the three entry points every layout goes through
# --------------------------------------------------------------------------------------

def import_layout(
    cls: type[nn.RNNBase],
    layout: Any,
    source: Any,
    *,
    mode: str,
    infer: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    batch_first: bool = False,
    dropout: float = 0.0,
    device: Any = None,
    dtype: torch.dtype | None = None,
    freeze: bool = False,
    strict_mode: bool = False,
) -> nn.RNNBase:
    """A new module of ``cls`` holding the weights of ``source`` in ``layout``.

    Validates everything, then builds the module without random initialisation
    (``meta``, then uninitialised memory) and writes each parameter once. ``mode``
    is what the layout assumes where the source records nothing (an RNN's
    activation in raw arrays); with ``strict_mode`` a source that records
    another is refused.
    """
    options = dict(options or {})
    spec, leaves = layout.infer(source, mode=mode, **dict(infer or {}), **options)
    if strict_mode and spec.mode != mode:
        raise LayoutError(
            f"source ({layout.name} layout): the source computes {spec.describe()}, but "
            f"nonlinearity={'relu' if mode == 'RNN_RELU' else 'tanh'!r} was asked for; drop nonlinearity= "
            f"to take the source's activation"
        )
    checked = check_leaves(leaves, layout.shapes(spec, **options), layout=layout.name,
                           hint=layout.hint(spec, **options), finite=False)
    pieces = layout.pieces(spec, **options)
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
    if not isinstance(freeze, bool):
        raise TypeError(f"freeze should be of type bool, got: {type(freeze).__name__}")
    module = build(cls, spec, batch_first=batch_first, dropout=dropout, device=device, dtype=dtype)
    load(module, pieces, checked, fresh=True)  # checks values as it copies
    if freeze:
        module.requires_grad_(False)
    return module


def load_layout(module: nn.RNNBase, layout: Any, source: Any, *, options: Mapping[str, Any] | None = None) -> nn.RNNBase:
    """Load ``source`` into an existing module in place; all-or-nothing."""
    options = dict(options or {})
    spec = RNNSpec.of(module)
    leaves = layout.leaves_for(source, spec, **options)
    checked = check_leaves(leaves, layout.shapes(spec, **options), layout=layout.name,
                           hint=layout.hint(spec, **options))
    return load(module, layout.pieces(spec, **options), checked)


def export_layout(module: nn.RNNBase, layout: Any, *, options: Mapping[str, Any] | None = None) -> Any:
    """The module's weights in ``layout``, as fresh arrays (never views of the parameters)."""
    options = dict(options or {})
    spec = RNNSpec.of(module)
    arrays = export(module, layout.pieces(spec, **options), layout.shapes(spec, **options))
    return layout.assemble(arrays, spec, **options)
