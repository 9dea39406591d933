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
3. :func:`load` writes all views with ``copy_`` under ``no_grad``, zeroing
   what no piece covers, then re-flattens for cuDNN;
4. :func:`export` runs the same plan backwards into fresh numpy arrays.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

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


def _is_bfloat16(dtype: np.dtype) -> bool:
    return dtype.name == "bfloat16"  # ml_dtypes (jax) bfloat16


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


def _first_nonfinite(arr: np.ndarray | torch.Tensor) -> tuple[tuple[int, ...], float] | None:
    """Index and value of the first NaN/Inf, or ``None``. One read pass, no big temporaries."""
    t = _as_tensor(arr) if isinstance(arr, np.ndarray) else arr
    if t.numel() == 0:
        return None
    if t.device.type == "meta":
        return None
    # A finite sum proves every element finite (NaN and Inf propagate); only when the
    # sum is not finite (a bad value, or overflow of huge values) look closer.
    acc = torch.float64 if t.dtype in (torch.float64,) else torch.float32
    if bool(torch.isfinite(t.sum(dtype=acc))):
        return None
    bad = (~torch.isfinite(t)).reshape(-1).nonzero()
    if bad.numel() == 0:
        return None
    flat = int(bad[0, 0])
    idx = tuple(int(i) for i in np.unravel_index(flat, tuple(t.shape)))
    return idx, float(t[idx]) if idx else float(t)


def check_leaves(
    leaves: Mapping[str, Any],
    expected: Mapping[str, Sequence[Axis]],
    *,
    layout: str,
    hint: Any = None,
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
    for key, arr in out.items():
        found = _first_nonfinite(arr)
        if found is not None:
            idx, val = found
            raise LayoutError(
                f"{key}: holds {val} at index {list(idx)}; weights must be finite "
                f"(check the source for overflow or uninitialised memory)"
            )
    return out


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


def to_device(arr: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """The leaf as a tensor on ``device``: a view on the CPU, one transfer elsewhere."""
    t = _as_tensor(arr) if isinstance(arr, np.ndarray) else arr
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu" and not t.is_pinned():
        return _pinned_transfer(t, device)
    return t.to(device)


def _pinned_transfer(t: torch.Tensor, device: torch.device, chunk_bytes: int = 64 << 20) -> torch.Tensor:
    """Host -> device through a pinned staging buffer, in chunks, overlapping the memcpy
    into the staging buffer with the DMA of the previous chunk."""
    if not t.is_contiguous():
        return t.to(device)
    out = torch.empty(t.shape, dtype=t.dtype, device=device)
    flat_src = t.reshape(-1).view(torch.uint8)
    flat_dst = out.reshape(-1).view(torch.uint8)
    n = flat_src.numel()
    if n <= chunk_bytes:
        return t.to(device)
    stages = [torch.empty(chunk_bytes, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
    events = [None, None]
    stream = torch.cuda.current_stream(device)
    for k, start in enumerate(range(0, n, chunk_bytes)):
        stop = min(start + chunk_bytes, n)
        buf = stages[k % 2]
        if events[k % 2] is not None:
            events[k % 2].synchronize()
        buf[: stop - start].copy_(flat_src[start:stop])
        flat_dst[start:stop].copy_(buf[: stop - start], non_blocking=True)
        ev = torch.cuda.Event()
        ev.record(stream)
        events[k % 2] = ev
    for ev in events:
        if ev is not None:
            ev.synchronize()
    return out


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
        if not piece.gates:
            blocks = [(slice(None), slice(None), "", None)]
        else:
            blocks = [
                (slice(t0, t0 + n), slice(k0, k0 + n), letters, range(t0, t0 + n))
                for t0, k0, n, letters in _runs(piece, torch_letters)
            ]
        done = covered.setdefault(piece.param, set())
        for tsl, ksl, letters, trange in blocks:
            slots = set(trange) if trange is not None else set(range(G))
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
) -> nn.RNNBase:
    """Write validated leaves into ``module``'s parameters, in place, atomically.

    Everything that can fail (views, shapes) is worked out before the first
    write. Parameters not fully covered by pieces are zeroed first. The
    parameters keep their identity (optimizers and cuDNN's flat buffer survive).
    """
    spec = RNNSpec.of(module)
    params = _params(module, spec)
    first = next(iter(params.values()))
    device = first.device
    tensors = {k: to_device(v, device) for k, v in leaves.items()}
    _check_range(tensors, first.dtype)
    copies, partial = plan(spec, pieces, params, tensors, direction="import")
    with torch.no_grad():
        for name in partial:
            params[name].zero_()
        for c in copies:
            c.dst.copy_(c.src)
            if c.offset:
                c.dst.add_(c.offset)
    module.flatten_parameters()
    return module


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
        flat = int((t.abs() > limit).reshape(-1).nonzero()[0, 0])
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

    Built on the ``meta`` device and materialised with ``to_empty``: no random
    initialisation that would be overwritten anyway.
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
    return module._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device=device))


def export(
    module: nn.RNNBase,
    pieces: Sequence[Piece],
    shapes: Mapping[str, Sequence[Axis]],
) -> dict[str, np.ndarray]:
    """Run the pieces backwards: fresh numpy leaves in the module's dtype.

    Leaves no piece writes stay zero (e.g. a Flax bias of a bias-free module).

    Raises:
        TypeError: the module's dtype has no numpy equivalent (bfloat16).
    """
    spec = RNNSpec.of(module)
    params = _params(module, spec)
    dtype = next(iter(params.values())).dtype
    if dtype == torch.bfloat16:
        raise TypeError("numpy has no bfloat16: convert the module first, e.g. module.float().to_numpy()")
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    arrays = {k: np.zeros(tuple(a.size for a in axes), dtype=np_dtype) for k, axes in shapes.items()}
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    copies, _ = plan(spec, pieces, params, tensors, direction="export")
    with torch.no_grad():
        for c in copies:
            src = c.src if c.fold is None else c.src + c.fold
            c.dst.copy_(src)
            if c.offset:
                c.dst.add_(c.offset)
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
) -> nn.RNNBase:
    """A new module of ``cls`` holding the weights of ``source`` in ``layout``.

    Validates everything, then builds the module without random initialisation
    (``meta`` + ``to_empty``) and writes each parameter once.
    """
    options = dict(options or {})
    spec, leaves = layout.infer(source, mode=mode, **dict(infer or {}), **options)
    checked = check_leaves(leaves, layout.shapes(spec, **options), layout=layout.name,
                           hint=layout.hint(spec, **options))
    pieces = layout.pieces(spec, **options)
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
    if not isinstance(freeze, bool):
        raise TypeError(f"freeze should be of type bool, got: {type(freeze).__name__}")
    module = build(cls, spec, batch_first=batch_first, dropout=dropout, device=device, dtype=dtype)
    load(module, pieces, checked)
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
