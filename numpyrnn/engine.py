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

import bisect
import contextlib
import contextvars
import ctypes
import functools
import math
import os
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
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
    ma = sys.modules.get("numpy.ma")  # a masked array exists only once numpy.ma is imported (0.1-0.2 s)
    if ma is not None and isinstance(value, ma.MaskedArray):
        masked = ma.getmaskarray(value)
        if masked.any():
            idx = [int(i) for i in np.unravel_index(int(np.argmax(masked)), masked.shape)]
            raise LayoutError(
                f"{name}: masked array with a masked entry at index {idx}; a masked entry has no weight value: "
                f"fill it explicitly, e.g. {name.split('[')[0].split('.')[0]}.filled(0.0)"
            )
        return ma.getdata(value)
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
        if arr.is_floating_point() and arr.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise TypeError(
                f"{name}: dtype {arr.dtype} is not one numpyrnn reads weights from (float16, bfloat16, "
                f"float32, float64): its values cannot be checked or rounded exactly; convert with .float() "
                f"(and apply its scale, if it has one) if intended"
            )
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


# Up to this many elements a numpy leaf is checked with one isfinite pass.
_TINY = 1 << 16


# Below this many elements the check runs single-threaded in numpy: waking torch's
# thread pool costs more than the pass itself, and far more on a busy machine.
_SMALL = 1 << 21

_np_add, _np_min, _np_max, _np_isfinite, _np_dot = (np.add.reduce, np.minimum.reduce, np.maximum.reduce,
                                                    np.isfinite, np.dot)


def _all_finite(t: torch.Tensor) -> bool:
    """Whether every element is finite: one read pass, no big temporaries.

    float32/float64 use a sum in their own dtype (NaN and Inf propagate; a finite sum
    proves every element finite), or below :data:`_SMALL` elements the sum of squares of
    :func:`_finite_probe`. Narrow dtypes would overflow a sum in their own dtype and an
    upcast sum materialises a copy, so they use the minimum and maximum, which propagate
    NaN and see an Inf. A sum that overflows from huge finite values only sends the caller
    to :func:`_locate_nonfinite`, which then finds nothing. Large tensors use torch's
    multithreaded reductions, small ones numpy's.
    """
    wide = t.dtype in (torch.float32, torch.float64)
    if t.numel() < _SMALL and t.device.type == "cpu" and t.dtype in (torch.float16, torch.float32, torch.float64):
        a = _numpy_view(t)
        with np.errstate(over="ignore", invalid="ignore"):
            if wide:
                return math.isfinite(_finite_probe(a))
            return bool(np.isfinite(a.min())) and bool(np.isfinite(a.max()))
    return _torch_all_finite(t)


def _torch_all_finite(t: torch.Tensor) -> bool:
    """:func:`_all_finite` by torch's reductions, read on the host: float32/float64 by their sum in
    their own dtype (no ``dtype=``, which takes a slower kernel on CPU), others by their extremes."""
    if t.dtype in (torch.float32, torch.float64):
        return math.isfinite(t.sum().item())
    lo, hi = torch.aminmax(t)
    return math.isfinite(lo.item()) and math.isfinite(hi.item())


def _numpy_all_finite(a: np.ndarray) -> bool:
    """:func:`_all_finite` for a numpy float array, read in place (any strides, any byte order)."""
    if a.size <= _TINY:  # the temporary is small; no error state to set (which costs more)
        return bool(np.isfinite(a).all())
    with np.errstate(over="ignore", invalid="ignore"):
        if a.dtype.itemsize >= 4:
            return math.isfinite(_finite_probe(a))
        return bool(np.isfinite(a.min())) and bool(np.isfinite(a.max()))


def _finite_probe(a: np.ndarray) -> float:
    """A number that is finite when every element of ``a`` (float32 or wider) is: NaN and Inf
    propagate into it. Huge finite values may overflow it too, which only sends the caller to
    the exact check (:func:`_locate_nonfinite`), and that then finds nothing.

    For a C-contiguous float32/float64 array in native byte order it is the dot product of the
    array with itself, which BLAS reads once at memory speed: about three times as fast as
    numpy's pairwise sum (``python benchmarks/small.py --paths load_numpy``). Squares are never
    negative, so an Inf cannot cancel; Inf*Inf is Inf and NaN stays NaN. Other arrays are summed
    in their own dtype.
    """
    if a.dtype.char in "fd" and a.dtype.isnative and a.flags.c_contiguous and a.size:
        flat = a.reshape(-1)
        return float(_np_dot(flat, flat))
    return float(_np_add(a, None))


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
    if isinstance(arr, np.ndarray) and arr.dtype.kind == "f" and arr.dtype.itemsize <= 8 and arr.size < _SMALL:
        if _numpy_all_finite(arr):  # small numpy leaves: no tensor, no view, one numpy pass
            return None
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


_WIDE_LONGDOUBLE = np.dtype(np.longdouble).itemsize > 8


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
    if _WIDE_LONGDOUBLE and arr.dtype == np.longdouble:
        arr = arr.astype(np.float64)
    if any(s < 0 for s in arr.strides):
        arr = _positive_strides(arr)
    if any(s % arr.itemsize for s in arr.strides):
        # a field of a structured array, or a byte-strided view: torch only views whole-element strides
        arr = np.ascontiguousarray(arr)
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
    copies, partial, _ = _plan(spec, pieces, params, leaves, direction=direction)
    return copies, partial


def _plan(
    spec: RNNSpec,
    pieces: Iterable[Piece],
    params: Mapping[str, torch.Tensor],
    leaves: Mapping[str, torch.Tensor],
    *,
    direction: str,
) -> tuple[list[_Copy], set[str], list[tuple[str, str, str | None]]]:
    """:func:`plan`, plus each copy's ``(param, leaf, fold param)`` names (for :class:`_Recipe`)."""
    origins: list[tuple[str, str, str | None]] = []
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
                    origins.append((piece.param, piece.source, piece.fold))
                continue
            copies.append(_pair(pview[tsl], lview[ksl], offsets.pop(),
                                fview[tsl] if fview is not None else None, direction))
            origins.append((piece.param, piece.source, piece.fold))
    partial = {name for name in params if len(covered.get(name, ())) < G}
    return copies, partial, origins


def _pair(pv: torch.Tensor, lv: torch.Tensor, offset: float, fv: torch.Tensor | None, direction: str) -> _Copy:
    if pv.shape != lv.shape:
        raise RuntimeError(f"internal error: layout view {tuple(lv.shape)} does not match parameter view {tuple(pv.shape)}")
    if direction == "import":
        return _Copy(dst=pv, src=lv, offset=offset)
    return _Copy(dst=lv, src=pv, offset=-offset, fold=fv)


# --------------------------------------------------------------------------------------
# cached plans: a repeated build or load does no planning in Python
# --------------------------------------------------------------------------------------

_Geometry = tuple[tuple[int, ...], tuple[int, ...], int]  # sizes, strides, offset from the base's


def _geometry(view: torch.Tensor, base: torch.Tensor) -> _Geometry:
    return tuple(view.shape), tuple(view.stride()), int(view.storage_offset() - base.storage_offset())


def _rebuild(base: torch.Tensor, geometry: _Geometry) -> torch.Tensor:
    sizes, strides, offset = geometry
    return base.as_strided(sizes, strides, base.storage_offset() + offset)


@dataclass(frozen=True)
class _Recipe:
    """A plan reduced to geometry: what :func:`plan` worked out, replayable on new tensors.

    Views are pure geometry (sizes, strides and an offset from their base tensor),
    so a plan made once for parameters and leaves of given shapes and strides holds
    for any others of the same shapes and strides: :meth:`copies` rebuilds the views
    with one ``as_strided`` each, without einops, gate runs or checks.
    """

    steps: tuple[tuple[str, _Geometry, str, _Geometry, float, str | None, _Geometry | None], ...]
    partial: frozenset[str]
    short: frozenset[str]  # leaves that not every element of is written (zeroed first on export)

    @classmethod
    def make(cls, spec: RNNSpec, pieces: Sequence[Piece], params: Mapping[str, torch.Tensor],
             leaves: Mapping[str, torch.Tensor], direction: str) -> tuple[_Recipe, list[_Copy]]:
        copies, partial, origins = _plan(spec, pieces, params, leaves, direction=direction)
        steps = []
        for c, (pname, lkey, fname) in zip(copies, origins):
            pv, lv = (c.dst, c.src) if direction == "import" else (c.src, c.dst)
            fold = _geometry(c.fold, params[fname]) if c.fold is not None and fname else None
            steps.append((pname, _geometry(pv, params[pname]), lkey, _geometry(lv, leaves[lkey]),
                          c.offset, fname, fold))
        return cls(tuple(steps), frozenset(partial), frozenset(_short(copies, origins, leaves, direction))), copies

    def copies(self, params: Mapping[str, torch.Tensor], leaves: Mapping[str, torch.Tensor],
               direction: str) -> list[_Copy]:
        out = []
        if direction == "import":
            for pname, (psz, pst, poff), lkey, (lsz, lst, loff), offset, _, _ in self.steps:
                p, t = params[pname], leaves[lkey]
                out.append(_Copy(p.as_strided(psz, pst, p.storage_offset() + poff),
                                 t.as_strided(lsz, lst, t.storage_offset() + loff), offset))
        else:
            for pname, pg, lkey, lg, offset, fname, fg in self.steps:
                fold = _rebuild(params[fname], fg) if fname and fg is not None else None
                out.append(_Copy(dst=_rebuild(leaves[lkey], lg), src=_rebuild(params[pname], pg),
                                 offset=offset, fold=fold))
        return out


def _short(copies: Sequence[_Copy], origins: Sequence[tuple[str, str, str | None]],
           leaves: Mapping[str, torch.Tensor], direction: str) -> set[str]:
    """Leaves that the copies of an export do not write in full.

    Pieces never overlap on export (each parameter block has one home), so a leaf
    whose element count is reached is fully covered.
    """
    if direction != "export":
        return set()
    written: dict[str, int] = {}
    for c, (_, lkey, _) in zip(copies, origins):
        written[lkey] = written.get(lkey, 0) + c.dst.numel()
    return {k for k, t in leaves.items() if t.numel() and written.get(k, 0) < t.numel()}


_CACHE_SIZE = 256
_recipes: dict[Hashable, _Recipe] = {}


def _cache_put(cache: dict, key: Hashable, value: Any) -> None:
    """Insert, dropping the oldest entries beyond :data:`_CACHE_SIZE` (a plain dict keeps insertion order)."""
    cache[key] = value
    while len(cache) > _CACHE_SIZE:
        try:
            del cache[next(iter(cache))]
        except (KeyError, StopIteration, RuntimeError):  # another thread got there first
            break


def _recipe_key(key: Hashable, direction: str, params: Mapping[str, torch.Tensor],
                leaves: Mapping[str, torch.Tensor]) -> Hashable:
    return (key, direction,
            tuple((n, tuple(p.shape), tuple(p.stride())) for n, p in params.items()),
            tuple((n, tuple(t.shape), tuple(t.stride())) for n, t in leaves.items()))


