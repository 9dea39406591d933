"""Large builds from numpyrnn's own file mappings give the file's pages back as they copy.

A fresh module built from memory-mapped ``.npz`` members sweeps the members in address
order, gives back (``MADV_DONTNEED``) the pages behind it, and checks the new parameters
instead of reading the source twice. These tests check what the module holds, what
errors say, that only numpyrnn's own read-only file mappings are ever advised, and
(on Linux) that the mapping's resident pages really go.
"""

from __future__ import annotations

import mmap
import sys

import numpy as np
import pytest
import torch

import numpyrnn
from numpyrnn import LayoutError, engine, files, pages

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_DONTNEED on Linux file mappings")

I = H = 1024  # noqa: E741 - one layer, both directions: 50 MB of w0, above engine._SINGLE_THREAD_BYTES


def weights(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return dict(w0=(0.1 * rng.standard_normal((2, H, 3 * (I + H)))).astype(dtype),
                b0=(0.1 * rng.standard_normal((2, H, 6))).astype(dtype))


@pytest.fixture
def npz(tmp_path):
    def write(arrays, name="m.npz"):
        path = tmp_path / name
        np.savez(path, **arrays)
        return path
    return write


def resident_kb(arr: np.ndarray) -> int:
    """The resident size of the mapping that holds ``arr``, from /proc/self/smaps."""
    ptr = arr.__array_interface__["data"][0]
    inside = False
    for line in open("/proc/self/smaps").read().splitlines():
        head = line.split()
        if "-" in head[0] and not head[0].endswith(":"):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            inside = lo <= ptr < hi
        elif inside and head[0] == "Rss:":
            return int(head[1])
    raise AssertionError("mapping not found")


@linux
def test_a_large_build_gives_the_mapped_pages_back(npz):
    arrays = weights()
    mapped = files.read_npz(npz(arrays))
    assert pages.mapped(mapped["w0"].__array_interface__["data"][0]) is not None
    gru = numpyrnn.NumpyGRU.from_numpy(**mapped)
    assert resident_kb(mapped["w0"]) < 1024  # of a 50 MB member: at most the pages at a block's edge
    ref = numpyrnn.load_numpy(torch.nn.GRU(I, H, bidirectional=True), **arrays)
    for (name, p), q in zip(gru.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name
    assert np.array_equal(mapped["w0"], arrays["w0"])  # the pages come back from the page cache
    out = gru.to_numpy()
    for k, v in arrays.items():
        assert np.array_equal(out[k], v), k


def test_the_sweep_copies_in_address_order_and_releases_only_mappings(npz, monkeypatch):
    released: list[tuple[int, int]] = []
    real = pages.release

    def record(m, start, lo, hi):
        released.append((lo, hi))
        real(m, start, lo, hi)

    monkeypatch.setattr(pages, "release", record)
    mapped = files.read_npz(npz(weights()))
    numpyrnn.NumpyGRU.from_numpy(**mapped)
    if sys.platform.startswith("linux"):
        assert released, "nothing given back"
        lo = mapped["w0"].__array_interface__["data"][0]
        assert min(a for a, _ in released) <= lo and max(b for _, b in released) >= lo + mapped["w0"].nbytes
        assert all(a < b for a, b in released)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(released, released[1:]))  # one sweep, upwards
    released.clear()
    numpyrnn.NumpyGRU.from_numpy(**weights())  # arrays in anonymous memory: never advised
    assert released == []


@pytest.mark.parametrize("bad, where, index", [(np.nan, "w0", (1, 5, 7)), (np.inf, "b0", (0, 3, 2)),
                                               (-np.inf, "w0", (0, H - 1, 3 * (I + H) - 1))])
def test_bad_values_in_a_mapped_source_are_refused_as_before(npz, bad, where, index):
    arrays = weights()
    arrays[where][index] = bad
    with pytest.raises(LayoutError, match=rf"{where}: holds {bad} at index \[{', '.join(map(str, index))}\]"):
        numpyrnn.NumpyGRU.from_numpy(**files.read_npz(npz(arrays)))
    with pytest.raises(LayoutError, match=rf"{where}: holds {bad} at index"):
        numpyrnn.load(npz(arrays, "again.npz"), cell="gru")


def test_float64_beyond_float32_in_a_mapped_source(npz):
    arrays = weights(dtype=np.float64)
    arrays["w0"][1, 2, 3] = 1e39
    with pytest.raises(LayoutError, match=r"w0: holds 1e\+39 at index \[1, 2, 3\], beyond the largest float32"):
        numpyrnn.NumpyGRU.from_numpy(**files.read_npz(npz(arrays)), dtype=torch.float32)
    arrays["w0"][1, 2, 3] = 3.4028235e38  # the largest float32 itself: accepted
    gru = numpyrnn.NumpyGRU.from_numpy(**files.read_npz(npz(arrays, "max.npz")), dtype=torch.float32)
    assert gru.weight_hh_l0_reverse.abs().max() <= torch.finfo(torch.float32).max


def test_only_registered_read_only_mappings_are_known():
    anon = mmap.mmap(-1, 1 << 20)
    ptr = np.frombuffer(anon, dtype=np.uint8).__array_interface__["data"][0]
    assert pages.mapped(ptr) is None
    assert pages.mapped(np.zeros(10).__array_interface__["data"][0]) is None


def test_a_mapping_is_forgotten_when_it_goes(npz):
    mapped = files.read_npz(npz(weights()))
    ptr = mapped["w0"].__array_interface__["data"][0]
    if not sys.platform.startswith("linux"):
        assert pages.mapped(ptr) is None
        return
    assert pages.mapped(ptr) is not None
    del mapped
    import gc

    gc.collect()
    assert pages.mapped(ptr) is None


def test_small_builds_check_the_source_first(npz, monkeypatch):
    """Under engine._SINGLE_THREAD_BYTES nothing is swept: the source is checked before any copy."""
    rng = np.random.default_rng(3)
    small = dict(w0=rng.standard_normal((1, 8, 3 * 16)).astype(np.float32))
    calls = []
    monkeypatch.setattr(engine, "_sweep", lambda *a: calls.append(a))
    numpyrnn.NumpyGRU.from_numpy(**files.read_npz(npz(small)))
    assert calls == []
