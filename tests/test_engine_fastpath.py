"""The engine's fast paths: finiteness check, fresh buffers, export, and the device transfer logic.

The device path (raw spans over the bus, permuted there through the same views)
runs here on the CPU by declaring every CPU -> CPU copy a crossing; the tests
marked ``cuda`` run it for real where a GPU is present.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, NumpyRNN, engine
from numpyrnn.layouts.blocks import BLOCKS
from numpyrnn.spec import RNNSpec

from .conftest import make_blocks, state

SPECS = [
    RNNSpec("GRU", 5, 4, num_layers=3, bidirectional=True, bias=True),
    RNNSpec("GRU", 3, 6, num_layers=1, bidirectional=False, bias=False),
    RNNSpec("LSTM", 4, 6, num_layers=2, bidirectional=True, bias=True, proj_size=3),
    RNNSpec("LSTM", 7, 5, num_layers=2, bidirectional=False, bias=True),
    RNNSpec("RNN_TANH", 3, 4, num_layers=2, bidirectional=True, bias=True),
]
IDS = ["gru-bi-3l", "gru-uni-nobias", "lstm-proj-bi", "lstm-uni", "rnn-bi"]


def cls_of(spec):
    return {"GRU": NumpyGRU, "LSTM": NumpyLSTM}.get(spec.mode, NumpyRNN)


def build_from(spec, arrays, **kw):
    a = {k: v for k, v in arrays.items() if v is not None}
    if spec.mode != "LSTM":
        a.pop("proj", None)
    return cls_of(spec).from_numpy(**a, **kw)


def peak_cpu_bytes(fn) -> int:
    """The largest CPU allocation torch's allocator saw while ``fn`` ran."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max((e.cpu_memory_usage for e in prof.events() if e.cpu_memory_usage > 0), default=0)


# --------------------------------------------------------------------------------------
# finiteness check
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, "bfloat16"])
@pytest.mark.parametrize("where", [None, (0, 0, 0), (2, 513, 1000), (3, 1023, 1023)], ids=str)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_first_nonfinite_finds_first_bad_value(dtype, where, bad):
    a = np.ones((4, 1024, 1024), dtype=np.float32)
    if where is not None:
        a[where] = bad
        a[3, 1023, 1023] = np.nan  # a later bad value must not win
        a[where] = bad
    leaf = torch.from_numpy(a).to(torch.bfloat16) if dtype == "bfloat16" else a.astype(dtype)
    found = engine._first_nonfinite(leaf)
    if where is None:
        assert found is None
    else:
        idx, value = found
        assert idx == where
        assert (np.isnan(value) and np.isnan(bad)) or value == bad


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_finiteness_check_allocates_nothing_big(dtype):
    a = np.ones((4, 1024, 1024), dtype=dtype)  # 8 to 32 MB
    assert engine._first_nonfinite(a) is None
    assert peak_cpu_bytes(lambda: engine._first_nonfinite(a)) < 64 << 10
    a[3, 1000, 7] = np.nan
    assert engine._first_nonfinite(a)[0] == (3, 1000, 7)
    # locating scans in blocks: a few MB at most, never a mask of the whole array
    assert peak_cpu_bytes(lambda: engine._first_nonfinite(a)) <= 8 * engine._LOCATE_BLOCK  # isfinite takes an abs()


def test_locate_scans_long_vectors_in_blocks(monkeypatch):
    monkeypatch.setattr(engine, "_LOCATE_BLOCK", 1000)
    a = np.zeros(10_500, dtype=np.float32)
    a[7_777] = np.inf
    a[9_000] = np.nan
    assert engine._first_nonfinite(a) == ((7_777,), np.inf)
    b = np.zeros((3, 2, 4000), dtype=np.float32)[:, :, ::2]  # strided, each row above the block
    b[2, 1, 1500] = np.nan
    idx, value = engine._first_nonfinite(b)
    assert idx == (2, 1, 1500) and np.isnan(value)


