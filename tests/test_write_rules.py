"""Every load writes by torch's rules: the result is what ``param.copy_(source)`` under ``no_grad`` gives.

Version counters, negative bits, refused destinations, inference tensors, rounding on
every path, exact Inf edges, parametrizations, concurrent loads, forked children and
``atexit`` hooks. Fork and ``atexit`` run in subprocesses with timeouts, so that a hang
fails instead of hanging the run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A GRU of about 35 MB of float32 parameters: above the threshold where copies are threaded.
BIG = dict(I=1200, H=1200)


def blocks(I, H, *, G=3, seed=0, dtype=np.float32, bias=True):
    rng = np.random.default_rng(seed)
    out = dict(w0=(0.3 * rng.standard_normal((1, H, G * (I + H)))).astype(dtype))
    if bias:
        out["b0"] = (0.3 * rng.standard_normal((1, H, 2 * G))).astype(dtype)
    return out


def run_script(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


# --------------------------------------------------------------------------------------
# autograd: version counters
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", ["small", "threaded"])
@pytest.mark.parametrize("module_dtype", [torch.float32, torch.float16], ids=["raw", "copy_"])
def test_backward_after_load_raises_like_copy(size, module_dtype):
    """forward, load, backward: autograd refuses, as it does after ``copy_`` under ``no_grad``."""
    I, H = (BIG["I"], BIG["H"]) if size == "threaded" else (3, 4)
    if size == "threaded" and module_dtype == torch.float16:
        pytest.skip("one large case is enough")
    arrays = blocks(I, H, dtype=np.float64)
    gru = NumpyGRU(I, H, dtype=module_dtype)
    versions = {n: p._version for n, p in gru.named_parameters()}
    out, _ = gru(torch.randn(2, 1, I, dtype=module_dtype))
    numpyrnn.load_numpy(gru, **arrays)
    assert all(p._version > versions[n] for n, p in gru.named_parameters())
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.float().sum().backward()
    # torch's own behaviour, for comparison
    ref = nn.GRU(3, 4)
    out, _ = ref(torch.randn(2, 1, 3))
    with torch.no_grad():
        ref.weight_hh_l0.copy_(torch.zeros_like(ref.weight_hh_l0))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_load_then_forward_then_backward_works():
    gru = NumpyGRU(3, 4)
    numpyrnn.load_numpy(gru, **blocks(3, 4))
    out, _ = gru(torch.randn(2, 1, 3))
    out.sum().backward()
    assert gru.weight_hh_l0.grad is not None


# --------------------------------------------------------------------------------------
# tensor properties
# --------------------------------------------------------------------------------------

def test_negative_bit_source_loads_its_values():
    arrays = blocks(3, 4)
    z = torch.complex(torch.zeros(arrays["w0"].shape), torch.from_numpy(-arrays["w0"]))
    w0 = z.conj().imag  # a view with the negative bit set: its values are +w0
    assert w0.is_neg()
    got = NumpyGRU(3, 4)
    numpyrnn.load_numpy(got, w0, b0=arrays["b0"])
    want = NumpyGRU.from_numpy(**arrays)
    for (n, p), q in zip(got.named_parameters(), want.parameters()):
        assert torch.equal(p, q), n


def test_negative_view_parameter_gets_the_values():
    arrays = blocks(3, 4)
    gru = NumpyGRU(3, 4)
    z = torch.zeros(12, 4, dtype=torch.complex64)
    gru.weight_hh_l0 = nn.Parameter(z.conj().imag)
    assert gru.weight_hh_l0.is_neg()
    numpyrnn.load_numpy(gru, **arrays)
    want = NumpyGRU.from_numpy(**arrays)
    assert torch.equal(gru.weight_hh_l0.resolve_neg(), want.weight_hh_l0)
    assert np.array_equal(gru.to_numpy()["w0"], arrays["w0"])  # read back through the bit as well


def test_expanded_parameter_is_refused_like_copy_and_nothing_is_written():
    gru = NumpyGRU(3, 4)
    gru.weight_hh_l0 = nn.Parameter(torch.zeros(1, 4).expand(12, 4))
    before = {n: p.detach().clone() for n, p in gru.named_parameters()}
    with pytest.raises(RuntimeError, match="single memory location"):
        with torch.no_grad():
            gru.weight_hh_l0.copy_(torch.ones(12, 4))
    with pytest.raises(RuntimeError, match=r"weight_hh_l0: more than one element refers to a single memory"):
        numpyrnn.load_numpy(gru, **blocks(3, 4))
    for n, p in gru.named_parameters():
        assert torch.equal(p, before[n]), n


def test_inference_tensors_follow_inference_mode():
    with torch.inference_mode():
        gru = NumpyGRU(3, 4)
    assert gru.weight_hh_l0.is_inference()
    arrays = blocks(3, 4)
    with pytest.raises(RuntimeError, match="inference tensor"):
        numpyrnn.load_numpy(gru, **arrays)
    with torch.inference_mode():
        numpyrnn.load_numpy(gru, **arrays)
    assert torch.equal(gru.weight_hh_l0, NumpyGRU.from_numpy(**arrays).weight_hh_l0)


def test_structured_array_field_loads():
    arrays = blocks(3, 4)
    rec = np.zeros(arrays["w0"].shape, dtype=[("a", np.float32), ("pad", np.int8)])
    rec["a"] = arrays["w0"]
    w0 = rec["a"]
    assert any(s % w0.itemsize for s in w0.strides)
    got = numpyrnn.load_numpy(NumpyGRU(3, 4), w0, b0=arrays["b0"])
    assert np.array_equal(got.to_numpy()["w0"], arrays["w0"])


# --------------------------------------------------------------------------------------
# rounding: the same bits whichever path runs
# --------------------------------------------------------------------------------------

def _edge_values(n, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-9, 5, n)
    x[: n // 4] = 65504.0 + rng.uniform(-32, 15.99, n // 4)  # around float16's largest
    return x.astype(dtype)


@pytest.mark.parametrize("size", ["small", "threaded"])
@pytest.mark.parametrize("src", [np.float64, np.float32])
@pytest.mark.parametrize("dst", [torch.float16, torch.float32, torch.bfloat16])
def test_rounding_equals_copy_on_every_path(size, src, dst):
    I, H = (BIG["I"], BIG["H"]) if size == "threaded" else (5, 7)
    if size == "threaded" and dst == torch.bfloat16:
        pytest.skip("bfloat16 always goes through copy_")
    w0 = _edge_values(H * 3 * (I + H), 0, src).reshape(1, H, 3 * (I + H))
    exact = NumpyGRU.from_numpy(w0, dtype=torch.float64 if src == np.float64 else torch.float32)
    fresh = NumpyGRU.from_numpy(w0, dtype=dst)
    loaded = numpyrnn.load_numpy(NumpyGRU(I, H, bias=False, dtype=dst), w0)
    for name, p in exact.named_parameters():
        want = torch.empty(p.shape, dtype=dst)
        want.copy_(p)  # the cast copy_ does from the source's dtype
        assert torch.equal(getattr(fresh, name).view(torch.int16), want.view(torch.int16)), name
        assert torch.equal(getattr(loaded, name).view(torch.int16), want.view(torch.int16)), name


def test_float64_to_float16_rounds_as_torch_does():
    """torch rounds float64 -> float16 through float32: 65519.999 becomes Inf there, so it is refused."""
    w0 = np.full((1, 2, 3 * 4), 65519.0, dtype=np.float64)
    gru = NumpyGRU.from_numpy(w0, dtype=torch.float16)
    assert float(gru.weight_ih_l0.max()) == 65504.0
    w0[0, 1, 5] = 65519.999
    assert torch.isinf(torch.tensor([65519.999], dtype=torch.float64).to(torch.float16)).all()
    with pytest.raises(LayoutError, match=r"w0: holds 65519.999 at index \[0, 1, 5\], beyond the largest float16"):
        NumpyGRU.from_numpy(w0, dtype=torch.float16)


# --------------------------------------------------------------------------------------
# exactly the values that would become Inf are refused
# --------------------------------------------------------------------------------------

F32_MAX = float(np.finfo(np.float32).max)
EDGES = [
    # (source dtype, module dtype, the smallest source value that rounds to Inf, worked out by hand)
    (torch.float32, torch.float16, 65520.0),
    (torch.float64, torch.float16, 65520.0 - 2.0**-9),  # through float32: its half ulp below 65520
    (torch.float32, torch.bfloat16, (2 - 2.0**-8) * 2.0**127),
    (torch.float64, torch.float32, F32_MAX + 2.0**103),  # float32's largest plus half its ulp
    (torch.bfloat16, torch.float16, 65536.0),  # bfloat16 has nothing between 65280 and 65536
]


@pytest.mark.parametrize("src, dst, cut", EDGES, ids=lambda v: str(v).replace("torch.", ""))
def test_inf_threshold_is_exact(src, dst, cut):
    assert engine._inf_threshold(src, dst) == cut
    below = torch.nextafter(torch.tensor(cut, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
    below = below.to(src)
    if float(below) == cut:  # a narrow source: step down in its own dtype
        below = torch.tensor([cut], dtype=src).view(engine._BITS[below.element_size()]).sub_(1).view(src)[0]
    # torch's own (vectorised) copy_ agrees on both sides of the edge
    n = 4096
    out = torch.empty(n, dtype=dst)
    assert not torch.isinf(out.copy_(torch.full((n,), float(below), dtype=src))).any()
    assert torch.isinf(out.copy_(torch.full((n,), cut, dtype=src))).all()
    for value, refused in ((float(below), False), (cut, True), (-cut, True)):
        w0 = torch.full((1, 2, 3 * 4), 0.5, dtype=src)
        w0[0, 1, 3] = value
        if refused:
            with pytest.raises(LayoutError, match=rf"w0: holds {re.escape(repr(value))} at index \[0, 1, 3\], beyond the largest"):
                numpyrnn.load_numpy(NumpyGRU(2, 2, bias=False, dtype=dst), w0)
        else:
            gru = numpyrnn.load_numpy(NumpyGRU(2, 2, bias=False, dtype=dst), w0)
            assert torch.isfinite(gru.weight_hh_l0).all()


@pytest.mark.parametrize("value, dst, stored", [
    (65519.0, torch.float16, 65504.0),
    (3.39e38, torch.bfloat16, float(torch.tensor(3.39e38).to(torch.bfloat16))),
    (3.40282356e38, torch.float32, F32_MAX),
])
def test_values_that_round_down_are_accepted(value, dst, stored):
    w0 = np.full((1, 2, 3 * 4), value, dtype=np.float64)
    gru = NumpyGRU.from_numpy(w0, dtype=dst)
    assert float(gru.weight_hh_l0.max()) == stored


def test_range_check_uses_at_most_one_mask():
    """A 128 MiB float64 leaf with a NaN, or with a value out of float32's range: at most a few MiB extra."""
    code = """
        import resource, numpy as np, torch
        from numpyrnn import engine, LayoutError
        def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        n = 16 << 20  # 128 MiB of float64
        for case in ("nan", "big"):
            t = torch.ones(n, dtype=torch.float64).reshape(4, -1)
            t[3, -1] = float("nan") if case == "nan" else 1e300
            for _ in range(2):  # the second run is measured; the first warms up thresholds and kernels
                base = peak()
                try:
                    engine._check_range({"w0": t}, torch.float32)
                    engine.check_finite({"w0": t})
                except LayoutError:
                    pass
            print(case, (peak() - base) >> 20)
    """
    res = run_script(code, timeout=120)
    assert res.returncode == 0, res.stderr
    grown = dict(line.split() for line in res.stdout.split("\n") if line)
    # one boolean mask of the whole leaf would be 16 MiB; a copy 128 MiB
    assert all(int(v) <= 8 for v in grown.values()), grown