def _recipe_for(key: Hashable | None, spec: RNNSpec, pieces: Sequence[Piece], params: Mapping[str, torch.Tensor],
           leaves: Mapping[str, torch.Tensor], direction: str) -> _Recipe:
    """The :class:`_Recipe` that :func:`_planned` replays (cached under ``key`` as there; ``None``: made afresh)."""
    if key is None:
        return _Recipe.make(spec, pieces, params, leaves, direction)[0]
    full = _recipe_key(key, direction, params, leaves)
    hit = _recipes.get(full)
    if hit is None:
        hit, _ = _Recipe.make(spec, pieces, params, leaves, direction)
        _cache_put(_recipes, full, hit)
    return hit


def _planned(
    key: Hashable | None,
    spec: RNNSpec,
    pieces: Sequence[Piece],
    params: Mapping[str, torch.Tensor],
    leaves: Mapping[str, torch.Tensor],
    direction: str,
) -> tuple[list[_Copy], set[str] | frozenset[str], set[str] | frozenset[str]]:
    """:func:`plan`, cached under ``key`` (which names the pieces) and the tensors' geometry.

    Returns the copies, the parameters to zero first (import) and the leaves to
    zero first (export, see :func:`_short`).
    """
    if key is None:
        copies, partial, origins = _plan(spec, pieces, params, leaves, direction=direction)
        return copies, partial, _short(copies, origins, leaves, direction)
    full = _recipe_key(key, direction, params, leaves)
    hit = _recipes.get(full)
    if hit is not None:
        return hit.copies(params, leaves, direction), hit.partial, hit.short
    made, copies = _Recipe.make(spec, pieces, params, leaves, direction)
    _cache_put(_recipes, full, made)
    return copies, made.partial, made.short


def _options_key(options: Mapping[str, Any]) -> Hashable | None:
    """A hashable form of a layout's options (the type is part of it: ``1`` is not ``True``), or ``None``."""
    try:
        key = tuple(sorted((k, type(v), v) for k, v in options.items()))
        hash(key)
    except TypeError:
        return None
    return key


_declared: dict[Hashable, Any] = {}


def _declaration(layout: Any, spec: RNNSpec, options: Mapping[str, Any], what: str) -> tuple[Any, Hashable | None]:
    """``layout.shapes`` (with ``layout.hint``) or ``layout.pieces`` for ``spec``, computed once per
    (layout, spec, options); returns the value and the key that names it (``None``: not cached).

    Layouts declare these as pure functions of the spec and options. Whatever they
    raise is raised every time (nothing is cached then).
    """
    okey = _options_key(options)
    key = None if okey is None else (what, id(layout), type(layout), spec, okey)
    if key is not None:
        hit = _declared.get(key)
        if hit is not None and hit[0] is layout:
            return hit[1], key
    if what == "shapes":
        value: Any = (layout.shapes(spec, **options), layout.hint(spec, **options))
    else:
        value = layout.pieces(spec, **options)
    if key is not None:
        _cache_put(_declared, key, (layout, value))
    return value, key


def _both_key(layout: Any, spec: RNNSpec, options: Mapping[str, Any]) -> Hashable | None:
    okey = _options_key(options)
    return None if okey is None else ("both", id(layout), type(layout), spec, okey)


def _declared_both(key: Hashable | None, layout: Any) -> tuple | None:
    """``(shapes, hint, pieces, pieces key)`` from one lookup, once both were declared (see :func:`_both_put`)."""
    if key is None:
        return None
    hit = _declared.get(key)
    return hit[1] if hit is not None and hit[0] is layout else None


def _both_put(key: Hashable | None, layout: Any, value: tuple) -> None:
    if key is not None and value[3] is not None:
        _cache_put(_declared, key, (layout, value))


# --------------------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------------------

class _Target:
    """Where the values of one parameter go on import.

    ``tensor`` is what the plan writes: the parameter itself, or, for a parameter that a
    parametrization or an old-style ``weight_norm`` hook computes, a fresh stand-in of its
    shape. ``commit`` then stores the stand-in's values in the tensors the parameter is
    computed from, and returns a function that undoes that.
    """

    __slots__ = ("name", "tensor", "commit")

    def __init__(self, name: str, tensor: torch.Tensor, commit: Callable[[], Callable[[], None]] | None = None):
        self.name = name
        self.tensor = tensor
        self.commit = commit


def _params(module: nn.Module, spec: RNNSpec) -> dict[str, torch.Tensor]:
    """The value of every parameter, as ``getattr`` gives it (computed ones included), for reading."""
    out = {}
    for name, shape in spec.param_shapes().items():
        hook = _old_hook(module, name)
        if hook is not None and _is_weight_norm_hook(hook):
            value = hook.compute_weight(module)  # the attribute is only refreshed at each forward
        else:
            value = getattr(module, name)
        _refuse_distributed(name, value)
        _check_param_shape(name, value, shape, spec)
        out[name] = value
    return out


def _check_param_shape(name: str, value: Any, shape: tuple[int, ...], spec: RNNSpec) -> None:
    """Refuse a parameter whose shape is not the one the module's configuration gives it."""
    got = getattr(value, "shape", None)
    if got is not None and tuple(got) != shape:
        raise LayoutError(
            f"{name}: the module's parameter has shape {tuple(got)}, but {spec.describe()} has {shape}: "
            f"it was changed after the module was built (through .data, set_ or resize_, or by "
            f"assigning another tensor), so the layout cannot say where its values go; rebuild the "
            f"module or restore the parameter's shape"
        )


def _dtensor_class() -> Any:
    mod = sys.modules.get("torch.distributed.tensor")
    return getattr(mod, "DTensor", None)


def _refuse_distributed(name: str, t: Any) -> None:
    dtensor = _dtensor_class()
    if dtensor is not None and isinstance(t, dtensor):
        raise TypeError(
            f"{name} is a DTensor (the module is sharded by FSDP2's fully_shard, or distributed with "
            f"torch.distributed.tensor): numpyrnn reads and writes whole tensors; load the weights before "
            f"calling fully_shard, or load them into an unsharded copy and pass its state_dict() to the sharded module"
        )


def _old_hook(module: nn.Module, name: str) -> Any:
    """The old-style ``weight_norm``/``spectral_norm`` forward pre-hook that computes ``name``, if any."""
    for hook in getattr(module, "_forward_pre_hooks", {}).values():
        if getattr(hook, "name", None) == name and type(hook).__name__ in ("WeightNorm", "SpectralNorm"):
            return hook
    return None


def _is_weight_norm_hook(hook: Any) -> bool:
    from torch.nn.utils.weight_norm import WeightNorm

    return isinstance(hook, WeightNorm)


def _tolerance(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps) ** 0.5


def _parametrized_target(module: nn.Module, name: str) -> _Target:
    """Load through ``right_inverse`` into ``parametrizations.<name>.original``; refuse what cannot be inverted."""
    plist: Any = module.parametrizations[name]  # type: ignore[index]
    chain = " then ".join(type(p).__name__ for p in plist)
    for p in plist:
        if not hasattr(p, "right_inverse"):
            raise LayoutError(
                f"{name} is computed by the parametrization {type(p).__name__}, which has no right_inverse, so "
                f"the loaded values cannot be stored in parametrizations.{name}.original: load before registering "
                f"it, or remove it first with torch.nn.utils.parametrize.remove_parametrizations(module, {name!r})"
            )
    with torch.no_grad():
        current = getattr(module, name)
    _refuse_distributed(name, current)
    stand_in = empty(current.shape, current.dtype, current.device)

    def originals() -> dict[str, torch.Tensor]:
        found = dict(plist.named_parameters(recurse=False))
        found.update(plist.named_buffers(recurse=False))
        return {k: v for k, v in found.items() if k.startswith("original")}

    def commit() -> Callable[[], None]:
        saved = {k: v.detach().clone() for k, v in originals().items()}

        def undo() -> None:
            with torch.no_grad():
                for k, v in originals().items():
                    v.set_(saved[k])  # type: ignore[call-overload]

        try:
            with torch.no_grad():
                plist.right_inverse(stand_in)
                got = getattr(module, name)
        except Exception as exc:  # noqa: BLE001 - any refusal of the parametrization
            undo()
            raise LayoutError(
                f"{name}: the parametrization {chain} refused the loaded values in right_inverse "
                f"({type(exc).__name__}: {exc}); remove it first with "
                f"torch.nn.utils.parametrize.remove_parametrizations(module, {name!r})"
            ) from None
        tol = _tolerance(stand_in.dtype)
        scale = float(stand_in.abs().max()) if stand_in.numel() else 0.0
        if got.shape != stand_in.shape or not torch.allclose(got, stand_in, rtol=tol, atol=tol * max(scale, 1.0)):
            undo()
            raise LayoutError(
                f"{name}: the parametrization {chain} is not invertible at the loaded values (computing it from "
                f"what its right_inverse stored does not give them back), so they cannot be loaded through it; "
                f"remove it first with torch.nn.utils.parametrize.remove_parametrizations(module, {name!r})"
            )
        return undo

    return _Target(name, stand_in, commit)


def _hook_target(module: nn.Module, name: str, hook: Any) -> _Target:
    """Old-style ``torch.nn.utils.weight_norm``: load into ``<name>_v`` and ``<name>_g``; refuse ``spectral_norm``."""
    if not _is_weight_norm_hook(hook):
        raise LayoutError(
            f"{name} is computed by torch.nn.utils.spectral_norm's hook ({type(hook).__name__}), which divides "
            f"the weight by an estimate of its largest singular value at every forward and cannot be inverted: "
            f"remove it with torch.nn.utils.remove_spectral_norm(module, {name!r}) before loading"
        )
    g, v = getattr(module, name + "_g"), getattr(module, name + "_v")
    _refuse_distributed(name, v)
    stand_in = empty(v.shape, v.dtype, v.device)

    def commit() -> Callable[[], None]:
        old_g, old_v = g.detach().clone(), v.detach().clone()
        with torch.no_grad():
            v.copy_(stand_in)
            g.copy_(torch.norm_except_dim(stand_in, 2, hook.dim))
            setattr(module, name, hook.compute_weight(module))

        def undo() -> None:
            with torch.no_grad():
                v.copy_(old_v)
                g.copy_(old_g)
                setattr(module, name, hook.compute_weight(module))

        return undo

    return _Target(name, stand_in, commit)


def _targets(module: nn.Module, spec: RNNSpec) -> dict[str, _Target]:
    """Where every parameter's values are written (see :class:`_Target`)."""
    from torch.nn.utils import parametrize

    out = {}
    for name, shape in spec.param_shapes().items():
        if parametrize.is_parametrized(module, name):
            out[name] = _parametrized_target(module, name)
        else:
            hook = _old_hook(module, name)
            if hook is not None:
                out[name] = _hook_target(module, name, hook)
            else:
                t = getattr(module, name)
                _refuse_distributed(name, t)
                out[name] = _Target(name, t)
        _check_param_shape(name, out[name].tensor, shape, spec)
    return out