def test_huge_finite_values_overflowing_the_sum_are_accepted():
    a = np.full((1000, 1000), 3e38, dtype=np.float32)  # the float32 sum overflows to inf
    assert not engine._all_finite(torch.from_numpy(a))
    assert engine._first_nonfinite(a) is None
    h = np.full((4, 70_000), 60_000, dtype=np.float16)  # near float16's max
    assert engine._first_nonfinite(h) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.dtype(">f4")])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "fortran"])
@pytest.mark.parametrize("bad", [None, np.nan, np.inf, -np.inf])
def test_finite_probe_sees_every_nan_and_inf(dtype, layout, bad):
    a = np.random.default_rng(0).standard_normal((300, 400)).astype(dtype)
    if layout == "strided":
        a = np.repeat(a, 2, axis=1)[:, ::2]
    elif layout == "fortran":
        a = np.asfortranarray(a)
    if bad is not None:
        a[211, 317] = bad
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isfinite(engine._finite_probe(a)) == (bad is None)
    assert engine._numpy_all_finite(a) == (bad is None)
    assert (engine._first_nonfinite(a) is None) == (bad is None)


def test_squares_that_overflow_are_only_a_detour():
    """1e20 is a finite float32 whose square is not: the probe overflows, the exact check finds nothing."""
    spec = RNNSpec("GRU", 60, 80, num_layers=2, bidirectional=True)  # leaves above _TINY elements
    arrays = {k: v for k, v in make_blocks(spec).items() if v is not None}
    assert arrays["w"].size > engine._TINY
    arrays["w"][0, 1, 7, 9] = 1e20
    with np.errstate(over="ignore"):
        assert not np.isfinite(engine._finite_probe(arrays["w"]))
    assert engine._first_nonfinite(arrays["w"]) is None
    gru = NumpyGRU.from_numpy(**arrays)
    assert float(gru.weight_ih_l1_reverse.detach()[7, 9]) == np.float32(1e20)
    again = NumpyGRU(60, 80, 2, bidirectional=True)
    again.load_numpy(**arrays)
    assert torch.equal(again.weight_ih_l1_reverse, gru.weight_ih_l1_reverse)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_mid_size_loads_refuse_bad_values_and_write_nothing(bad):
    """Leaves between _TINY elements and the torch copy threshold: the probe's size range."""
    spec = RNNSpec("LSTM", 100, 100, num_layers=2, bidirectional=True)
    arrays = make_blocks(spec)
    nbytes = sum(a.nbytes for a in arrays.values() if a is not None)
    assert engine._TINY * 4 < nbytes < engine._TORCH_COPY_BYTES
    lstm = NumpyLSTM.from_numpy(**arrays)
    before = {k: v.clone() for k, v in lstm.state_dict().items()}
    broken = {k: (v.copy() if v is not None else None) for k, v in arrays.items()}
    broken["w"][0, 1, 99, 799] = bad
    with pytest.raises(LayoutError, match=rf"w: holds {bad} at index \[0, 1, 99, 799\]"):
        lstm.load_numpy(**broken)
    for k, v in lstm.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(LayoutError, match=rf"w: holds {bad} at index \[0, 1, 99, 799\]"):
        NumpyLSTM.from_numpy(**broken)


def test_check_leaves_reports_the_index_of_a_nan_in_a_large_leaf():
    spec = RNNSpec("GRU", 300, 200, num_layers=2, bidirectional=True)
    arrays = make_blocks(spec, bias=False)
    arrays["w"][0, 1, 150, 1234] = np.nan
    with pytest.raises(LayoutError, match=r"w: holds nan at index \[0, 1, 150, 1234\]"):
        NumpyGRU.from_numpy(arrays["w0"], arrays["w"])


# --------------------------------------------------------------------------------------
# fresh buffers
# --------------------------------------------------------------------------------------

def test_built_parameters_are_ordinary_torch_storage():
    spec = RNNSpec("GRU", 600, 700, num_layers=1, bidirectional=True)  # > 4 MB per weight
    a = make_blocks(spec)
    m = NumpyGRU.from_numpy(a["w0"], b0=a["b0"])
    for name, p in m.named_parameters():
        # allocated by torch like any parameter, not borrowed from numpy or the source
        assert p.untyped_storage().resizable() == torch.empty(4).untyped_storage().resizable(), name
        assert p.is_contiguous(), name
    # the big parameters do not share memory with the source
    assert not np.shares_memory(m.weight_ih_l0.detach().numpy(), a["w0"])