# --------------------------------------------------------------------------------------
# parametrizations and the old weight_norm hooks
# --------------------------------------------------------------------------------------

def _plain(arrays, I=3, H=4):
    return NumpyGRU.from_numpy(**arrays)


def test_weight_norm_parametrization_is_loaded_through_right_inverse():
    from torch.nn.utils.parametrizations import weight_norm

    arrays = blocks(3, 4)
    gru = weight_norm(NumpyGRU(3, 4), "weight_hh_l0")
    numpyrnn.load_numpy(gru, **arrays)
    want = _plain(arrays)
    torch.testing.assert_close(gru.weight_hh_l0, want.weight_hh_l0)
    assert torch.equal(gru.weight_ih_l0, want.weight_ih_l0)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(gru(x)[0], want(x)[0])
    # and back out: the computed weight
    np.testing.assert_allclose(gru.to_numpy()["w0"], arrays["w0"], rtol=1e-6, atol=1e-6)


def test_orthogonal_parametrization_loads_orthogonal_values_and_refuses_others():
    from torch.nn.utils.parametrizations import orthogonal

    rnn = orthogonal(numpyrnn.NumpyRNN(4, 4, bias=False), "weight_hh_l0")
    q = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))[0].float().numpy()
    w0 = np.concatenate([np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32), q], axis=1)[None]
    numpyrnn.load_numpy(rnn, w0)
    torch.testing.assert_close(rnn.weight_hh_l0, torch.from_numpy(q), rtol=1e-5, atol=1e-5)
    before = {n: p.detach().clone() for n, p in rnn.named_parameters()}
    bad = w0.copy()
    bad[0, :, 4:] *= 3.0  # no longer orthogonal
    with pytest.raises(LayoutError, match="weight_hh_l0: the parametrization _Orthogonal"):
        numpyrnn.load_numpy(rnn, bad)
    for n, p in rnn.named_parameters():
        assert torch.equal(p, before[n]), n


