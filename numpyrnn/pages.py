"""Pages of numpyrnn's own read-only file mappings, given back once they have been read.

numpyrnn memory-maps uncompressed ``.npz`` members (see :func:`numpyrnn.files.read_npz`).
Every page of such a mapping that a copy reads stays in the process's resident memory
until the mapping goes, so building a module from a 2 GB file would hold the file's
pages and the module's weights at once. The engine reads such sources in address order
and gives back the pages behind it with ``MADV_DONTNEED``: the file's data stays in the
page cache, and a later read of the same array maps it again (no data is lost, nothing
is read from disk twice).

Only mappings registered here are ever advised, and only while an array over them is
alive (the caller holds it), so the advice can never reach memory of another kind:
on anonymous memory ``MADV_DONTNEED`` would discard data.
"""

from __future__ import annotations

import bisect
import mmap
import sys
import threading
import weakref
from typing import Any

import numpy as np

__all__ = ["register", "release", "mapped"]

PAGE = mmap.PAGESIZE
_MADV_DONTNEED = getattr(mmap, "MADV_DONTNEED", 4)

_guard = threading.Lock()
_starts: list[int] = []  # sorted start addresses of the registered mappings
_ends: dict[int, int] = {}
_maps: dict[int, weakref.ref] = {}


def register(m: mmap.mmap) -> None:
    """Register a read-only, shared file mapping numpyrnn made (``ACCESS_READ``); forgotten when it goes."""
    if not sys.platform.startswith("linux") or not hasattr(m, "madvise") or len(m) == 0:
        return
    lo = int(np.frombuffer(m, dtype=np.uint8, count=1).ctypes.data)
    with _guard:
        i = bisect.bisect_left(_starts, lo)
        _starts.insert(i, lo)
        _ends[lo] = lo + len(m)
        _maps[lo] = weakref.ref(m)
    weakref.finalize(m, _forget, lo)


def _forget(lo: int) -> None:
    with _guard:
        if lo in _ends:
            _starts.remove(lo)
            del _ends[lo], _maps[lo]


def mapped(ptr: int) -> tuple[Any, int, int] | None:
    """The registered mapping holding address ``ptr``: ``(mmap, start, end)``, or ``None``."""
    with _guard:
        i = bisect.bisect_right(_starts, ptr) - 1
        if i < 0:
            return None
        lo = _starts[i]
        hi = _ends[lo]
        m = _maps[lo]()
    if m is None or not lo <= ptr < hi:
        return None
    return m, lo, hi


def release(m: Any, start: int, lo: int, hi: int) -> None:
    """Give back the whole pages of ``[lo, hi)`` in mapping ``m`` (which starts at ``start``).

    A hint: where the kernel refuses, nothing changes.
    """
    first = -(-(lo - start) // PAGE) * PAGE  # page offsets inside the mapping
    last = (hi - start) // PAGE * PAGE
    if last <= first:
        return
    try:
        m.madvise(_MADV_DONTNEED, first, last - first)
    except (OSError, ValueError):  # pragma: no cover - advice refused
        pass