def test_empty_advises_large_cpu_tensors_only(monkeypatch):
    calls = []
    monkeypatch.setattr(engine, "_advise_huge_pages", lambda t: calls.append(t.numel()))
    engine.empty((10,), torch.float32, torch.device("cpu"))
    engine.empty((2 << 20,), torch.float32, torch.device("cpu"))
    engine.empty((1 << 20,), torch.float64, torch.device("meta"))
    assert calls == [2 << 20]


def test_advise_huge_pages_keeps_contents_and_tolerates_odd_sizes():
    for n in (1, 1000, (4 << 20) + 3):
        t = torch.empty(n, dtype=torch.uint8)
        engine._advise_huge_pages(t)
        t.fill_(7)
        assert int(t.sum()) == 7 * n


# --------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------

def test_export_zeroes_uncovered_leaves_and_uncovered_parts():
    spec = RNNSpec("GRU", 5, 4, num_layers=1, bidirectional=True)
    m = NumpyGRU.from_numpy(**{k: v for k, v in make_blocks(spec).items() if k in ("w0", "b0")})
    pieces = BLOCKS.pieces(spec)
    shapes = dict(BLOCKS.shapes(spec))
    d, h, width = (a.size for a in shapes["w0"])
    shapes["w0"] = (engine.Axis("directions", d), engine.Axis("hidden", h), engine.Axis("wide", width + 3))
    shapes["unused"] = (engine.Axis("n", 5000),)
    for _ in range(3):  # fresh memory often holds old bytes: make them likely
        junk = np.full(200_000, 9.0, dtype=np.float32)
        del junk
        out = engine.export(m, pieces, shapes)
        np.testing.assert_array_equal(out["unused"], np.zeros(5000, np.float32))
        np.testing.assert_array_equal(out["w0"][:, :, width:], np.zeros((d, h, 3), np.float32))
        ref = m.to_numpy()["w0"]
        np.testing.assert_array_equal(out["w0"][:, :, :width], ref)