def test_parametrization_without_right_inverse_is_refused_by_name():
    from torch.nn.utils import parametrize

    class Doubled(nn.Module):
        def forward(self, x):
            return 2 * x

    gru = NumpyGRU(3, 4)
    parametrize.register_parametrization(gru, "weight_hh_l0", Doubled())
    before = {n: p.detach().clone() for n, p in gru.named_parameters()}
    with pytest.raises(LayoutError, match="weight_hh_l0 is computed by the parametrization Doubled, which has no right_inverse"):
        numpyrnn.load_numpy(gru, **blocks(3, 4))
    for n, p in gru.named_parameters():
        assert torch.equal(p, before[n]), n


def test_spectral_norm_parametrization_is_refused_and_nothing_changes():
    from torch.nn.utils.parametrizations import spectral_norm

    gru = spectral_norm(NumpyGRU(3, 4), "weight_hh_l0")
    gru.eval()
    before = {n: p.detach().clone() for n, p in gru.named_parameters()}
    with pytest.raises(LayoutError, match="weight_hh_l0: the parametrization _SpectralNorm is not invertible"):
        numpyrnn.load_numpy(gru, **blocks(3, 4, seed=3))
    for n, p in gru.named_parameters():
        assert torch.equal(p, before[n]), n


def test_old_weight_norm_hook_is_loaded_into_g_and_v():
    from torch.nn.utils import weight_norm

    arrays = blocks(3, 4)
    with pytest.warns(FutureWarning):
        gru = weight_norm(NumpyGRU(3, 4), "weight_hh_l0")
    numpyrnn.load_numpy(gru, **arrays)
    want = _plain(arrays)
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(gru(x)[0], want(x)[0])  # the hook recomputes the weight from g and v
    torch.testing.assert_close(gru.weight_hh_l0, want.weight_hh_l0)
    np.testing.assert_allclose(gru.to_numpy()["w0"], arrays["w0"], rtol=1e-6, atol=1e-6)


