"""A module's parameters made straight into a file, a few hundred KB at a time.

``numpyrnn convert`` of block arrays (``.npz`` or a folder of ``.npy``) to
``.safetensors`` never builds the module's weights in memory. It reads the file
under :func:`numpyrnn.engine.deferring`, which builds the module on ``meta``
(shapes and dtypes, no values) and keeps the layout's plan and the source arrays.
:func:`parameter_bytes` then makes each parameter's bytes in the order the file
holds them: every copy of the plan is cut into sub-blocks of at most
:data:`PIECE_BYTES`, taken in the order of their place in the parameter, and
copied into a small buffer; once no later sub-block can reach below a point, the
bytes before it are final, are checked for NaN/Inf, and go to the file while
they are still in the cache. The source is read once, the file is written once,
and the only memory besides the source's pages is that buffer (it grows to a
whole parameter only for layouts whose blocks interleave, none of the block
layout's).

The values are exactly what building the module and writing its ``state_dict``
gives: the same copies (numpy's where it rounds as ``copy_`` does, ``copy_``
itself elsewhere), the same offsets, zeros where no piece writes. A bad value is
refused with the same message, raised by the same checks run on the source
(:func:`numpyrnn.engine.check_finite` and the range check of casts), and since
the output is written to a temporary file first, nothing is left of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from . import engine

__all__ = ["PIECE_BYTES", "FLUSH_BYTES", "parameter_bytes", "streamable"]

#: The largest sub-block of one copy, in bytes of the parameter.
PIECE_BYTES = 256 << 10
#: Final bytes are checked and handed to the file once this many have gathered.
FLUSH_BYTES = 1 << 20

_NUMPY = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def streamable(module: nn.Module, deferred: engine.Deferred) -> bool:
    """Whether :func:`parameter_bytes` can write ``module``: a plain module on ``meta`` whose
    leaves are numpy or CPU tensors."""
    if not isinstance(module, nn.RNNBase):
        return False
    params = list(module.parameters())
    if not params or any(p.device.type != "meta" for p in params):
        return False
    return all(isinstance(v, np.ndarray) or (isinstance(v, torch.Tensor) and v.device.type == "cpu")
               for v in deferred.leaves.values())


def _split(sz: tuple[int, ...], pst: tuple[int, ...], poff: int, lst: tuple[int, ...], loff: int,
           limit: int) -> Iterator[tuple[tuple[int, ...], tuple[int, ...], int, tuple[int, ...], int]]:
    """Sub-blocks of at most ``limit`` elements of one copy, its axes taken by falling parameter stride."""
    order = sorted((i for i in range(len(sz)) if sz[i] != 1), key=lambda i: -pst[i])
    sz = tuple(sz[i] for i in order)
    pst = tuple(pst[i] for i in order)
    lst = tuple(lst[i] for i in order)

    def cut(sz: tuple[int, ...], pst: tuple[int, ...], poff: int, lst: tuple[int, ...], loff: int) -> Iterator:
        n = math.prod(sz)
        if n <= limit or not sz:
            yield sz, pst, poff, lst, loff
            return
        inner = n // sz[0]
        if inner <= limit:
            step = max(1, limit // inner)
            for i in range(0, sz[0], step):
                yield (min(step, sz[0] - i),) + sz[1:], pst, poff + i * pst[0], lst, loff + i * lst[0]
            return
        for i in range(sz[0]):
            yield from cut(sz[1:], pst[1:], poff + i * pst[0], lst[1:], loff + i * lst[0])

    yield from cut(sz, pst, poff, lst, loff)


class _Source:
    """The leaves as tensors and, where numpy copies them as ``copy_`` does, as numpy buffers."""

    def __init__(self, leaves: Mapping[str, Any], dtype: torch.dtype):
        self.tensors = {k: engine._as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in leaves.items()}
        self.arrays: dict[str, np.ndarray] = {}  # each from its tensor's first element
        self.first = {k: int(t.storage_offset()) for k, t in self.tensors.items()}
        if dtype in _NUMPY:
            for k, t in self.tensors.items():
                if (t.dtype in _NUMPY and not (t.dtype == torch.float64 and dtype == torch.float16)
                        and t.is_contiguous() and not (t.is_neg() or t.is_conj()) and t.numel()):
                    self.arrays[k] = np.ndarray((t.numel(),), _NUMPY[t.dtype], engine._numpy_view(t.reshape(-1)))
        self.checked = False  # the source passed the full checks once (a sum that overflowed sent it there)

    def refuse_or_pass(self, dtype: torch.dtype) -> None:
        """After a check of made bytes failed: raise what checking the source first raises, or
        return where the source holds only finite values in range (a sum overflowed, or an offset
        pushed a value over, which the general path writes as it is)."""
        if not self.checked:
            engine._check_range(self.tensors, dtype)
            engine.check_finite(self.tensors)
            self.checked = True


def parameter_bytes(module: nn.RNNBase, deferred: engine.Deferred, *, piece_bytes: int = PIECE_BYTES,
                    flush_bytes: int = FLUSH_BYTES) -> Iterator[tuple[str, memoryview]]:
    """The bytes of ``module.state_dict()``'s tensors in order, as ``(name, chunk)`` pairs, made from
    ``deferred`` (what :func:`numpyrnn.engine.deferring` recorded for ``module``).

    Each chunk is a view of a buffer that is made again two chunks later: it may be written
    (by another thread) while the next one is made, and must be written before the one after
    that is asked for. Raises :class:`~numpyrnn.errors.LayoutError` for a NaN/Inf or a value the
    dtype rounds to Inf, as building the module would have.
    """
    spec = deferred.spec
    params = engine._params(module, spec)
    names = list(module.state_dict())
    if sorted(names) != sorted(params):
        raise RuntimeError(f"internal error: {type(module).__name__}'s state_dict holds {names}, "
                           f"its parameters are {list(params)}")
    dtype = params[names[0]].dtype
    item = params[names[0]].element_size()
    source = _Source(deferred.leaves, dtype)
    rec = engine._recipe_for(deferred.key, spec, deferred.pieces, params, source.tensors, "import")
    steps: dict[str, list] = {}
    limit = max(1, piece_bytes // item)
    for pname, (psz, pst, poff), lkey, (_, lst, loff), offset, _, _ in rec.steps:
        if not all(psz):
            continue
        base = int(source.tensors[lkey].storage_offset())
        for sz, ps, po, ls, lo in _split(psz, pst, poff, lst, loff + base, limit):
            steps.setdefault(pname, []).append((po, sz, ps, lkey, ls, lo, offset))
    maker = _Maker(dtype, source, max(1, flush_bytes // item))
    for name in names:  # no autograd: the buffers and leaves never require grad
        n = params[name].numel()
        if not n:
            continue
        subs = sorted(steps.get(name, ()), key=lambda s: s[0])
        covered = sum(math.prod(s[1]) for s in subs)
        for chunk in maker.parameter(n, subs, whole=name in rec.partial or covered != n):
            yield name, chunk


class _Maker:
    """Two buffers, reused from parameter to parameter, taking turns: while the bytes handed out
    from one are written, the next ones are made in the other (see :func:`parameter_bytes`)."""

    def __init__(self, dtype: torch.dtype, source: _Source, flush: int):
        self.dtype = dtype
        self.source = source
        self.flush = flush
        self.np = _NUMPY.get(dtype)
        self.item = torch.empty(0, dtype=dtype).element_size()
        self.bufs = [torch.empty(2 * flush, dtype=dtype) for _ in range(2)]
        self.turn = 0
        self._current()

    def _current(self) -> None:
        self.buf = self.bufs[self.turn]
        self.cap = self.buf.numel()
        self.array = self.buf.numpy() if self.np is not None else None

    def _grow(self, n: int, keep: int = 0) -> None:
        """A larger current buffer that starts with the ``keep`` elements of the old one."""
        buf = torch.empty(n, dtype=self.dtype)
        if keep:
            with engine._fork_safe():
                buf[:keep].copy_(self.buf[:keep])
        self.bufs[self.turn] = buf
        self._current()

    def _copy(self, at: int, sz: tuple, ps: tuple, lkey: str, ls: tuple, lo: int, offset: float) -> None:
        src = self.source.arrays.get(lkey)
        if src is not None and self.array is not None:
            item, litem = self.item, src.itemsize
            dst = np.ndarray(sz, self.np, self.array, at * item, tuple(s * item for s in ps))
            view = np.ndarray(sz, src.dtype, src, (lo - self.source.first[lkey]) * litem, tuple(s * litem for s in ls))
            if src.dtype == self.array.dtype:
                np.copyto(dst, view)
            else:
                with np.errstate(over="ignore", invalid="ignore"):  # a value the cast makes Inf: refused when checked
                    np.copyto(dst, view, casting="unsafe")
        else:
            with engine._fork_safe():  # a torch kernel of a forked child stays on its thread
                self.buf.as_strided(sz, ps, at).copy_(self.source.tensors[lkey].as_strided(sz, ls, lo))
        if offset:
            with engine._fork_safe():
                self.buf.as_strided(sz, ps, at).add_(offset)

    def _emit(self, count: int, rest: tuple[int, int] = (0, 0)) -> Iterator[memoryview]:
        """Check the current buffer's first ``count`` elements and hand them out; then the other buffer
        becomes current, starting with the old one's elements ``rest`` (made, not yet final)."""
        if count > 0:
            region = self.buf[:count]
            with engine._fork_safe():
                finite = (engine._numpy_all_finite(self.array[:count]) if self.array is not None
                          else engine._all_finite(region))
                if not finite:
                    self.source.refuse_or_pass(self.dtype)
            yield region.view(torch.uint8).numpy().data
        old = self.buf
        self.turn ^= 1
        self._current()
        lo, hi = rest
        if hi > lo:
            if self.cap < hi - lo:
                self._grow(2 * (hi - lo))
            with engine._fork_safe():
                self.buf[:hi - lo].copy_(old[lo:hi])

    def parameter(self, n: int, subs: list, *, whole: bool) -> Iterator[memoryview]:
        if whole:  # some element no piece writes (zeroed), or pieces that interleave: the whole parameter
            if self.cap < n:
                self._grow(n)
            with engine._fork_safe():
                self.buf[:n].zero_()
            for po, sz, ps, lkey, ls, lo, offset in subs:
                self._copy(po, sz, ps, lkey, ls, lo, offset)
            yield from self._emit(n)
            return
        base = 0  # the parameter's element at buf[0]; everything before it is handed out
        reach = 0  # one past the last element made so far
        for j, (po, sz, ps, lkey, ls, lo, offset) in enumerate(subs):
            hi = po + sum((s - 1) * st for s, st in zip(sz, ps)) + 1
            if hi - base > self.cap:
                if po > base:  # nothing later reaches below po: hand out what lies before it
                    yield from self._emit(po - base, (po - base, max(reach, po) - base))
                    base = po
                if hi - base > self.cap:
                    self._grow(max(2 * self.cap, hi - base), keep=max(0, reach - base))
            self._copy(po - base, sz, ps, lkey, ls, lo, offset)
            reach = max(reach, hi)
            nxt = subs[j + 1][0] if j + 1 < len(subs) else n
            if nxt - base >= self.flush:
                yield from self._emit(nxt - base, (nxt - base, max(reach, nxt) - base))
                base = nxt
        if n > base:
            yield from self._emit(n - base)