# --------------------------------------------------------------------------------------
# the transfer logic
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("nbytes,chunk,align", [
    (0, 8, 1), (1, 8, 1), (8, 8, 1), (9, 8, 1), (64, 8, 4), (70, 10, 4), (1 << 20, 3000, 8), (24, 24, 8),
])
def test_chunk_plan_covers_in_aligned_bounded_chunks(nbytes, chunk, align):
    plan = engine.chunk_plan(nbytes, chunk, align)
    pos = 0
    for start, stop in plan:
        assert start == pos and stop > start
        assert stop - start <= chunk
        assert start % align == 0
        pos = stop
    assert pos == nbytes
    if nbytes:
        assert len(plan) == -(-nbytes // (chunk // align * align))


@pytest.mark.parametrize("args", [(-1, 8, 1), (16, 2, 4), (16, 8, 0)])
def test_chunk_plan_refuses_impossible_plans(args):
    with pytest.raises(ValueError, match="chunk_plan: need"):
        engine.chunk_plan(*args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("n", [0, 5, 63, 64, 200, 1001])
def test_stager_copies_every_byte_through_both_buffers(dtype, n):
    src = torch.arange(n, dtype=torch.float64).to(dtype)
    stager = engine.Stager(torch.device("cpu"), chunk_bytes=64)
    out = stager.to(src)
    stager.close()
    assert torch.equal(out, src)
    nbytes = n * src.element_size()
    expected = 0 if nbytes < 128 else len(engine.chunk_plan(nbytes, 64, src.element_size()))
    assert stager.chunks == expected
    assert len(stager._buffers) == (2 if expected > 1 else 0)


def test_stager_refuses_mismatched_tensors():
    stager = engine.Stager(torch.device("cpu"), chunk_bytes=64)
    with pytest.raises(RuntimeError, match="contiguous tensors of one shape and dtype"):
        stager.copy(torch.empty(10), torch.empty(20)[::2])


def test_extent_and_span_groups():
    leaf = torch.zeros(2, 4, 30)
    ih = leaf[1][:, :12]
    hh = leaf[1][:, 12:]
    other = leaf[0]
    assert engine.extent(ih) == (120, 120 + 3 * 30 + 12)
    assert engine.extent(hh) == (132, 240)
    assert engine.extent(leaf[1].T) == (120, 240)
    groups = engine.span_groups([ih, other, hh])
    # ih and hh overlap (interleaved rows): one span; leaf[0] only touches it: its own
    assert groups == [(0, 120, [1]), (120, 240, [0, 2])]
    with pytest.raises(RuntimeError, match="extent of an empty view"):
        engine.extent(leaf[:, :0])


@pytest.fixture
def crossing(monkeypatch):
    """Send every copy through the device path, on the CPU, with small chunks; record the spans."""
    spans: list[int] = []
    real_to = engine.Stager.to

    def to(self, src):
        spans.append(src.numel() * src.element_size())
        return real_to(self, src)

    monkeypatch.setattr(engine, "_crosses", lambda host, other: True)
    monkeypatch.setattr(engine, "CHUNK_BYTES", 64)
    monkeypatch.setattr(engine.Stager, "to", to)
    return spans


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("gates,rowwise", [(None, False), ("reverse", False), (None, True)], ids=["torch", "rev", "rowwise"])
def test_device_path_matches_the_cpu_path(crossing, spec, gates, rowwise):
    gates = spec.gate_letters[::-1] if gates == "reverse" else None
    arrays = make_blocks(spec, seed=3)
    want = build_from(spec, arrays, gates=gates, rowwise=rowwise)
    expected = state(want)
    nbytes = sum(a.nbytes for a in arrays.values() if a is not None)
    crossing.clear()
    got = build_from(spec, arrays, gates=gates, rowwise=rowwise)
    assert state(got).keys() == expected.keys()
    for k, v in state(got).items():
        assert torch.equal(v, expected[k]), k
    # every source byte crossed once at most, and no span is larger than one (layer, direction) block
    assert sum(crossing) <= nbytes
    block = max(a[(0,) * (a.ndim - 3)][0].nbytes for a in arrays.values() if a is not None)
    assert max(crossing) <= block
    assert max(crossing) >= 2 * engine.CHUNK_BYTES  # the staged, double-buffered schedule ran
    # in place, and back out
    got.load_numpy(**{k: v for k, v in arrays.items() if v is not None and (k != "proj" or spec.proj_size)},
                   gates=gates, rowwise=rowwise)
    for k, v in state(got).items():
        assert torch.equal(v, expected[k]), k
    out = got.to_numpy(gates=gates, rowwise=rowwise)
    for k, v in arrays.items():
        if v is None or (k == "proj" and not spec.proj_size):
            assert out[k] is None
        else:
            np.testing.assert_array_equal(out[k], v)


def test_device_path_casts_on_the_far_side(crossing):
    spec = RNNSpec("GRU", 6, 5, num_layers=2, bidirectional=True)
    a64 = {k: v for k, v in make_blocks(spec, dtype=np.float64, seed=5).items() if k != "proj"}
    got = NumpyGRU.from_numpy(**a64, dtype=torch.float32)
    assert {p.dtype for p in got.parameters()} == {torch.float32}
    # float64 bytes crossed and were rounded there exactly as numpy rounds them
    assert sum(crossing[:]) >= sum(a.nbytes for a in a64.values()) // 2
    want = NumpyGRU.from_numpy(**{k: v.astype(np.float32) for k, v in a64.items()})
    for k, v in state(got).items():
        torch.testing.assert_close(v, state(want)[k], rtol=0, atol=0)


def test_device_path_validates_before_writing(crossing):
    spec = RNNSpec("GRU", 6, 5, num_layers=2, bidirectional=True)
    arrays = {k: v for k, v in make_blocks(spec, seed=1).items() if k != "proj"}
    m = NumpyGRU.from_numpy(**arrays)
    before = state(m)
    bad = {k: v for k, v in make_blocks(spec, seed=2).items() if k != "proj"}
    bad["b"][0, 1, 4, 5] = np.inf
    with pytest.raises(LayoutError, match=r"b: holds inf at index \[0, 1, 4, 5\]"):
        m.load_numpy(**bad)
    for k, v in state(m).items():
        assert torch.equal(v, before[k]), k


def test_to_device_returns_views_on_the_same_device():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = engine.to_device(a, torch.device("cpu"))
    assert np.shares_memory(t.numpy(), a)


# --------------------------------------------------------------------------------------
# on a real GPU
# --------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("pinned_chunks", [False, True], ids=["plain", "staged"])
def test_cuda_matches_cpu(spec, pinned_chunks, monkeypatch):
    if pinned_chunks:
        monkeypatch.setattr(engine, "CHUNK_BYTES", 64)
    arrays = make_blocks(spec, seed=7)
    cpu = build_from(spec, arrays)
    gpu = build_from(spec, arrays, device="cuda")
    assert all(p.is_cuda for p in gpu.parameters())
    for k, v in state(gpu).items():
        assert torch.equal(v.cpu(), state(cpu)[k]), k
    # cuDNN's flat buffer: every weight lives in one storage, and forward does not re-flatten
    if torch.backends.cudnn.is_available():
        storages = {w.untyped_storage().data_ptr() for w in gpu._flat_weights}
        assert len(storages) == 1
    out = gpu.to_numpy()
    for k, v in arrays.items():
        if v is not None and (k != "proj" or spec.proj_size):
            np.testing.assert_array_equal(out[k], v)
    x = torch.randn(3, 2, spec.input_size)
    torch.testing.assert_close(gpu(x.cuda())[0].cpu(), cpu(x)[0], rtol=1e-4, atol=1e-4)



# --------------------------------------------------------------------------------------
# blockwise CPU copies, and the check the device path runs where spans land
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [1, 64, 1000, 4096, 1 << 20])
def test_blocks_tile_a_copy_exactly(target):
    leaf = torch.arange(4 * 6 * 30, dtype=torch.float32).reshape(4, 6, 30)
    src = leaf[1:3].permute(1, 0, 2)[:, :, 5:25]  # strided, like a piece's view
    dst = torch.zeros(6, 2, 20)
    seen = torch.zeros(6, 2, 20, dtype=torch.int32)
    for d, s in engine.blocks(dst, src, target):
        assert d.shape == s.shape
        if d[0].numel() * 4 <= target:  # whole rows fit: no block is larger than asked
            assert d.numel() * 4 <= max(target, d.shape[-1] * 4)
        d.copy_(s)
        seen[tuple(slice(o, o + n) for o, n in zip(engine_offsets(d, dst), d.shape))] += 1
    assert torch.equal(dst, src)
    assert torch.equal(seen, torch.ones_like(seen))


def engine_offsets(view, base):
    """Index of ``view``'s first element within the contiguous ``base``."""
    flat = view.storage_offset() - base.storage_offset()
    return np.unravel_index(flat, tuple(base.shape))


def test_numpy_view_leaves_the_tensor_as_torch_made_it():
    t = torch.arange(60, dtype=torch.float64).reshape(3, 4, 5).requires_grad_()
    v = t.detach().permute(2, 0, 1)[1:4, :, ::2]
    a = engine._numpy_view(v)
    np.testing.assert_array_equal(a, v.clone().numpy())
    a[0, 0, 0] = -1.0
    assert float(t.detach()[0, 0, 1]) == -1.0
    assert t.untyped_storage().resizable()  # Tensor.numpy() would have turned this off
    assert engine._numpy_view(torch.empty(0, 3)).shape == (0, 3)


def test_covers_sees_unread_parts_of_leaves():
    a, b = torch.zeros(4, 10), torch.zeros(3)
    assert engine._covers({"a": a, "b": b}, [a[:, :4], a[:, 4:], b])
    assert not engine._covers({"a": a, "b": b}, [a[:, :4], b])
    assert not engine._covers({"a": a, "b": b}, [a])


@pytest.fixture
def threaded(monkeypatch):
    """Send even small copies through the threaded blockwise path, in tiny blocks."""
    monkeypatch.setattr(engine, "_THREADED_BYTES", 0)
    monkeypatch.setattr(engine, "_BLOCK_BYTES", 256)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_threaded_blocks_match_torch_copies(threaded, spec, dtype, monkeypatch):
    arrays = make_blocks(spec, dtype=dtype, seed=11)
    got = build_from(spec, arrays, dtype=torch.float32)
    monkeypatch.setattr(engine, "_blockwise", lambda d, s: False)  # plain torch copy_ everywhere
    want = build_from(spec, arrays, dtype=torch.float32)
    for k, v in state(got).items():
        assert torch.equal(v, state(want)[k]), k
    out = got.to_numpy()
    for k, v in out.items():
        if v is not None:
            assert v.dtype == np.float32
            np.testing.assert_array_equal(v, arrays[k].astype(np.float32))


@pytest.mark.parametrize("key,where", [("w0", (1, 3, 17)), ("w", (1, 0, 3, 40)), ("b", (0, 1, 2, 5))])
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_threaded_load_raises_what_check_leaves_raises(threaded, key, where, bad):
    spec = RNNSpec("GRU", 6, 5, num_layers=3, bidirectional=True)
    arrays = {k: v for k, v in make_blocks(spec, seed=2).items() if k != "proj"}
    arrays[key][where] = bad
    arrays[key].reshape(-1)[-1] = np.nan  # a later bad value must not be the one named
    with pytest.raises(LayoutError) as fused:
        NumpyGRU.from_numpy(**arrays)
    leaves = {k: arrays[k] for k in ("w0", "w", "b0", "b")}
    with pytest.raises(LayoutError) as upfront:
        engine.check_finite(leaves)
    assert str(fused.value) == str(upfront.value)
    assert f"{key}: holds {bad}" in str(fused.value)


def test_threaded_load_accepts_huge_finite_values(threaded):
    spec = RNNSpec("GRU", 4, 3, num_layers=1, bidirectional=False)
    w0 = np.full((1, 3, 3 * 7), 3e38, dtype=np.float32)  # every block's float32 sum overflows
    m = NumpyGRU.from_numpy(w0)
    assert float(m.weight_ih_l0.detach().max()) == pytest.approx(3e38, rel=1e-6)
    assert spec.hidden_size == m.hidden_size


def test_check_leaves_can_leave_values_to_the_load():
    spec = RNNSpec("GRU", 4, 3)
    shapes = BLOCKS.shapes(spec, biases=False)
    w0 = np.full((1, 3, 21), np.nan, dtype=np.float32)
    out = engine.check_leaves({"w0": w0}, shapes, layout="block", finite=False)
    assert out["w0"] is w0
    with pytest.raises(LayoutError, match=r"w0: holds nan at index \[0, 0, 0\]"):
        engine.check_leaves({"w0": w0}, shapes, layout="block")


@pytest.mark.parametrize("bad", [np.nan, -np.inf], ids=["nan", "-inf"])
def test_device_path_checks_spans_where_they_land(crossing, bad):
    spec = RNNSpec("LSTM", 6, 5, num_layers=2, bidirectional=True, proj_size=3)
    arrays = make_blocks(spec, seed=4)
    arrays["w"][0, 1, 2, 7] = bad
    with pytest.raises(LayoutError, match=rf"w: holds {bad} at index \[0, 1, 2, 7\]"):
        NumpyLSTM.from_numpy(**arrays)
    # a bad value outside every leaf's elements, inside a span, is no reason to refuse
    big = np.zeros((2, 5, 2 * 4 * (6 + 3)), dtype=np.float32)
    big[...] = np.nan
    w0 = big[:, :, ::2]
    w0[...] = make_blocks(spec, seed=4)["w0"]
    m = NumpyLSTM.from_numpy(w0, proj=arrays["proj"][:1])
    np.testing.assert_array_equal(m.to_numpy()["w0"], w0)