def test_old_spectral_norm_hook_is_refused():
    from torch.nn.utils import spectral_norm

    gru = spectral_norm(NumpyGRU(3, 4), "weight_hh_l0")
    with pytest.raises(LayoutError, match="weight_hh_l0 is computed by torch.nn.utils.spectral_norm's hook"):
        numpyrnn.load_numpy(gru, **blocks(3, 4))


# --------------------------------------------------------------------------------------
# concurrency, fork, atexit
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("threads", [2, 8])
def test_concurrent_loads_leave_exactly_one_input(threads):
    I, H = 64, 64
    gru = NumpyGRU(I, H, num_layers=2)
    inputs = [dict(w0=np.full((1, H, 3 * (I + H)), k, np.float32), w=np.full((1, 1, H, 3 * 2 * H), k, np.float32),
                   b0=np.full((1, H, 6), k, np.float32), b=np.full((1, 1, H, 6), k, np.float32))
              for k in range(1, threads + 1)]
    for _ in range(10):
        start = threading.Barrier(threads)

        def go(arrays, start=start):
            start.wait()
            for _ in range(3):
                numpyrnn.load_numpy(gru, **arrays)

        workers = [threading.Thread(target=go, args=(a,)) for a in inputs]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        values = {float(v) for p in gru.parameters() for v in p.detach().unique()}
        assert len(values) == 1, values