def _check_writable(params: Mapping[str, torch.Tensor]) -> None:
    """Refuse, before the first write, what torch's ``copy_`` refuses to write into.

    Raises:
        RuntimeError: an inference tensor outside ``torch.inference_mode``, or a parameter
            whose elements share memory (an expanded tensor), as ``copy_`` raises.
    """
    for name, p in params.items():
        if p.is_inference() and not torch.is_inference_mode_enabled():
            raise RuntimeError(
                f"{name} is an inference tensor (made under torch.inference_mode()); torch's copy_ refuses to "
                f"write it outside inference mode, and so does numpyrnn: load inside "
                f"`with torch.inference_mode():`, or build the module outside it"
            )
        if any(st == 0 and n > 1 for n, st in zip(p.shape, p.stride())):
            raise RuntimeError(
                f"{name}: more than one element refers to a single memory location (stride "
                f"{tuple(p.stride())}, an expanded tensor); torch's copy_ refuses to write it, and so does "
                f"numpyrnn: give it memory of its own first, e.g. module.{name} = nn.Parameter(module.{name}.clone())"
            )


def _unaliased(tensors: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The leaves, with a copy of any leaf that shares memory with a parameter (read before it is written)."""
    storages = {p.untyped_storage().data_ptr() for p in params.values() if p.numel()}
    return {k: t.clone() if t.numel() and t.untyped_storage().data_ptr() in storages else t
            for k, t in tensors.items()}


_locks_guard = threading.Lock()
_module_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _lock_of(module: nn.Module) -> Any:
    """The lock that serialises loads into and exports from ``module``."""
    lock = _module_locks.get(module)
    if lock is not None:
        return lock
    with _locks_guard:
        lock = _module_locks.get(module)
        if lock is None:
            lock = _module_locks[module] = threading.RLock()
        return lock


_forked = False
_torch_threads_guard = threading.RLock()


def _reset_after_fork() -> None:
    """In a forked child, locks another thread of the parent held stay held: start afresh."""
    global _locks_guard, _module_locks, _warn_lock, _forked, _torch_threads_guard, _bound, _cpu_watch
    global _cpu_watch_guard, _spare_seen
    if _cpu_watch:  # its /proc/self files are the parent's
        _cpu_watch.close()
    _cpu_watch = None
    _spare_seen = (-math.inf, 0, 0)  # the parent's reading: other threads, maybe another time
    _cpu_watch_guard = threading.Lock()
    _torch_threads_guard = threading.RLock()
    _locks_guard = threading.Lock()
    _module_locks = weakref.WeakKeyDictionary()
    _bound = weakref.WeakKeyDictionary()
    _warn_lock = threading.Lock()
    _forked = True


_NOTHING = contextlib.nullcontext()


def _fork_safe() -> contextlib.AbstractContextManager:
    """In a forked child, keep torch's kernels on the calling thread while numpyrnn works.

    torch's OpenMP pool does not survive ``fork``: in a child, a multithreaded torch
    kernel waits forever for the parent's threads, even after ``torch.set_num_threads``
    (any torch call of the child's own does the same). numpyrnn's checks and copies
    then run single-threaded. Elsewhere this does nothing (and costs nothing).
    """
    return _single_threaded() if _forked else _NOTHING


@contextlib.contextmanager
def _single_threaded() -> Iterator[None]:
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    with _torch_threads_guard:
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def _guarded(module: nn.Module) -> contextlib.AbstractContextManager:
    """Hold ``module``'s lock (loads and exports of one module never interleave), fork-safely."""
    return _locked_single_threaded(module) if _forked else _lock_of(module)


@contextlib.contextmanager
def _locked_single_threaded(module: nn.Module) -> Iterator[None]:
    with _lock_of(module), _single_threaded():
        yield


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


_SPEC_ATTRS = ("mode", "input_size", "hidden_size", "num_layers", "bidirectional", "bias", "proj_size")
_specs: dict[Hashable, RNNSpec] = {}


def _spec_of(module: nn.Module) -> RNNSpec:
    """``RNNSpec.of(module)``, looked up by the module's attributes once it has been made for them."""
    if not isinstance(module, nn.RNNBase):
        return RNNSpec.of(module)  # raises, naming what it got
    d = module.__dict__
    try:
        attrs = tuple([d[k] for k in _SPEC_ATTRS])
        hit = _specs.get(attrs)
    except (KeyError, TypeError):  # an attribute that is a property, or unhashable
        return RNNSpec.of(module)
    if hit is None:
        hit = RNNSpec.of(module)
        _cache_put(_specs, attrs, hit)
    return hit


@functools.lru_cache(maxsize=256)
def _param_names(spec: RNNSpec) -> tuple[str, ...]:
    return tuple(spec.param_shapes())


def load(
    module: nn.RNNBase,
    pieces: Sequence[Piece],
    leaves: Mapping[str, np.ndarray | torch.Tensor],
    *,
    fresh: bool = False,
    key: Hashable | None = None,
    checked: bool = False,
    spec: RNNSpec | None = None,
) -> nn.RNNBase:
    """Write validated leaves into ``module``'s parameters, in place, atomically.

    The result is what ``param.copy_(source)`` under ``torch.no_grad()`` gives for
    every block: the same rounding, version counters bumped (autograd refuses a
    backward through values saved before the load), conjugate and negative bits
    honoured, and the same refusals (inference tensors outside inference mode,
    expanded parameters). Everything that can fail (views, shapes, values, those
    refusals) is worked out before the first write. Parameters not fully covered
    by pieces are zeroed first. The parameters keep their identity (optimizers and
    cuDNN's flat buffer survive). Loads into and exports from one module are
    serialised, so concurrent loads leave exactly one of their inputs.

    A parameter computed by a ``torch.nn.utils.parametrize`` parametrization is
    loaded through its ``right_inverse`` into ``parametrizations.<name>.original``
    (refused, naming it, where there is none or it does not give the values back);
    one computed by the old ``torch.nn.utils.weight_norm`` hook into its ``_v`` and
    ``_g`` tensors.

    On the CPU every piece is a strided copy from a view of the source into a
    view of the parameter (dtype casts happen inside it); plain dense CPU
    parameters and sources are cut into blocks of a few MB that worker threads
    copy. When the parameters live on another device, the source crosses the bus
    as it is laid out, one span of overlapping pieces at a time (see
    :func:`span_groups`), and is permuted and cast there by the same views; device
    memory beyond the module stays within one span.

    Args:
        module: the module to write into.
        pieces: the layout's declaration.
        leaves: leaves that passed :func:`check_leaves`.
        fresh: ``module`` is new and is discarded if this raises. When every
            copy crosses to another device, the values are then checked there
            after the transfer instead of in a pass over host memory first. Any
            bad value raises exactly what :func:`check_finite` raises. A fresh
            module on the ``meta`` device is only checked: it holds no values.
        key: a hashable that names ``pieces`` (as :func:`import_layout` makes one);
            with it, the plan is made once per key and tensor geometry and replayed.
        checked: the leaves already passed :func:`check_finite` (as
            :func:`load_layout` does through :func:`check_leaves`): not read twice.
        spec: the torch-named parameters to write, for a module that is not an
            ``nn.RNNBase`` but has them (:mod:`numpyrnn.variants`); ``None`` reads
            them from ``module``.

    Raises:
        LayoutError: a leaf holds NaN or Inf, or a value the parameters' dtype
            would round to Inf; a parametrization that cannot take the values.
        TypeError: the module is on the ``meta`` device, or holds DTensors.
        RuntimeError: what ``copy_`` refuses (see above).
    """
    with _guarded(module):
        return _load(module, pieces, leaves, fresh=fresh, key=key, checked=checked, spec=spec)


def _load(module: nn.RNNBase, pieces: Sequence[Piece], leaves: Mapping[str, np.ndarray | torch.Tensor], *,
          fresh: bool, key: Hashable | None, checked: bool, spec: RNNSpec | None = None) -> nn.RNNBase:
    spec = spec or RNNSpec.of(module)
    targets = _targets(module, spec)
    params = {k: t.tensor for k, t in targets.items()}
    first = next(iter(params.values()))
    device = first.device
    tensors = {k: _as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in leaves.items()}
    if device.type == "meta":
        if not fresh:
            raise TypeError(
                "the module is on the meta device, which holds no values, so nothing can be loaded into it: "
                "materialise it first, e.g. module.to_empty(device='cpu'), then load"
            )
        _check_range(tensors, first.dtype)
        check_finite(tensors)
        return module
    _check_writable(params)
    tensors = _unaliased(tensors, params)
    copies, partial, _ = _planned(key, spec, pieces, params, tensors, "import")
    stand_ins = {t.tensor.untyped_storage().data_ptr() for t in targets.values() if t.commit is not None}
    staged = [c for c in copies if c.dst.untyped_storage().data_ptr() in stand_ins]
    direct = [c for c in copies if c.dst.untyped_storage().data_ptr() not in stand_ins]
    remote = [c for c in direct if c.src.numel() and _crosses(c.src, c.dst)]
    # On the CPU a separate multithreaded pass over the source (torch's vectorised sum)
    # costs less than checking each block in numpy while it is in cache. Across the bus
    # the check runs on the device, on the bytes that arrived.
    fused = fresh and not staged and bool(remote) and len(remote) == len(copies) and _covers(
        tensors, [c.src for c in copies])
    # A large fresh CPU build from numpyrnn's own file mappings reads the file once: the copy
    # sweeps it in address order and gives its pages back behind it, and the new parameters
    # are checked instead of the source (see :func:`_swept`).
    swept = not fused and _swept(fresh, staged, remote, copies, tensors)
    if not swept:
        _check_range(tensors, first.dtype)
    if not fused and not checked and not swept:
        check_finite(tensors)
    undo: list[Callable[[], None]] = []
    with torch.no_grad():
        if staged:  # stand-ins of computed parameters first: their commits may still refuse
            for name in partial:
                if targets[name].commit is not None:
                    params[name].zero_()
            _write_all(staged, device)
            try:
                for t in targets.values():
                    if t.commit is not None:
                        undo.append(t.commit())
            except BaseException:
                for u in reversed(undo):
                    u()
                raise
        for name in partial:
            if targets[name].commit is None:
                params[name].zero_()
        ok = _write_all(direct, device, check=fused, sweep=swept)
    if swept:
        # every source element was copied (see _swept): a NaN/Inf in the source, or a value
        # that overflowed the cast, is one in the new parameters. Only then is the source read
        # again, to raise exactly what checking it first would have raised.
        if not all(_all_finite(p) for p in params.values() if p.numel()):
            _check_range(tensors, first.dtype)
            check_finite(tensors)
    elif not ok:
        check_finite(tensors)  # raises, naming the first bad value in leaf order
        # else only huge finite values overflowed a block's sum: nothing to refuse
    if not fresh and device.type != "cpu" and not _flat(module):
        # A fresh module was flattened when build() materialised it, and a module already
        # in cuDNN's one buffer was written through views of it: flattening again would
        # allocate a new buffer. Anything else (weights replaced by hand) is re-flattened.
        module.flatten_parameters()
    return module


def _swept(fresh: bool, staged: Sequence[_Copy], remote: Sequence[_Copy], copies: Sequence[_Copy],
           tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether an import sweeps its sources (see :func:`_copy_blocks`) and checks the new parameters
    instead of the source: a fresh module (no one sees it before the checks pass), plain copies on
    the CPU that read every source element, at least :data:`_SINGLE_THREAD_BYTES` of them, some
    from numpyrnn's own file mappings (:mod:`numpyrnn.pages`)."""
    if not fresh or staged or remote or not copies:
        return False
    if any(c.offset or c.dst.device.type != "cpu" or not _blockwise(c.dst, c.src) for c in copies):
        return False
    if sum(c.dst.numel() * c.dst.element_size() for c in copies) < _SINGLE_THREAD_BYTES:
        return False
    from . import pages

    if not any(c.src.numel() and pages.mapped(c.src.data_ptr()) is not None for c in copies):
        return False
    return _covers(tensors, [c.src for c in copies])


def _write_all(copies: Sequence[_Copy], device: torch.device, *, check: bool = False, sweep: bool = False) -> bool:
    """Carry out import copies: local ones in blocks, those that cross the bus in spans."""
    local = [c for c in copies if not (c.src.numel() and _crosses(c.src, c.dst))]
    remote = [c for c in copies if c.src.numel() and _crosses(c.src, c.dst)]
    pairs = [(c.dst, c.src) for c in local]
    if sweep:
        _copy_blocks(pairs, sweep=True)
    elif not _copy_small(pairs):
        _copy_blocks(pairs)
    for c in local:
        if c.offset:
            c.dst.add_(c.offset)
    if remote:
        return _load_remote(remote, device, check=check)
    return True


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


def _non_overlapping(t: torch.Tensor) -> bool:
    """Whether no two elements of ``t`` share memory (a sufficient test: strides nest)."""
    reach = 1
    for st, n in sorted((st, n) for n, st in zip(t.shape, t.stride()) if n > 1):
        if st < reach:
            return False
        reach = st * n
    return True


_PLAIN = (torch.Tensor, nn.Parameter)


def _blockwise(dst: torch.Tensor, src: torch.Tensor) -> bool:
    """Whether numpy's copy of raw memory gives exactly what ``dst.copy_(src)`` gives.

    That holds for plain CPU tensors of numpy's dtypes without conjugate or negative
    bits, a destination whose elements have memory of their own and that is no
    inference tensor, and every cast but float64 -> float16 (torch rounds that through
    float32, numpy once). Everything else goes through ``copy_`` itself.
    """
    return (type(dst) in _PLAIN and type(src) in _PLAIN
            and dst.device.type == "cpu" and src.device.type == "cpu"
            and dst.dtype in _NUMPY_DTYPES and src.dtype in _NUMPY_DTYPES
            and not (src.dtype == torch.float64 and dst.dtype == torch.float16)
            and not (dst.is_neg() or src.is_neg() or dst.is_conj() or src.is_conj())
            and not dst.is_inference() and _non_overlapping(dst))


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


def _parallel(task: Callable[..., None], jobs: Sequence[tuple], threads: int) -> None:
    """``task(*job)`` for every job, on up to ``threads`` threads, the calling one among them.

    The threads live for this call only, so a forked child never inherits a pool whose
    threads are gone. Where no thread can be started (during interpreter shutdown, e.g.
    in an ``atexit`` hook) the calling thread does all the work.
    """
    todo = iter(jobs)
    guard = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while not errors:
            with guard:
                job = next(todo, None)
            if job is None:
                return
            try:
                task(*job)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(exc)

    started = []
    for _ in range(max(0, min(threads, len(jobs)) - 1)):
        t = threading.Thread(target=work, name="numpyrnn-copy", daemon=True)
        try:
            t.start()
        except RuntimeError:  # interpreter shutdown, or no more threads: the caller does the rest
            break
        started.append(t)
    work()
    for t in started:
        t.join()
    if errors:
        raise errors[0]


_increment_version = getattr(torch.autograd.graph, "increment_version", None)


def _bump(views: Sequence[torch.Tensor]) -> None:
    """Bump the version counters that the raw copies into ``views`` bypassed (views share their base's)."""
    if not views:
        return
    if _increment_version is not None:
        _increment_version(list(views))
        return
    for v in views:  # an in-place op on no element bumps the counter too
        v.narrow(0, 0, 0).zero_()


def _copy_blocks(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], *, sweep: bool = False) -> None:
    """``dst.copy_(src)`` for every pair, with exactly ``copy_``'s result (run under ``no_grad``).

    Pairs for which numpy's copy is provably the same (see :func:`_blockwise`) are cut
    into blocks (see :func:`blocks`) and spread over ``torch.get_num_threads()`` threads
    when there are enough bytes, and their version counters are bumped as ``copy_``
    would; the rest go through ``copy_``. With ``sweep``, the blocks are copied in the
    order of their sources' addresses and the pages of numpyrnn's file mappings that no
    block still needs are given back as the copy goes (see :mod:`numpyrnn.pages`).
    """
    numpy_pairs = [(d, s) for d, s in pairs if d.numel() and _blockwise(d, s)]
    for d, s in pairs:
        if d.numel() and not _blockwise(d, s):
            d.copy_(s)
    nbytes = sum(d.numel() * d.element_size() for d, _ in numpy_pairs)
    threads = max(1, torch.get_num_threads())
    if sweep:
        _sweep([b for d, s in numpy_pairs for b in blocks(d, s, _BLOCK_BYTES)],
               1 if nbytes < _THREADED_BYTES else threads)
    elif nbytes < _THREADED_BYTES or threads == 1:
        for d, s in numpy_pairs:
            _block_task(d, s)
    else:
        _parallel(_block_task, [b for d, s in numpy_pairs for b in blocks(d, s, _BLOCK_BYTES)], threads)
    _bump([d for d, _ in numpy_pairs])


# A sweep gives pages back once this many bytes of a mapping lie behind every unfinished block.
_RELEASE_BYTES = 16 << 20


def _sweep(jobs: list[tuple[torch.Tensor, torch.Tensor]], threads: int) -> None:
    """Copy ``jobs`` in the order of their sources' lowest addresses, giving back behind them the
    pages of registered file mappings: no unfinished block reads below the lowest address of
    the first unfinished one, so everything under it is done with."""
    from . import pages

    jobs.sort(key=lambda j: j[1].data_ptr())
    starts = [s.data_ptr() for _, s in jobs]
    maps = [pages.mapped(p) for p in starts]
    done = [False] * len(jobs)
    freed: dict[int, int] = {}  # per mapping (by its start): the address given back up to
    first = [0]  # the first unfinished job
    guard = threading.Lock()

    distinct = list({id(m[0]): m for m in maps if m is not None}.values())

    def give_back(upto: int, final: bool) -> None:
        for m, lo, hi in distinct:
            done_to = freed.get(lo, lo)
            end = min(hi, upto)
            if end - done_to >= _RELEASE_BYTES or (final and end > done_to):
                pages.release(m, lo, done_to, end)
                freed[lo] = end

    def task(i: int) -> None:
        with np.errstate(over="ignore", invalid="ignore"):  # a cast's overflow: refused after the sweep
            _block_task(*jobs[i])
        with guard:
            done[i] = True
            k = first[0]
            while k < len(jobs) and done[k]:
                k += 1
            first[0] = k
            give_back(starts[k] if k < len(jobs) else 1 << 64, k == len(jobs))

    if threads > 1:
        _parallel(task, [(i,) for i in range(len(jobs))], threads)
    else:
        for i in range(len(jobs)):
            task(i)


# Below this many bytes in all, :func:`_copy_small` copies everything on the calling thread.
_SINGLE_THREAD_BYTES = 32 << 20
# Copies of at most this many elements go through torch's copy_: that is torch's
# intra-op grain, below which copy_ never wakes a worker, and there copy_ costs
# less than making numpy views of both sides. Larger ones are copied by numpy.
_SMALL_COPY = 32768


class _Memory:
    """A CPU tensor's memory seen through numpy's array interface; keeps the tensor alive.

    Unlike ``Tensor.numpy()`` it leaves the storage resizable, and it costs a few
    microseconds (no ctypes types).
    """

    __slots__ = ("__array_interface__", "tensor")

    def __init__(self, t: torch.Tensor):
        self.tensor = t
        item = t.element_size()
        self.__array_interface__ = {
            "data": (t.data_ptr(), False), "shape": tuple(t.shape), "version": 3,
            "strides": tuple(st * item for st in t.stride()), "typestr": np.dtype(_NUMPY_OF[t.dtype]).str,
        }


def _copy_small(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """``dst.copy_(src)`` for every pair on this thread when there are few bytes in all.

    Returns ``False``, having copied nothing, from :data:`_SINGLE_THREAD_BYTES` on:
    the caller then uses :func:`_copy_blocks`. Small pairs go through torch, larger
    ones of numpy dtypes through ``np.copyto`` (same casts); neither wakes a thread.
    """
    total = 0
    for d, s in pairs:
        total += d.numel() * max(d.element_size(), s.element_size())
    if total >= _SINGLE_THREAD_BYTES:
        return False
    raw = []
    for d, s in pairs:
        n = d.numel()
        if n > _SMALL_COPY and _blockwise(d, s):
            np.copyto(np.asarray(_Memory(d)), np.asarray(_Memory(s)), casting="unsafe")
            raw.append(d)
        elif n:
            d.copy_(s)
    _bump(raw)  # copy_ bumps its own; the raw copies bypassed the counters
    return True


def _finite_flag(t: torch.Tensor) -> torch.Tensor:
    """A 0-d bool tensor on ``t``'s device: whether ``t`` is all finite (no host sync)."""
    if t.dtype in (torch.float32, torch.float64):  # summed in their own dtype
        return torch.isfinite(t.sum())
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


_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}


@functools.lru_cache(maxsize=64)
def _inf_threshold(src: torch.dtype, dst: torch.dtype) -> float | None:
    """The smallest positive ``src`` value that torch's cast to ``dst`` turns into Inf; ``None`` if none does.

    Found by bisection over ``src``'s bit patterns (positive floats order like their
    bits), casting with torch itself: round-to-nearest, and whatever intermediate
    rounding torch does (float64 -> float16 goes through float32).
    """
    if torch.finfo(src).max <= torch.finfo(dst).max:
        return None
    bits = _BITS[torch.empty(0, dtype=src).element_size()]

    def value(b: int) -> torch.Tensor:
        return torch.tensor([b], dtype=bits).view(src)

    def overflows(b: int) -> bool:
        return bool(torch.isinf(value(b).to(dst))[0])

    hi = int(torch.tensor([torch.finfo(src).max], dtype=src).view(bits)[0])
    if not overflows(hi):
        return None
    lo = 0  # 0.0: finite
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if overflows(mid):
            hi = mid
        else:
            lo = mid
    return float(value(hi)[0])


def _first_where(t: torch.Tensor, mask: Callable[[torch.Tensor], torch.Tensor],
                 anywhere: Callable[[torch.Tensor], bool]) -> tuple[int, ...] | None:
    """Index of the first element, in row-major order, where ``mask`` is true, scanning in bounded blocks.

    ``anywhere(block)`` is a cheap test (a reduction) that skips blocks with none; the
    boolean masks are at most :data:`_LOCATE_BLOCK` elements whatever the size of ``t``.
    """
    if t.numel() <= _LOCATE_BLOCK:
        bad = mask(t).reshape(-1).view(torch.uint8)
        first = int(bad.argmax())  # argmax gives the first of equal maxima
        if not bad[first]:
            return None
        return tuple(int(i) for i in np.unravel_index(first, tuple(t.shape)))
    if t.dim() == 1:
        for start in range(0, t.shape[0], _LOCATE_BLOCK):
            block = t[start : start + _LOCATE_BLOCK]
            if anywhere(block):
                found = _first_where(block, mask, anywhere)
                if found is not None:
                    return (start + found[0],)
        return None
    for i in range(t.shape[0]):
        sub = t[i]
        if sub.numel() and anywhere(sub):
            found = _first_where(sub, mask, anywhere)
            if found is not None:
                return (i,) + found
    return None


def _check_range(tensors: Mapping[str, torch.Tensor], dtype: torch.dtype) -> None:
    """Refuse exactly the finite values that ``copy_`` into ``dtype`` would turn into Inf.

    Only leaves of a floating dtype wider than ``dtype`` are read (e.g. float64 arrays
    into a float32 module). A value above ``dtype``'s largest that rounds down to it
    (65519 into float16 gives 65504) is accepted. One reduction pass per leaf; only a
    leaf that holds such a value is scanned again, in bounded blocks. A leaf with NaN
    or Inf is left to :func:`check_finite`.

    Raises:
        LayoutError: naming the leaf, the first index out of range and the limit.
    """
    if not dtype.is_floating_point:
        return
    for key, t in tensors.items():
        if not t.dtype.is_floating_point or not t.numel():
            continue
        cut = _inf_threshold(t.dtype, dtype)
        if cut is None:
            continue
        lo, hi = (float(v) for v in torch.aminmax(t))
        if not (np.isfinite(lo) and np.isfinite(hi)) or (hi < cut and lo > -cut):
            continue

        def mask(b: torch.Tensor, cut: float = cut) -> torch.Tensor:
            return (b >= cut).logical_or_(b <= -cut)

        def anywhere(b: torch.Tensor, cut: float = cut) -> bool:
            blo, bhi = torch.aminmax(b)
            return float(bhi) >= cut or float(blo) <= -cut

        idx = _first_where(t, mask, anywhere)
        if idx is None:  # pragma: no cover - the extremes said there is one
            continue
        name = str(dtype).replace("torch.", "")
        raise LayoutError(
            f"{key}: holds {float(t[idx])} at index {list(idx)}, beyond the largest {name} "
            f"({torch.finfo(dtype).max:.6g}): it rounds to Inf in {name}; rescale the weights or use a wider "
            f"module dtype (from_numpy(..., dtype=torch.float64), or module.double() before loading)"
        )


#: The dtypes a module can be built in (those numpyrnn can check and round exactly).
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def torch_dtype(dtype: Any) -> torch.dtype | None:
    """``dtype`` as a ``torch.dtype``: a ``torch.dtype`` itself, or its name (``"float32"``, ``"torch.half"``).

    Raises:
        TypeError: anything else, or a name torch does not know.
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        name = dtype[len("torch."):] if dtype.startswith("torch.") else dtype
        found = getattr(torch, name, None)
        if isinstance(found, torch.dtype):
            return found
        raise TypeError(f"dtype={dtype!r} names no torch dtype; expected e.g. torch.float32 or 'float32'")
    raise TypeError(f"dtype must be a torch.dtype (e.g. torch.float32) or its name, got {type(dtype).__name__} {dtype!r}")


def build(cls: type[nn.RNNBase], spec: RNNSpec, *, batch_first: bool, dropout: float,
          device: Any, dtype: Any) -> nn.RNNBase:
    """A module of ``cls`` with uninitialised parameters on ``device``.

    Built on the ``meta`` device and materialised with uninitialised memory (see
    :func:`empty`): no random initialisation that would be overwritten anyway. On
    CUDA, torch puts the parameters into cuDNN's flat buffer as it materialises them.
    With ``device="meta"`` the module stays there: the right shapes, no values.
    """
    dtype = torch_dtype(dtype) or torch.get_default_dtype()
    if dtype not in DTYPES:
        raise TypeError(f"dtype must be a floating torch dtype numpyrnn builds in "
                        f"({', '.join(str(d).replace('torch.', '') for d in DTYPES)}), got {dtype}")
    device = torch.device(device) if device is not None else torch.empty(0).device
    if device.type == "meta":
        return _on_meta(cls, spec, batch_first=batch_first, dropout=dropout, dtype=dtype)
    if cls.__init__ in _PLAIN_INITS and not (dropout and spec.num_layers == 1):
        key = (cls, spec, batch_first, type(dropout), dropout, dtype)
        proto = _prototypes.get(key)
        if proto is None:
            module = _on_meta(cls, spec, batch_first=batch_first, dropout=dropout, dtype=dtype)
            proto = (module, [(n, tuple(p.shape), p.dtype, p.requires_grad)
                              for n, p in module._parameters.items() if p is not None])
            if not module._modules and not module._buffers:
                _cache_put(_prototypes, key, proto)
        return _clone(*proto, device)
    module = _on_meta(cls, spec, batch_first=batch_first, dropout=dropout, dtype=dtype)
    # to_empty's empty_like(meta -> device) costs ~0.25 s on its first call (decompositions);
    # a plain empty with the same shape and dtype is what it does, without that cost.
    # Module._apply is private: where a torch lacks it, to_empty does the same.
    apply = getattr(module, "_apply", None)
    if apply is None:  # pragma: no cover - every torch numpyrnn supports has it
        return module.to_empty(device=device)
    return apply(lambda t: empty(t.shape, t.dtype, device))


#: Constructors that only set what ``nn.RNNBase`` sets: their modules can be cloned (see :func:`_clone`).
_PLAIN_INITS = (nn.GRU.__init__, nn.LSTM.__init__, nn.RNN.__init__)
_prototypes: dict[Hashable, tuple[nn.RNNBase, list[tuple[str, tuple[int, ...], torch.dtype, bool]]]] = {}


def _on_meta(cls: type[nn.RNNBase], spec: RNNSpec, *, batch_first: bool, dropout: float,
             dtype: torch.dtype) -> nn.RNNBase:
    # torch's own warnings (e.g. dropout with one layer) reach the user's filters as they are
    return cls(**spec.module_kwargs(), batch_first=batch_first, dropout=dropout, device="meta", dtype=dtype)


def _clone(proto: nn.RNNBase, shapes: Sequence[tuple[str, tuple[int, ...], torch.dtype, bool]],
           device: torch.device) -> nn.RNNBase:
    """A new module like ``proto`` (built on ``meta`` by the class's own constructor) with
    fresh uninitialised parameters on ``device``, without running the constructor again.

    The constructor's cost is almost all Python (argument checks, a ``setattr`` per
    parameter, ``reset_parameters``); the module it leaves is plain data: its
    attributes, empty hook and buffer dicts, and the parameter lists. The clone gets
    its own copy of every container and new parameters of the same shapes, dtype
    and ``requires_grad``, then goes through ``flatten_parameters`` as the constructor's
    modules do (on CUDA that moves them into cuDNN's buffer).
    """
    module = proto.__class__.__new__(proto.__class__)
    state = {k: v.copy() if isinstance(v, (dict, list, set)) else v for k, v in proto.__dict__.items()}
    state["_all_weights"] = [list(names) for names in proto._all_weights]
    params: dict[str, nn.Parameter | None] = dict.fromkeys(proto._parameters)  # None stays None
    cpu = device.type == "cpu"
    for name, shape, dtype, grad in shapes:
        t = torch.empty(shape, dtype=dtype, device=device)
        if cpu and t.nbytes >= 2 * _HUGE_PAGE:
            _advise_huge_pages(t)
        params[name] = nn.Parameter(t, requires_grad=grad)
    state["_parameters"] = params
    flat = [params.get(n) for n in proto._flat_weights_names]
    state["_flat_weights"] = flat
    state["_flat_weight_refs"] = [weakref.ref(w) if w is not None else None for w in flat]
    module.__dict__.update(state)
    if device.type != "cpu":
        module.flatten_parameters()
    return module


def export(
    module: nn.RNNBase,
    pieces: Sequence[Piece],
    shapes: Mapping[str, Sequence[Axis]],
    *,
    key: Hashable | None = None,
    spec: RNNSpec | None = None,
) -> dict[str, np.ndarray]:
    """Run the pieces backwards: fresh numpy leaves in the module's dtype.

    Leaves no piece writes stay zero (e.g. a Flax bias of a bias-free module).
    Every leaf is written in one pass: fully covered leaves start as
    ``np.empty``, others as zeros. Parameters on another device are permuted
    there into one span of the leaf at a time, which then crosses the bus whole.

    With ``key`` (see :func:`load`) the plan is cached.

    Raises:
        TypeError: the module's dtype has no numpy equivalent (bfloat16).
    """
    with _guarded(module):
        return _export(module, pieces, shapes, key, spec)


def _export(module: nn.RNNBase, pieces: Sequence[Piece], shapes: Mapping[str, Sequence[Axis]],
            key: Hashable | None = None, spec: RNNSpec | None = None) -> dict[str, np.ndarray]:
    spec = spec or RNNSpec.of(module)
    fast = _fast_export(module, spec, pieces, key, shapes)
    if fast is not None:
        return fast
    with torch.no_grad():
        params = _params(module, spec)
    first = next(iter(params.values()))
    if first.device.type == "meta":
        raise TypeError("the module is on the meta device, which holds no values: there is nothing to export")
    dtype = first.dtype
    if dtype == torch.bfloat16:
        raise TypeError("numpy has no bfloat16: convert the module first, e.g. module.float().to_numpy()")
    np_dtype = _NUMPY_OF.get(dtype) or torch.empty(0, dtype=dtype).numpy().dtype
    arrays = {k: np.empty(tuple(a.size for a in axes), dtype=np_dtype) for k, axes in shapes.items()}
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    for t in tensors.values():
        if t.numel() * t.element_size() >= 2 * _HUGE_PAGE:
            _advise_huge_pages(t)
    with torch.no_grad():  # one context for everything: entering one costs as much as a small copy
        copies, _, short = _planned(key, spec, pieces, params, tensors, "export")
        for name in short:
            tensors[name].zero_()
        remote: list[_Copy] = []
        local: list[_Copy] = []
        for c in copies:
            (remote if c.dst.numel() and _crosses(c.dst, c.src) else local).append(c)
        pairs = [(c.dst, c.src if c.fold is None else c.src + c.fold) for c in local]
        if not _copy_small(pairs):
            _copy_blocks(pairs)
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
# small modules on the CPU: plans replayed through numpy views, without torch per copy
# --------------------------------------------------------------------------------------
#
# Below :data:`_FAST_BYTES`, a build, load or export of plain CPU parameters from or into
# C-contiguous numpy arrays is a handful of ``np.copyto`` between views whose geometry a
# cached plan holds: no ``as_strided``, no ``copy_`` dispatch, no list of ``_Copy``. Exports
# take this path at every size: from :data:`_TORCH_COPY_BYTES` on, the same cached steps
# run as torch ``copy_`` over torch's intra-op threads. Only
# the case that is known to succeed goes this way: anything else (another array type, a
# bad value, a parameter that a hook computes, ...) takes the general path, which raises
# exactly what it always raised. Every cast numpy does here is one that :func:`_blockwise`
# proves equal to ``copy_``'s, and the version counters are bumped as ``copy_`` would.

_FAST_BYTES = _SINGLE_THREAD_BYTES
_FAST_NP = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
            np.dtype(np.float64): torch.float64}
_FAST_TYPES = (np.ndarray, np.memmap)
_HOST = torch.empty(0)  # stands for the numpy side in :func:`_crosses`

# one step: param name, its view (sizes, byte strides, byte offset), leaf key, the leaf's view
_Step = tuple[str, tuple[int, ...], tuple[int, ...], int, str, tuple[int, ...], tuple[int, ...], int]


class _Raw:
    """Raw memory of a tensor seen through numpy's array interface; keeps the tensor alive."""

    __slots__ = ("__array_interface__", "tensor")

    def __init__(self, t: torch.Tensor, ptr: int, shape: tuple[int, ...], strides: tuple[int, ...], typestr: str):
        self.tensor = t
        self.__array_interface__ = {"data": (ptr, False), "shape": shape, "strides": strides,
                                    "typestr": typestr, "version": 3}


_TYPESTR = {torch.float16: np.dtype(np.float16).str, torch.float32: np.dtype(np.float32).str,
            torch.float64: np.dtype(np.float64).str}


def _fast_steps(recipe: _Recipe, pitem: int, litems: Mapping[str, int]) -> tuple[_Step, ...] | None:
    """A recipe's import or export steps in bytes; ``None`` where a step needs more than a copy."""
    steps = []
    for pname, (psz, pst, poff), lkey, (lsz, lst, loff), offset, fname, _ in recipe.steps:
        if offset or fname:
            return None
        if not all(psz) or psz != lsz:
            continue  # nothing to copy
        li = litems[lkey]
        steps.append((pname, psz, tuple(s * pitem for s in pst), poff * pitem,
                      lkey, lsz, tuple(s * li for s in lst), loff * li))
    return tuple(steps)


_fast_plans: dict[Hashable, Any] = {}


def _fast_plan(key: Hashable, spec: RNNSpec, pieces: Sequence[Piece], params: Mapping[str, torch.Tensor],
               pgeom: Hashable, sig: tuple, direction: str) -> Any:
    """The byte steps for ``pieces`` between parameters of geometry ``pgeom`` and leaves of signature
    ``sig``: planned once (through :class:`_Recipe`), then a dict lookup. ``False``: not a fast case."""
    full = (key, direction, pgeom, sig)
    hit = _fast_plans.get(full)
    if hit is not None:
        return hit
    tensors = {k: torch.from_numpy(np.empty(shape, dtype)) for k, shape, dtype in sig}
    recipe, _ = _Recipe.make(spec, pieces, params, tensors, direction)
    pitem = next(iter(params.values())).element_size()
    steps = _fast_steps(recipe, pitem, {k: dtype.itemsize for k, _, dtype in sig})
    value: Any = False
    if steps is not None and not (recipe.partial if direction == "import" else False):
        value = (steps, recipe.short)
    _cache_put(_fast_plans, full, value)
    return value


_wants: dict[int, tuple[Any, tuple[tuple[str, tuple[int, ...]], ...]]] = {}  # declared shapes as plain tuples


def _wants_of(shapes: Mapping[str, Sequence[Axis]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Declared shapes as plain tuples, worked out once per declaration."""
    wants = _wants.get(id(shapes))
    if wants is None or wants[0] is not shapes:
        wants = (shapes, tuple((k, tuple(ax.size for ax in axes)) for k, axes in shapes.items()))
        _cache_put(_wants, id(shapes), wants)
    return wants[1]


def _fast_leaves(leaves: Mapping[str, Any], shapes: Mapping[str, Sequence[Axis]], limit: int) -> tuple | None:
    """The leaves' signature if they are plain C-contiguous numpy arrays of the declared shapes and
    of float16/32/64, fewer than ``limit`` bytes in all; else ``None``."""
    if leaves.keys() != shapes.keys():
        return None
    sig = []
    total = 0
    for k, want in _wants_of(shapes):
        a = leaves[k]
        if type(a) not in _FAST_TYPES or a.shape != want or a.dtype not in _FAST_NP or not a.flags.c_contiguous:
            return None
        total += a.nbytes
        sig.append((k, want, a.dtype))
    if total >= limit:
        return None
    return tuple(sig)


_may_share = np.may_share_memory


def _fast_values_ok(leaves: Mapping[str, np.ndarray], dtype: torch.dtype) -> bool:
    """Whether every leaf is finite and casts to ``dtype`` without Inf (``False`` sends to the general
    path, which names the value; a probe that overflows only costs that detour)."""
    for a in leaves.values():
        src = _FAST_NP[a.dtype]
        if src is torch.float64 and dtype is torch.float16:
            return False  # torch rounds through float32, numpy once
        if not a.size:
            continue
        cut = _inf_threshold(src, dtype)
        if cut is None and a.size <= _TINY:  # no error state to set (which costs more than the pass)
            if not _np_isfinite(a).all():
                return False
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            if cut is not None:
                if not (-cut < float(_np_min(a, None)) and float(_np_max(a, None)) < cut):  # NaN compares false
                    return False
            elif a.itemsize >= 4:  # see _finite_probe: NaN and Inf propagate
                if not math.isfinite(_finite_probe(a)):
                    return False
            elif not (math.isfinite(_np_min(a, None)) and math.isfinite(_np_max(a, None))):
                return False
    return True


class _Bound:
    """A module's plain CPU parameters seen through numpy, kept per module while they stay the same."""

    __slots__ = ("cls", "spec", "names", "params", "nbytes", "state", "views", "dtype", "geom", "ranges", "span",
                 "plans", "__weakref__")

    def __init__(self, module: nn.Module, spec: RNNSpec, params: list[torch.Tensor], nbytes: int):
        self.cls = type(module)
        self.nbytes = nbytes  # of the parameters: loads take this path below _FAST_BYTES, exports at any size
        self.spec = spec
        self.names = _param_names(spec)
        self.params = params
        self.state = _bound_state(module, self.names)
        self.dtype = params[0].dtype
        typestr = _TYPESTR[self.dtype]
        item = params[0].element_size()
        self.views = {n: np.asarray(_Raw(p, p.data_ptr(), tuple(p.shape),
                                         tuple(s * item for s in p.stride()), typestr))
                      for n, p in zip(self.names, params)}
        self.geom = (self.dtype, tuple((n, tuple(p.shape), tuple(p.stride())) for n, p in zip(self.names, params)))
        ranges = sorted((p.data_ptr(), p.data_ptr() + _reach(p) * item) for p in params if p.numel())
        self.ranges = ([lo for lo, _ in ranges], [hi for _, hi in ranges])
        # every byte from the first parameter's to the last one's end, for numpy's bounds test (never read)
        self.span = (np.asarray(_Raw(params[0], ranges[0][0], (ranges[-1][1] - ranges[0][0],), (1,), "|u1"))
                     if ranges else None)
        # (key, direction, leaf signature) -> list of (param view, leaf key, sizes, strides, offset)
        self.plans: dict[Hashable, Any] = {}


def _reach(t: torch.Tensor) -> int:
    return 1 + sum((n - 1) * st for n, st in zip(t.shape, t.stride()))


_data_ptr, _size, _stride = torch.Tensor.data_ptr, torch.Tensor.size, torch.Tensor.stride


def _bound_state(module: nn.Module, names: Sequence[str]) -> tuple | None:
    """What must stay the same for a :class:`_Bound` to hold: each parameter's identity (the
    bound holds them, so no other object takes their ids), memory, sizes and strides. Read
    with ``map`` over torch's methods: no tuple per parameter."""
    ps: Any = module.__dict__.get("_parameters")
    try:
        params = tuple(map(ps.__getitem__, names))
        return (tuple(map(id, params)), tuple(map(_data_ptr, params)), tuple(map(_size, params)),
                tuple(map(_stride, params)))
    except (KeyError, AttributeError, TypeError):  # a parameter gone, or None
        return None


_bound: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _bound_for(module: nn.Module, spec: RNNSpec) -> _Bound | None:
    """The module's :class:`_Bound`, made afresh when its parameters changed; ``None`` where the small
    fast paths do not apply (a hook or parametrization, another device or dtype, large, ...)."""
    b = _bound.get(module)
    if (b is not None and (b.spec is spec or b.spec == spec) and type(module) is b.cls
            and not module._forward_pre_hooks and _bound_state(module, b.names) == b.state):
        return b
    b = _make_bound(module, spec)
    try:
        if b is None:
            _bound.pop(module, None)
        else:
            _bound[module] = b
    except TypeError:  # pragma: no cover - a module that cannot be weakly referenced
        return None
    return b


def _make_bound(module: nn.Module, spec: RNNSpec) -> _Bound | None:
    if module._forward_pre_hooks or "parametrizations" in module._modules:
        return None
    ps = module.__dict__.get("_parameters") or {}
    params = [ps.get(n) for n in _param_names(spec)]
    if not params:
        return None
    dtype = params[0].dtype if params[0] is not None else None
    total = 0
    for p, shape in zip(params, spec.param_shapes().values()):
        if (type(p) is not nn.Parameter or p.device.type != "cpu" or p.dtype is not dtype or dtype not in _TYPESTR
                or p.shape != shape or p.is_neg() or p.is_conj() or p.is_inference() or not _non_overlapping(p)):
            return None  # the general path takes it (and names a parameter reshaped after the build)
        total += p.numel() * p.element_size()
    # asked once: a bound module's parameters keep their memory (see _bound_state)
    if _crosses(_HOST, params[0]):  # type: ignore[arg-type]
        return None
    return _Bound(module, spec, params, total)  # type: ignore[arg-type]


# Up to this many bytes of leaves, a bound plan also keeps a staging copy of the leaves with its
# views in place (one per plan, shared by the modules that use it): a load first copies each leaf
# whole into it and an export copies it out whole, so that no view is made per call. Above it the
# extra pass costs more than the views it saves.
_STAGE_BYTES = 256 << 10
_stages: dict[Hashable, Any] = {}


class _Stage:
    """Leaf-shaped arrays and their views for one plan; ``lock`` is only ever tried, never waited on."""

    __slots__ = ("lock", "arrays", "views")

    def __init__(self, sig: tuple, steps: Sequence[_Step]):
        self.lock = threading.Lock()
        self.arrays = {k: np.zeros(shape, dtype) for k, shape, dtype in sig}
        self.views = [np.ndarray(lsz, self.arrays[lkey].dtype, self.arrays[lkey], loff, lst)
                      for _, _, _, _, lkey, lsz, lst, loff in steps]


def _stage_for(full: Hashable, sig: tuple, steps: Sequence[_Step]) -> _Stage | None:
    if sum(int(np.prod(shape)) * dtype.itemsize for _, shape, dtype in sig) > _STAGE_BYTES:
        return None
    stage = _stages.get(full)
    if stage is None:
        stage = _Stage(sig, steps)
        if len(_stages) >= 16:
            _stages.clear()  # modules keep the stages they hold; new plans get new ones
        _stages[full] = stage
    return stage


def _bound_plan(b: _Bound, key: Hashable, spec: RNNSpec, pieces: Sequence[Piece], sig: tuple,
                direction: str) -> Any:
    """A bound module's steps with its parameter views in place (``False``: not a fast case)."""
    pkey = (id(pieces), direction, sig)
    hit = b.plans.get(pkey)
    if hit is not None and hit[0] is pieces:
        return hit[1]
    plan_ = _fast_plan(key, spec, pieces, dict(zip(b.names, b.params)), b.geom, sig, direction)
    value: Any = False
    if plan_:
        steps, short = plan_
        views = []
        for pname, psz, pst, poff, lkey, lsz, lst, loff in steps:
            base = b.views[pname]
            views.append((np.ndarray(psz, base.dtype, base, poff, pst) if base.flags.c_contiguous
                          else _offset_view(base, psz, pst, poff), lkey, lsz, lst, loff))
        stage = _stage_for((key, direction, b.geom, sig), sig, steps)
        pairs = list(zip([v[0] for v in views], stage.views)) if stage is not None else None
        value = (views, short, stage, pairs, _torch_steps(views, sig) if stage is None else None)
    if len(b.plans) >= 16:
        b.plans.clear()
    b.plans[pkey] = (pieces, value)  # the pieces kept alive: their id names no others meanwhile
    return value


# From this many bytes of leaves, an export (and a load of leaves in the parameters' dtype, checked
# by torch's reductions) copies through torch's ``copy_`` rather than numpy's ``copyto``, so
# that torch's intra-op threads share each copy: the block layouts scatter every
# parameter over the rows of a leaf, which one thread writes at about half the speed of a plain
# copy once it no longer fits in the cache. Below, waking the threads costs more than they save.
# Only where the CPUs for those threads are idle (see :func:`_spare_cpus`); otherwise numpy's
# copies on the calling thread. Measured with ``benchmarks/small.py --paths to_numpy``.
_TORCH_COPY_BYTES = 3 << 20
# Loads of leaves in the parameters' dtype go through those torch steps up to this many bytes
# (of parameters, and of leaves), not only below :data:`_FAST_BYTES`: one torch reduction per
# leaf, then ``torch._foreach_copy_`` over torch's threads, costs less than the general path's
# checks and copies by numpy threads (``benchmarks/small.py --paths load_numpy``, hidden 512-1024).
_TORCH_LOAD_BYTES = 1 << 30


class _CpuWatch:
    """How many CPUs other processes leave free right now, from Linux's ``/proc`` (see :func:`_spare_cpus`).

    The running-task count of ``/proc/loadavg`` is an instant figure, but it counts this
    process's own running threads too: the caller, and torch's workers while they spin after a
    kernel. Where that matters, the others are read from ``/proc/self/task`` and taken off. The
    files stay open between calls; the list of threads is read again when it may be stale.
    """

    def __init__(self) -> None:
        self.loadavg = os.open("/proc/loadavg", os.O_RDONLY)
        self.cpus = len(os.sched_getaffinity(0))
        self.tasks: list[int] = []

    def close(self) -> None:
        for fd in (self.loadavg, *self.tasks):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.tasks = []

    def _refresh(self) -> None:
        for fd in self.tasks:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.tasks = []
        for tid in os.listdir("/proc/self/task"):
            if int(tid) == threading.get_native_id():
                continue  # the caller: running, and counted as such
            try:
                self.tasks.append(os.open(f"/proc/self/task/{tid}/stat", os.O_RDONLY))
            except OSError:  # the thread ended meanwhile
                continue

    def _running(self) -> int:
        return int(os.pread(self.loadavg, 128, 0).split()[3].split(b"/")[0]) - 1  # less the caller

    def _own_running(self) -> int | None:
        own = 0
        for fd in self.tasks:
            try:
                own += os.pread(fd, 512, 0).rsplit(b")", 1)[1].split()[0] == b"R"
            except OSError:  # a thread that ended
                return None
        return own

    def free(self, wanted: int) -> int:
        free = self.cpus - self._running()
        if free >= wanted:
            return free
        for again in (False, True):  # the second time with the list of threads read afresh
            if again or not self.tasks:
                self._refresh()
            own = self._own_running()
            if own is None:
                continue
            # read after the threads: a worker that stops spinning in between is never counted twice
            free = self.cpus - max(0, self._running() - own)
            if free >= wanted:
                return free
        return free


_cpu_watch: Any = None
_cpu_watch_guard = threading.Lock()  # one reader at a time: a refresh closes the files another may read


# A reading of the spare CPUs is used again for this many seconds. Loads and exports ask before
# each torch copy, and a reading costs 30-70 microseconds right after torch's kernels (their
# workers still spin, so the threads of this process are read too): more than the rest of a
# small load's bookkeeping. A machine that turns busy within this time costs at most the calls
# made meanwhile one stalled copy each.
_SPARE_TTL = 0.01
_monotonic = time.monotonic
_spare_seen: tuple[float, int, int] = (-math.inf, 0, 0)  # (when, wanted, CPUs free) of the last reading


def _spare_cpus(wanted: int) -> int:
    """How many CPUs of this process's affinity no other process's runnable task uses right now,
    counting the calling thread's as free; 0 where that cannot be read (not Linux). ``wanted``:
    enough to decide, the cheap reading is trusted as soon as it shows that many.

    torch's intra-op threads wait for each other at the end of every kernel, so on a busy
    machine one descheduled worker stalls a copy for a whole time slice: measured 4x to over
    100x slower than the calling thread alone. A reading less than :data:`_SPARE_TTL` seconds
    old answers again where it decides as much: it showed ``wanted`` free, or it was the full
    reading (fewer free than it was asked for).
    """
    global _spare_seen
    now = _monotonic()
    when, asked, free = _spare_seen
    if now - when < _SPARE_TTL and (free >= wanted or free < asked):
        return free
    free = _read_spare_cpus(wanted)
    _spare_seen = (now, wanted, free)
    return free



def _read_spare_cpus(wanted: int) -> int:
    """:func:`_spare_cpus` read afresh from ``/proc``."""
    global _cpu_watch
    if _cpu_watch is False:
        return 0
    with _cpu_watch_guard:
        try:
            if _cpu_watch is None:
                _cpu_watch = _CpuWatch()
            return _cpu_watch.free(wanted)
        except (OSError, AttributeError, IndexError, ValueError):
            _cpu_watch = False  # not Linux, or a /proc unlike Linux's: never asked again
            return 0


def _torch_steps(views: Sequence[tuple], sig: tuple) -> list | None:
    """Steps as (parameter view, leaf key, sizes, strides and offset in elements) for the torch
    copies of :func:`_fast_export` and :func:`_fast_load`; ``None`` below :data:`_TORCH_COPY_BYTES`."""
    if sum(int(np.prod(shape)) * dtype.itemsize for _, shape, dtype in sig) < _TORCH_COPY_BYTES:
        return None
    out = []
    for src, lkey, lsz, lst, loff in views:
        item = src.itemsize
        out.append((torch.from_numpy(src), lkey, lsz, tuple(st // item for st in lst), loff // item))
    return out


def _offset_view(base: np.ndarray, sizes: tuple[int, ...], strides: tuple[int, ...], offset: int) -> np.ndarray:
    """A view of ``base``'s memory at a byte offset, for a base that has no contiguous buffer."""
    ptr = base.__array_interface__["data"][0] + offset
    return np.asarray(_Raw(base.base.tensor, ptr, sizes, strides, base.dtype.str))  # type: ignore[union-attr]


def _aliased(b: _Bound, leaves: Mapping[str, np.ndarray]) -> bool:
    """Whether a leaf's memory overlaps a parameter's (the general path reads such a leaf from a copy)."""
    starts, ends = b.ranges
    span = b.span
    for a in leaves.values():
        if not a.size or span is None or not _may_share(a, span):  # outside the parameters' extent
            continue
        lo = a.__array_interface__["data"][0]
        i = bisect.bisect_left(starts, lo + a.nbytes) - 1  # the last parameter that starts before the leaf ends
        if i >= 0 and ends[i] > lo:  # parameters never overlap: no earlier one can reach further
            return True
    return False


def _fast_load(module: nn.Module, spec: RNNSpec, pieces: Sequence[Piece], key: Hashable | None,
               leaves: Mapping[str, Any], shapes: Mapping[str, Sequence[Axis]]) -> bool:
    """:func:`load` for a plain CPU module from numpy leaves (see above): below :data:`_FAST_BYTES`
    any such load, up to :data:`_TORCH_LOAD_BYTES` those that take the torch steps; ``False``:
    nothing done."""
    if key is None or _increment_version is None or torch.is_inference_mode_enabled():
        return False
    sig = _fast_leaves(leaves, shapes, _TORCH_LOAD_BYTES)
    if sig is None:
        return False
    b = _bound_for(module, spec)
    if b is None or b.nbytes >= _TORCH_LOAD_BYTES:
        return False
    plan_ = _bound_plan(b, key, spec, pieces, sig, "import")
    if not plan_:
        return False
    tsteps = plan_[4]
    if (tsteps is not None and (threads := torch.get_num_threads()) > 1
            and all(_FAST_NP[a.dtype] is b.dtype for a in leaves.values()) and _spare_cpus(threads) >= threads):
        return _torch_load(b, leaves, tsteps)
    if b.nbytes >= _FAST_BYTES or sum(a.nbytes for a in leaves.values()) >= _FAST_BYTES:
        return False  # numpy's single thread: small loads only; the general path spreads larger ones
    if not _fast_values_ok(leaves, b.dtype):
        return False
    copyto = np.copyto
    stage = plan_[2]
    if stage is not None and stage.lock.acquire(blocking=False):
        try:  # every leaf is read whole before any parameter is written: aliasing cannot matter
            arrays = stage.arrays
            for k, a in leaves.items():
                copyto(arrays[k], a)
            for dst, src in plan_[3]:
                copyto(dst, src, casting="unsafe")
        finally:
            stage.lock.release()
    else:
        if _aliased(b, leaves):
            return False
        ndarray = np.ndarray
        for dst, lkey, lsz, lst, loff in plan_[0]:
            a = leaves[lkey]
            copyto(dst, ndarray(lsz, a.dtype, a, loff, lst), casting="unsafe")
    _increment_version(b.params)
    return True


def _spare_finite(t: torch.Tensor, a: np.ndarray) -> bool:
    """Whether the leaf ``a`` (``t`` its tensor) is all finite, where torch's threads are free: a
    tiny one in one numpy pass, others by :func:`_torch_all_finite` (no 0-d ``isfinite`` kernel
    per leaf)."""
    if a.size <= _TINY:
        return bool(_np_isfinite(a).all())
    return _torch_all_finite(t)


def _torch_load(b: _Bound, leaves: Mapping[str, np.ndarray], tsteps: list) -> bool:
    """:func:`_fast_load` of leaves in the parameters' dtype through torch's intra-op threads (see
    :data:`_TORCH_COPY_BYTES`): torch's reductions check every leaf, then ``copy_`` writes the
    parameters. ``False``, having written nothing, for a NaN/Inf (or a sum that overflowed) or a
    leaf that shares memory with a parameter: the general path then raises or copies as it does."""
    if _aliased(b, leaves):
        return False
    # the leaves are plain C-contiguous numpy arrays of native float dtypes (see _fast_leaves):
    # torch views them as they are; only a read-only one needs _as_tensor's quiet view
    tensors = {k: torch.from_numpy(a) if a.flags.writeable else _as_tensor(a) for k, a in leaves.items()}
    for k, t in tensors.items():
        if t.numel() and not _spare_finite(t, leaves[k]):
            return False
    srcs = [tensors[lkey].as_strided(lsz, lst, loff) for _, lkey, lsz, lst, loff in tsteps]
    if _foreach_copy is not None:  # one call for every copy: less per-copy dispatch
        _foreach_copy([s[0] for s in tsteps], srcs)
    else:  # pragma: no cover - torch without _foreach_copy_
        for (dst, *_), src in zip(tsteps, srcs):
            dst.copy_(src)
    _increment_version(b.params)  # type: ignore[misc]
    return True


_foreach_copy = getattr(torch, "_foreach_copy_", None)


def _fast_fresh(module: nn.Module, spec: RNNSpec, pieces: Sequence[Piece], key: Hashable | None,
                leaves: Mapping[str, Any], shapes: Mapping[str, Sequence[Axis]]) -> bool:
    """:func:`load` into a module that :func:`build` just made (contiguous parameters that no one else
    sees yet), from numpy leaves; ``False``: nothing done."""
    if key is None or _increment_version is None or torch.is_inference_mode_enabled():
        return False
    if module._forward_pre_hooks or "parametrizations" in module._modules:
        return False
    sig = _fast_leaves(leaves, shapes, _FAST_BYTES)
    if sig is None:
        return False
    ps = module._parameters
    names = _param_names(spec)
    params = {n: ps.get(n) for n in names}
    first = params[names[0]]
    if first is None:
        return False
    dtype = first.dtype
    if dtype not in _TYPESTR or first.device.type != "cpu" or _crosses(_HOST, first):
        return False
    for p in params.values():
        if type(p) is not nn.Parameter or p.dtype is not dtype or not p.is_contiguous():
            return False
    pgeom = (dtype, "contiguous", tuple(p.shape for p in params.values()))  # type: ignore[union-attr]
    plan_ = _fast_plan(key, spec, pieces, params, pgeom, sig, "import")  # type: ignore[arg-type]
    if not plan_ or not _fast_values_ok(leaves, dtype):
        return False
    typestr = _TYPESTR[dtype]
    asarray, copyto, ndarray = np.asarray, np.copyto, np.ndarray
    for pname, psz, pst, poff, lkey, lsz, lst, loff in plan_[0]:
        p = params[pname]
        a = leaves[lkey]
        copyto(asarray(_Raw(p, p.data_ptr() + poff, psz, pst, typestr)),  # type: ignore[arg-type, union-attr]
               ndarray(lsz, a.dtype, a, loff, lst), casting="unsafe")
    _increment_version(list(params.values()))
    return True


def _fast_export(module: nn.Module, spec: RNNSpec, pieces: Sequence[Piece], key: Hashable | None,
                 shapes: Mapping[str, Sequence[Axis]]) -> dict[str, np.ndarray] | None:
    """:func:`export` of a small plain CPU module (see above); ``None``: nothing done."""
    if key is None:
        return None
    b = _bound_for(module, spec)
    if b is None:
        return None
    np_dtype = b.views[b.names[0]].dtype
    wants = _wants_of(shapes)
    sig = tuple([(k, w, np_dtype) for k, w in wants])
    plan_ = _bound_plan(b, key, spec, pieces, sig, "export")
    if not plan_:
        return None
    views, short, stage, pairs, tsteps = plan_
    copyto = np.copyto
    if stage is not None and stage.lock.acquire(blocking=False):
        try:  # what no piece writes stays zero in the stage
            for src, dst in pairs:
                copyto(dst, src)
            return {k: a.copy() for k, a in stage.arrays.items()}
        finally:
            stage.lock.release()
    arrays = {k: (np.zeros if k in short else np.empty)(w, np_dtype) for k, w in wants}
    if tsteps is not None and (threads := torch.get_num_threads()) > 1 and _spare_cpus(threads) >= threads:
        leaves = {k: torch.from_numpy(a) for k, a in arrays.items()}
        for tsrc, lkey, lsz, lst, loff in tsteps:  # the views hold no autograd history: no no_grad needed
            leaves[lkey].as_strided(lsz, lst, loff).copy_(tsrc)
        return arrays
    ndarray = np.ndarray
    for src, lkey, lsz, lst, loff in views:
        copyto(ndarray(lsz, np_dtype, arrays[lkey], loff, lst), src)
    return arrays


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
    with _fork_safe():
        return _import_layout(cls, layout, source, mode=mode, infer=infer, options=options, batch_first=batch_first,
                              dropout=dropout, device=device, dtype=dtype, freeze=freeze, strict_mode=strict_mode)


def _import_layout(cls: type[nn.RNNBase], layout: Any, source: Any, *, mode: str, infer: Mapping[str, Any] | None,
                   options: Mapping[str, Any] | None, batch_first: bool, dropout: float, device: Any, dtype: Any,
                   freeze: bool, strict_mode: bool) -> nn.RNNBase:
    options = dict(options or {})
    spec, leaves = layout.infer(source, mode=mode, **dict(infer or {}), **options)
    if strict_mode and spec.mode != mode:
        raise LayoutError(
            f"source ({layout.name} layout): the source computes {spec.describe()}, but "
            f"nonlinearity={'relu' if mode == 'RNN_RELU' else 'tanh'!r} was asked for; drop nonlinearity= "
            f"to take the source's activation"
        )
    (shapes, hint), _ = _declaration(layout, spec, options, "shapes")
    checked = check_leaves(leaves, shapes, layout=layout.name, hint=hint, finite=False)
    pieces, key = _declaration(layout, spec, options, "pieces")
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
    if not isinstance(freeze, bool):
        raise TypeError(f"freeze should be of type bool, got: {type(freeze).__name__}")
    sink = _deferring.get()
    if sink is not None and _on_cpu(device):
        # written later, straight into a file, by numpyrnn.streaming: a module without values
        module = build(cls, spec, batch_first=batch_first, dropout=dropout, device="meta", dtype=dtype)
        sink[module] = Deferred(spec, pieces, key, checked)
        if freeze:
            module.requires_grad_(False)
        return module
    module = build(cls, spec, batch_first=batch_first, dropout=dropout, device=device, dtype=dtype)
    if not _fast_fresh(module, spec, pieces, key, checked, shapes):
        load(module, pieces, checked, fresh=True, key=key)  # checks values as it copies
    if freeze:
        module.requires_grad_(False)
    return module


@dataclass(frozen=True)
class Deferred:
    """What :func:`import_layout` would have written into a module, kept for later (see :func:`deferring`):
    the spec, the layout's pieces and their key, and the leaves that passed every check but the
    values' (finiteness and range), which whoever writes them checks."""

    spec: RNNSpec
    pieces: Sequence[Piece]
    key: Hashable | None
    leaves: Mapping[str, np.ndarray | torch.Tensor] = field(repr=False)


_deferring: contextvars.ContextVar[dict | None] = contextvars.ContextVar("numpyrnn_deferring", default=None)


@contextlib.contextmanager
def deferring(sink: dict) -> Iterator[dict]:
    """While active, :func:`import_layout` of a CPU module builds it on ``meta`` and records in
    ``sink`` (module -> :class:`Deferred`) what it would have written, instead of writing it.

    For :mod:`numpyrnn.streaming`, which writes those values straight into a file. Only code
    that hands the module on untouched may run under it: values written into a ``meta``
    module are lost without an error.
    """
    token = _deferring.set(sink)
    try:
        yield sink
    finally:
        _deferring.reset(token)


def _on_cpu(device: Any) -> bool:
    """Whether ``device`` (``None``: torch's default) is the CPU."""
    if device is None:
        return torch.empty(0).device.type == "cpu"
    try:
        return torch.device(device).type == "cpu"
    except (TypeError, RuntimeError):
        return False  # left to build(), which says what is wrong


def load_layout(module: nn.RNNBase, layout: Any, source: Any, *, options: Mapping[str, Any] | None = None) -> nn.RNNBase:
    """Load ``source`` into an existing module in place; all-or-nothing."""
    options = dict(options or {})
    spec = _spec_of(module)
    with _guarded(module):
        leaves = layout.leaves_for(source, spec, **options)
        bkey = _both_key(layout, spec, options)
        both = _declared_both(bkey, layout)
        if both is None:
            (shapes, hint), _ = _declaration(layout, spec, options, "shapes")
            try:  # a declaration that raises is raised below, after the leaves' own errors
                pieces, key = _declaration(layout, spec, options, "pieces")
                _both_put(bkey, layout, (shapes, hint, pieces, key))
            except Exception:  # noqa: BLE001
                key = None
        else:
            shapes, hint, pieces, key = both
        if key is not None and _fast_load(module, spec, pieces, key, leaves, shapes):
            return module
        checked = check_leaves(leaves, shapes, layout=layout.name, hint=hint)
        pieces, key = _declaration(layout, spec, options, "pieces")
        return load(module, pieces, checked, key=key, checked=True)


def export_layout(module: nn.RNNBase, layout: Any, *, options: Mapping[str, Any] | None = None) -> Any:
    """The module's weights in ``layout``, as fresh arrays (never views of the parameters)."""
    options = dict(options or {})
    spec = _spec_of(module)
    bkey = _both_key(layout, spec, options)
    both = _declared_both(bkey, layout)
    if both is None:
        pieces, key = _declaration(layout, spec, options, "pieces")
        (shapes, hint), _ = _declaration(layout, spec, options, "shapes")
        _both_put(bkey, layout, (shapes, hint, pieces, key))
    else:
        shapes, _, pieces, key = both
    with _fork_safe():
        arrays = export(module, pieces, shapes, key=key, spec=spec)
        return layout.assemble(arrays, spec, **options)