FORK_SCRIPT = """
    import multiprocessing as mp, numpy as np, torch, numpyrnn
    torch.set_num_threads(2)
    I = H = 1200
    w0 = np.random.default_rng(0).standard_normal((1, H, 3 * (I + H))).astype(np.float32)

    def child(_):
        # checked with numpy: torch's own multithreaded kernels hang in a forked child
        gru = numpyrnn.NumpyGRU.from_numpy(w0)
        numpyrnn.load_numpy(gru, w0 * 2)
        return bool(np.array_equal(gru.to_numpy()["w0"], w0 * 2))

    gru = numpyrnn.NumpyGRU.from_numpy(w0)  # the parent used its threads before forking
    numpyrnn.load_numpy(gru, w0)
    assert np.array_equal(gru.to_numpy()["w0"], w0)  # an export through torch's threads
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        assert pool.map(child, range(2)) == [True, True]
    # a DataLoader worker_init_fn that asks for two threads
    with ctx.Pool(2, initializer=torch.set_num_threads, initargs=(2,)) as pool:
        assert pool.map(child, range(2)) == [True, True]
    assert torch.get_num_threads() == 2
    print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_load_large_modules():
    res = run_script(FORK_SCRIPT, timeout=240)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_large_load_and_export_in_an_atexit_hook():
    code = """
        import atexit, numpy as np, torch, numpyrnn
        torch.set_num_threads(2)
        I = H = 1200
        w0 = np.random.default_rng(0).standard_normal((1, H, 3 * (I + H))).astype(np.float32)
        gru = numpyrnn.NumpyGRU.from_numpy(w0)

        @atexit.register
        def save():
            numpyrnn.load_numpy(gru, w0 * 2)
            out = gru.to_numpy()["w0"]
            assert np.array_equal(out, w0 * 2)
            print("saved")
    """
    res = run_script(code, timeout=240)
    assert res.returncode == 0 and res.stdout.strip() == "saved", res.stderr[-2000:]


# --------------------------------------------------------------------------------------
# modules numpyrnn cannot write, and smaller argument checks
# --------------------------------------------------------------------------------------

def test_meta_module_load_is_refused_and_meta_build_has_shapes():
    meta = NumpyGRU(3, 4, device="meta")
    with pytest.raises(TypeError, match="meta device"):
        numpyrnn.load_numpy(meta, **blocks(3, 4))
    with pytest.raises(TypeError, match="meta device"):
        meta.to_numpy()
    arrays = blocks(3, 4)
    built = NumpyGRU.from_numpy(**arrays, device="meta")
    assert built.weight_ih_l0.is_meta
    ref = NumpyGRU.from_numpy(**arrays)
    assert {n: p.shape for n, p in built.named_parameters()} == {n: p.shape for n, p in ref.named_parameters()}
    arrays["w0"][0, 1, 2] = np.nan  # values are still checked
    with pytest.raises(LayoutError, match=r"w0: holds nan at index \[0, 1, 2\]"):
        NumpyGRU.from_numpy(**arrays, device="meta")


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_float8_tensors_are_refused_with_type_error(dtype):
    w0 = torch.zeros(1, 4, 21).to(getattr(torch, dtype))
    with pytest.raises(TypeError, match=rf"w0: dtype torch.{dtype} is not one numpyrnn reads"):
        NumpyGRU.from_numpy(w0)
    with pytest.raises(TypeError, match=rf"w0: dtype torch.{dtype}"):
        numpyrnn.load_numpy(NumpyGRU(3, 4, bias=False), w0)


def test_dtype_by_name():
    arrays = blocks(3, 4)
    for name in ("float64", "torch.float64", "double"):
        assert NumpyGRU.from_numpy(**arrays, dtype=name).weight_hh_l0.dtype == torch.float64
    with pytest.raises(TypeError, match="dtype='float33' names no torch dtype"):
        NumpyGRU.from_numpy(**arrays, dtype="float33")
    with pytest.raises(TypeError, match="dtype must be a torch.dtype"):
        NumpyGRU.from_numpy(**arrays, dtype=np.float32)
    with pytest.raises(TypeError, match="floating torch dtype"):
        NumpyGRU.from_numpy(**arrays, dtype="int32")


def test_bias_must_be_bool_or_none():
    with pytest.raises(TypeError, match="bias must be True, False or None, got str 'x'"):
        NumpyGRU.from_numpy(**blocks(3, 4), bias="x")


def test_compiled_module_message_names_orig_mod():
    compiled = torch.compile(NumpyLSTM(3, 4))
    with pytest.raises(TypeError, match="_orig_mod"):
        numpyrnn.load_numpy(compiled, np.zeros((1, 4, 28), np.float32))
    with pytest.raises(TypeError, match="_orig_mod"):
        numpyrnn.to_numpy(compiled)


def test_fsdp2_sharded_module_is_refused_with_what_to_do():
    pytest.importorskip("torch.distributed")
    if not torch.distributed.is_available():
        pytest.skip("torch without distributed")
    code = """
        import tempfile, numpy as np, torch, torch.distributed as dist
        dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        import numpyrnn
        gru = numpyrnn.NumpyGRU(3, 4)
        fully_shard(gru, mesh=init_device_mesh("cpu", (1,)))
        for call in (lambda: numpyrnn.load_numpy(gru, np.zeros((1, 4, 21), np.float32), b0=np.zeros((1, 4, 6), np.float32)),
                     gru.to_numpy):
            try:
                call()
            except TypeError as exc:
                print(exc)
        dist.destroy_process_group()
    """
    res = run_script(code, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.strip().split("\n")
    assert len(lines) == 2 and all("DTensor" in line and "before calling fully_shard" in line for line in lines), lines
