"""The small-module paths (numpy views replayed from cached plans) give what the general path gives.

Small CPU modules loaded from, and exported to, plain numpy arrays go through
views that a module keeps between calls. These tests change what such a module
holds between calls (its parameters, their memory, their geometry, hooks) and
feed it what the general path treats specially (aliased, bad or wide values),
and check the result against torch's own ``copy_`` and the general path's errors.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, NumpyRNN, engine


def blocks(I, H, *, G=3, D=1, L=1, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    out = dict(w0=(0.3 * rng.standard_normal((D, H, G * (I + H)))).astype(dtype),
               b0=(0.3 * rng.standard_normal((D, H, 2 * G))).astype(dtype))
    if L > 1:
        out["w"] = (0.3 * rng.standard_normal((L - 1, D, H, G * (D * H + H)))).astype(dtype)
        out["b"] = (0.3 * rng.standard_normal((L - 1, D, H, 2 * G))).astype(dtype)
    return out


def general(module, arrays, **kw):
    """What the general path writes: a module loaded with the fast paths switched off."""
    saved = engine._FAST_BYTES
    engine._FAST_BYTES = 0
    try:
        return numpyrnn.load_numpy(module, **arrays, **kw)
    finally:
        engine._FAST_BYTES = saved


def same(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture(params=["numpy copies", "torch copies"])
def export_copies(request, monkeypatch):
    """Both ways the fast load and export paths copy: numpy's ``copyto``, and (larger modules, idle
    CPUs) torch's ``copy_`` over its threads, here at every size."""
    if request.param == "torch copies":
        monkeypatch.setattr(engine, "_TORCH_COPY_BYTES", 0)
        monkeypatch.setattr(engine, "_spare_cpus", lambda wanted: 64)  # as on an idle machine
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        yield request.param
        torch.set_num_threads(threads)
    else:
        yield request.param


@pytest.mark.parametrize("cls,G", [(NumpyGRU, 3), (NumpyLSTM, 4), (NumpyRNN, 1)])
@pytest.mark.parametrize("gates", [None, "reverse"])
def test_fast_paths_equal_the_general_path(cls, G, gates, export_copies):
    arrays = blocks(5, 4, G=G, D=2, L=3)
    letters = {3: "rzn", 4: "ifgo", 1: "h"}[G]
    order = letters[::-1] if gates == "reverse" and G > 1 else None
    fast = cls.from_numpy(**arrays, gates=order)
    ref = general(cls(5, 4, num_layers=3, bidirectional=True), arrays, gates=order)
    same(fast, ref)
    again = blocks(5, 4, G=G, D=2, L=3, seed=1)
    fast.load_numpy(**again, gates=order)
    same(fast, general(ref, again, gates=order))
    out = fast.to_numpy(gates=order)
    for k, v in again.items():
        assert np.array_equal(out[k], v), k
    out["w0"][...] = 0  # fresh arrays, never the stage or the parameters
    assert np.array_equal(fast.to_numpy(gates=order)["w0"], again["w0"])


def test_replaced_parameters_are_seen(export_copies):
    arrays = blocks(3, 4)
    gru = NumpyGRU.from_numpy(**arrays)
    gru.load_numpy(**arrays)  # the module's views are made
    gru.weight_ih_l0 = nn.Parameter(torch.zeros_like(gru.weight_ih_l0))
    new = blocks(3, 4, seed=2)
    gru.load_numpy(**new)
    assert np.array_equal(gru.to_numpy()["w0"], new["w0"])
    with torch.no_grad():
        gru.weight_hh_l0.data = torch.ones_like(gru.weight_hh_l0)  # same Parameter, new memory
    gru.load_numpy(**arrays)
    assert np.array_equal(gru.to_numpy()["w0"], arrays["w0"])
    ref = NumpyGRU(3, 4)
    general(ref, arrays)
    same(gru, ref)


def test_transposed_square_parameter_is_seen(export_copies):
    """RNN's weight_hh is square: its memory can stay where it is while its strides change."""
    arrays = blocks(4, 4, G=1)
    rnn = NumpyRNN.from_numpy(**arrays)
    rnn.load_numpy(**arrays)
    rnn.weight_hh_l0.data = rnn.weight_hh_l0.data.t()
    new = blocks(4, 4, G=1, seed=3)
    rnn.load_numpy(**new)
    ref = general(NumpyRNN(4, 4), new)
    assert torch.equal(rnn.weight_hh_l0, ref.weight_hh_l0)
    assert np.array_equal(rnn.to_numpy()["w0"], new["w0"])


@pytest.mark.parametrize("how", ["slice", "another"])
def test_a_parameter_reshaped_after_the_build_is_refused_by_name(how, export_copies):
    """Its memory may start where it did (a slice) or not; either way the layout cannot place its
    values: loads and exports raise LayoutError naming it, and nothing is written."""
    arrays = blocks(3, 4)
    gru = NumpyGRU.from_numpy(**arrays)
    gru.load_numpy(**arrays)  # the module's views are made
    with torch.no_grad():
        if how == "slice":
            gru.weight_ih_l0.data = gru.weight_ih_l0.data[:6]
        else:
            gru.weight_ih_l0.data = torch.zeros(12, 5)
    before = {k: v.clone() for k, v in gru.state_dict().items()}
    got = "(6, 3)" if how == "slice" else "(12, 5)"
    pattern = re.escape(f"weight_ih_l0: the module's parameter has shape {got}, but GRU(input=3, hidden=4,")
    for call in (lambda: gru.load_numpy(**blocks(3, 4, seed=2)), gru.to_numpy,
                 lambda: numpyrnn.to_numpy(gru, rowwise=True)):
        with pytest.raises(LayoutError, match=pattern + r".* has \(12, 3\): it was changed after"):
            call()
    for k, v in gru.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_leaf_that_is_a_view_of_a_parameter(export_copies):
    """A leaf sharing memory with parameters is read as it was before the load, as the general path does."""
    for stage in (True, False):
        gru = NumpyGRU.from_numpy(**blocks(3, 3))
        gru.load_numpy(**blocks(3, 3))
        flat = torch.zeros(2 * 3 * 3)
        gru.bias_ih_l0 = nn.Parameter(flat[:9])
        gru.bias_hh_l0 = nn.Parameter(flat[9:])
        leaf = flat.numpy().reshape(1, 3, 6)  # b0 in the memory of both biases
        leaf[...] = np.arange(18, dtype=np.float32).reshape(1, 3, 6)
        expected = leaf.copy()
        w0 = gru.to_numpy()["w0"]
        saved = engine._STAGE_BYTES
        engine._STAGE_BYTES = saved if stage else 0
        try:
            numpyrnn.load_numpy(gru, w0=w0, b0=leaf)
        finally:
            engine._STAGE_BYTES = saved
        check = general(NumpyGRU(3, 3), dict(w0=w0, b0=expected))
        assert torch.equal(gru.bias_ih_l0, check.bias_ih_l0)
        assert torch.equal(gru.bias_hh_l0, check.bias_hh_l0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["w0", "b0"])
def test_bad_values_raise_as_before_and_write_nothing(bad, where, export_copies):
    arrays = blocks(3, 4)
    gru = NumpyGRU.from_numpy(**arrays)
    gru.load_numpy(**arrays)
    before = {k: v.clone() for k, v in gru.state_dict().items()}
    broken = {k: v.copy() for k, v in arrays.items()}
    broken[where][0, 1, 2] = bad
    with pytest.raises(LayoutError, match=rf"{where}: holds {bad} at index \[0, 1, 2\]"):
        gru.load_numpy(**broken)
    for k, v in gru.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(LayoutError, match=rf"{where}: holds {bad} at index \[0, 1, 2\]"):
        NumpyGRU.from_numpy(**broken)


def test_float64_beyond_float32_raises_as_before():
    arrays = blocks(3, 4, dtype=np.float64)
    gru = NumpyGRU.from_numpy(**arrays)
    arrays["w0"][0, 2, 1] = 1e39
    with pytest.raises(LayoutError, match=r"w0: holds 1e\+39 at index \[0, 2, 1\], beyond the largest float32"):
        gru.load_numpy(**arrays)
    with pytest.raises(LayoutError, match="beyond the largest float32"):
        NumpyGRU.from_numpy(**arrays)


@pytest.mark.parametrize("src", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("dst", [torch.float16, torch.float32, torch.float64])
def test_casts_round_like_copy(src, dst, export_copies):
    rng = np.random.default_rng(5)
    arrays = {k: (v * 1000 + rng.standard_normal(v.shape) * 1e-3).astype(src) for k, v in blocks(3, 4).items()}
    gru = NumpyGRU.from_numpy(**arrays, dtype=dst)
    ref = NumpyGRU(3, 4, dtype=dst)
    general(ref, arrays)
    same(gru, ref)
    gru.load_numpy(**arrays)
    same(gru, ref)
    w = torch.from_numpy(arrays["w0"][0, :, :9].reshape(4, 3, 3).transpose(1, 0, 2).reshape(12, 3).copy())
    assert torch.equal(gru.weight_ih_l0, torch.empty(12, 3, dtype=dst).copy_(w))


def test_versions_bump_and_backward_refuses(export_copies):
    arrays = blocks(3, 4)
    gru = NumpyGRU.from_numpy(**arrays)
    gru.load_numpy(**arrays)
    versions = {n: p._version for n, p in gru.named_parameters()}
    out, _ = gru(torch.randn(2, 1, 3))
    gru.load_numpy(**arrays)
    assert all(p._version > versions[n] for n, p in gru.named_parameters())
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_hooks_and_parametrizations_take_the_general_path(export_copies):
    arrays = blocks(3, 4)
    gru = NumpyGRU.from_numpy(**arrays)
    gru.load_numpy(**arrays)
    torch.nn.utils.parametrize.register_parametrization(gru, "weight_hh_l0", _Double())
    new = blocks(3, 4, seed=4)
    gru.load_numpy(**new)
    assert np.allclose(gru.to_numpy()["w0"], new["w0"])
    w = torch.from_numpy(new["w0"][0, :, 9:].reshape(4, 3, 4).transpose(1, 0, 2).reshape(12, 4).copy())
    assert torch.allclose(gru.weight_hh_l0, w)


class _Double(nn.Module):
    def forward(self, x):
        return 2 * x

    def right_inverse(self, x):
        return x / 2


def test_concurrent_loads_and_exports_of_tiny_modules(export_copies):
    """Threads sharing one plan's stage: each result is one of the inputs, whole."""
    inputs = [blocks(3, 4, seed=s) for s in range(4)]
    mods = [NumpyGRU.from_numpy(**inputs[0]) for _ in range(4)]
    errors: list[BaseException] = []

    def work(i):
        try:
            for r in range(200):
                a = inputs[(i + r) % 4]
                mods[i].load_numpy(**a)
                out = mods[i].to_numpy()
                assert any(all(np.array_equal(out[k], x[k]) for k in x) for x in inputs)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_inference_tensors_and_mode(export_copies):
    arrays = blocks(3, 4)
    with torch.inference_mode():
        gru = NumpyGRU.from_numpy(**arrays)
    with pytest.raises(RuntimeError, match="inference tensor"):
        gru.load_numpy(**arrays)
    with torch.inference_mode():
        gru.load_numpy(**arrays)
    assert np.array_equal(gru.to_numpy()["w0"], arrays["w0"])


def test_non_contiguous_and_foreign_leaves_take_the_general_path(export_copies):
    arrays = blocks(3, 4)
    gru = NumpyGRU.from_numpy(**arrays)
    wide = np.zeros((1, 4, 2 * 21), np.float32)
    wide[..., ::2] = arrays["w0"]
    gru.load_numpy(w0=wide[..., ::2], b0=torch.from_numpy(arrays["b0"]))
    assert np.array_equal(gru.to_numpy()["w0"], arrays["w0"])
    with pytest.raises(LayoutError, match=r"w0 \(block layout\)"):
        gru.load_numpy(w0=arrays["w0"][:, :3], b0=arrays["b0"])


def test_plain_small_modules_take_the_fast_paths(monkeypatch):
    """Builds, loads and exports of small plain modules never reach the general path's planning."""
    arrays = blocks(3, 4, D=2, L=2)
    NumpyGRU.from_numpy(**arrays).load_numpy(**arrays).to_numpy()  # plans made

    def refuse(*args, **kwargs):
        raise AssertionError("general path taken")

    monkeypatch.setattr(engine, "_load", refuse)
    monkeypatch.setattr(engine, "_planned", refuse)
    gru = NumpyGRU.from_numpy(**arrays)
    gru.load_numpy(**arrays)
    out = gru.to_numpy()
    for k, v in arrays.items():
        assert np.array_equal(out[k], v), k
    plain = nn.GRU(3, 4, num_layers=2, bidirectional=True)  # any plain nn.GRU: planned without _planned
    other = blocks(3, 4, D=2, L=2, seed=7)
    numpyrnn.load_numpy(plain, **other)
    assert np.array_equal(numpyrnn.to_numpy(plain)["b"], other["b"])
    big = blocks(40, 64, D=2, L=2)  # above the stage's size: views made per call
    monkeypatch.undo()
    NumpyGRU.from_numpy(**big).load_numpy(**big).to_numpy()
    monkeypatch.setattr(engine, "_load", refuse)
    monkeypatch.setattr(engine, "_planned", refuse)
    m = NumpyGRU.from_numpy(**big)
    m.load_numpy(**big)
    assert np.array_equal(m.to_numpy()["w"], big["w"])


@pytest.mark.parametrize("cls,G", [(NumpyGRU, 3), (NumpyLSTM, 4), (NumpyRNN, 1)])
@pytest.mark.parametrize("rowwise", [False, True])
@pytest.mark.parametrize("spare", [64, 0])
def test_export_through_torch_equals_the_general_export(cls, G, rowwise, spare, monkeypatch):
    """A module above the torch-copy threshold exports exactly what the general path exports,
    through torch's threads where the CPUs are free and on the calling thread where they are not."""
    H = {3: 224, 4: 200, 1: 384}[G]  # each above engine._TORCH_COPY_BYTES
    arrays = blocks(H, H, G=G, D=2, L=2)
    assert sum(a.nbytes for a in arrays.values()) >= engine._TORCH_COPY_BYTES
    asked = []
    monkeypatch.setattr(engine, "_spare_cpus", lambda wanted: asked.append(wanted) or spare)
    m = cls.from_numpy(**arrays, rowwise=rowwise)
    versions = [p._version for p in m.parameters()]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fast = m.to_numpy(rowwise=rowwise)
    finally:
        torch.set_num_threads(threads)
    assert asked == [2]
    assert [p._version for p in m.parameters()] == versions  # reading bumps nothing
    monkeypatch.setattr(engine, "_fast_export", lambda *args: None)
    slow = m.to_numpy(rowwise=rowwise)
    for k, v in arrays.items():
        assert fast[k].flags.owndata and fast[k].flags.c_contiguous, k
        assert np.array_equal(fast[k], v), k
        assert np.array_equal(slow[k], v), k
    params = [p.detach().numpy() for p in m.parameters()]
    assert not any(np.shares_memory(fast[k], p) for k in arrays for p in params)


def test_exports_above_the_load_threshold_take_the_fast_path(monkeypatch):
    """Exports of plain CPU modules never reach the general path's planning, however large."""
    gru = nn.GRU(600, 600, num_layers=2, bidirectional=True)
    assert sum(p.numel() * p.element_size() for p in gru.parameters()) >= engine._FAST_BYTES
    numpyrnn.to_numpy(gru)  # plans made

    def refuse(*args, **kwargs):
        raise AssertionError("general path taken")

    monkeypatch.setattr(engine, "_planned", refuse)
    out = numpyrnn.to_numpy(gru)
    w = out["w"][0, 1]  # layer 1, backward direction: (H, G*(2H + H)) rows of [ih gates | hh gates]
    expected_ih = gru.weight_ih_l1_reverse.detach().numpy().reshape(3, 600, 1200).transpose(1, 0, 2)
    assert np.array_equal(w[:, :3 * 1200].reshape(600, 3, 1200), expected_ih)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_spare_cpus_reads_the_running_tasks():
    cpus = len(os.sched_getaffinity(0))
    for wanted in (1, cpus + 1):  # the quick reading, and the one that counts this process's threads
        for spare in (engine._read_spare_cpus(wanted), engine._spare_cpus(wanted)):
            assert isinstance(spare, int) and 0 <= spare <= cpus


def test_spare_cpus_without_proc(monkeypatch):
    """Where /proc cannot be read, no CPU counts as free: exports stay on the calling thread."""
    monkeypatch.setattr(engine, "_cpu_watch", None)

    def no_proc(*args, **kwargs):
        raise FileNotFoundError("/proc/loadavg")

    monkeypatch.setattr(engine.os, "open", no_proc)
    monkeypatch.setattr(engine, "_spare_seen", (-math.inf, 0, 0))  # no earlier reading to reuse
    assert engine._spare_cpus(2) == 0
    assert engine._cpu_watch is False
    assert engine._read_spare_cpus(2) == 0


def test_a_reading_of_spare_cpus_answers_again_for_a_short_while(monkeypatch):
    """Readings are reused for _SPARE_TTL seconds where they decide the question asked: one that
    showed as many CPUs free as were wanted, or a full one (fewer free than wanted), but not a
    quick one for a larger question."""
    clock = [100.0]
    readings: list[int] = []
    free = [2]

    def read(wanted):
        readings.append(wanted)
        return free[0]

    monkeypatch.setattr(engine, "_monotonic", lambda: clock[0])
    monkeypatch.setattr(engine, "_read_spare_cpus", read)
    monkeypatch.setattr(engine, "_spare_seen", (-math.inf, 0, 0))
    assert engine._spare_cpus(2) == 2 and readings == [2]
    free[0] = 0  # the machine turns busy: seen once the reading is old
    clock[0] += engine._SPARE_TTL / 2
    assert engine._spare_cpus(2) == 2 and engine._spare_cpus(1) == 2 and readings == [2]
    assert engine._spare_cpus(3) == 0 and readings == [2, 3]  # 2 free said nothing about 3
    clock[0] += engine._SPARE_TTL / 2
    assert engine._spare_cpus(1) == 0 and readings == [2, 3]  # the full reading: 0 of 3 free
    clock[0] += engine._SPARE_TTL
    free[0] = 2
    assert engine._spare_cpus(2) == 2 and readings == [2, 3, 2]


@pytest.mark.parametrize("cls,G", [(NumpyGRU, 3), (NumpyLSTM, 4), (NumpyRNN, 1)])
def test_load_through_torch_equals_the_general_load(cls, G, monkeypatch):
    """A load above the torch-copy threshold, CPUs idle: torch checks and copies, with the general
    path's result and version bumps, and refusals that write nothing."""
    H = {3: 224, 4: 200, 1: 384}[G]
    m = cls.from_numpy(**blocks(H, H, G=G, D=2, L=2, seed=9))
    m.load_numpy(**blocks(H, H, G=G, D=2, L=2))  # plans made
    used = []
    real = engine._torch_load
    monkeypatch.setattr(engine, "_torch_load", lambda *a: used.append(1) or real(*a))
    monkeypatch.setattr(engine, "_spare_cpus", lambda wanted: 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        again = blocks(H, H, G=G, D=2, L=2, seed=1)
        versions = [p._version for p in m.parameters()]
        m.load_numpy(**again)
        assert used and all(p._version > v for p, v in zip(m.parameters(), versions))
        same(m, general(cls(H, H, num_layers=2, bidirectional=True), again))
        before = {k: v.clone() for k, v in m.state_dict().items()}
        again["w"][0, 1, 2, 3] = np.nan
        with pytest.raises(LayoutError, match=r"w: holds nan at index \[0, 1, 2, 3\]"):
            m.load_numpy(**again)
        for k, v in m.state_dict().items():
            assert torch.equal(v, before[k]), k
        frozen = blocks(H, H, G=G, D=2, L=2, seed=3)
        for a in frozen.values():
            a.setflags(write=False)
        used.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch's "not writable" warning included
            m.load_numpy(**frozen)
        assert used
        same(m, general(cls(H, H, num_layers=2, bidirectional=True), frozen))
        wide = {k: v.astype(np.float64) for k, v in blocks(H, H, G=G, D=2, L=2, seed=2).items()}
        used.clear()
        m.load_numpy(**wide)  # another dtype than the parameters': numpy's casts, as copy_'s
        assert not used
        same(m, general(cls(H, H, num_layers=2, bidirectional=True), wide))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("leaf,at,bad", [("b0", (1, 5, 2), np.inf), ("w0", (0, 7, 11), -np.inf),
                                         ("w", (0, 1, 3, 4), np.nan)])
def test_the_torch_load_checks_every_leaf_of_every_dtype(dtype, leaf, at, bad, monkeypatch):
    """Each way the torch load checks a leaf (a tiny one in numpy, a float32/float64 one by its
    sum, a float16 one by its extremes) refuses a NaN or Inf by index and writes nothing; a sum
    that overflows from finite values is no refusal."""
    H = 240  # above engine._TORCH_COPY_BYTES in float16 too
    ref = blocks(H, H, D=2, L=2, seed=4, dtype=dtype)
    m = NumpyGRU.from_numpy(**ref, dtype=torch.from_numpy(ref["w0"]).dtype)
    assert engine._TORCH_COPY_BYTES <= sum(a.nbytes for a in ref.values())
    assert ref["b0"].size <= engine._TINY < ref["w0"].size
    used = []
    real = engine._torch_load
    monkeypatch.setattr(engine, "_torch_load", lambda *a: used.append(real(*a)) or used[-1])
    monkeypatch.setattr(engine, "_spare_cpus", lambda wanted: 64)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        again = blocks(H, H, D=2, L=2, seed=5, dtype=dtype)
        m.load_numpy(**again)
        assert used == [True]
        same(m, general(NumpyGRU(H, H, num_layers=2, bidirectional=True, dtype=m.weight_ih_l0.dtype), again))
        before = {k: v.clone() for k, v in m.state_dict().items()}
        again[leaf][at] = bad
        word = "nan" if np.isnan(bad) else "inf" if bad > 0 else "-inf"
        with pytest.raises(LayoutError, match=rf"{leaf}: holds {word} at index \[{', '.join(map(str, at))}\]"):
            m.load_numpy(**again)
        assert used[-1] is False  # the torch load found it, the general path named it
        for k, v in m.state_dict().items():
            assert torch.equal(v, before[k]), k
        huge = blocks(H, H, D=2, L=2, seed=6, dtype=dtype)
        huge["w"][...] = np.finfo(dtype).max / 2 * np.sign(huge["w"])  # finite; its sum overflows
        huge["w"][huge["w"] == 0] = 1
        m.load_numpy(**huge)
        assert np.array_equal(m.to_numpy()["w"], huge["w"])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("spare", [64, 0])
def test_loads_above_the_small_limit_go_through_torch_or_the_general_path(spare, monkeypatch):
    """Above _FAST_BYTES, a load of leaves in the parameters' dtype takes the torch steps while the
    CPUs are idle, and the general path (not numpy's single thread) while they are not: results,
    version bumps and refusals as the general path's."""
    H = 160
    m = NumpyLSTM.from_numpy(**blocks(H, H, G=4, D=2, L=2, seed=9))
    nbytes = sum(p.numel() * p.element_size() for p in m.parameters())
    monkeypatch.setattr(engine, "_FAST_BYTES", nbytes // 2)  # this module is "large"
    assert engine._TORCH_COPY_BYTES < nbytes < engine._TORCH_LOAD_BYTES
    used, general_loads = [], []
    real_torch, real_load = engine._torch_load, engine._load
    monkeypatch.setattr(engine, "_torch_load", lambda *a: used.append(1) or real_torch(*a))
    monkeypatch.setattr(engine, "_load", lambda *a, **k: general_loads.append(1) or real_load(*a, **k))
    monkeypatch.setattr(engine, "_spare_cpus", lambda wanted: spare)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        again = blocks(H, H, G=4, D=2, L=2, seed=1)
        versions = [p._version for p in m.parameters()]
        m.load_numpy(**again)
        assert bool(used) == bool(spare) and bool(general_loads) == (not spare)
        assert all(p._version > v for p, v in zip(m.parameters(), versions))
        same(m, general(NumpyLSTM(H, H, num_layers=2, bidirectional=True), again))
        before = {k: v.clone() for k, v in m.state_dict().items()}
        again["w0"][1, 2, 3] = -np.inf
        with pytest.raises(LayoutError, match=r"w0: holds -inf at index \[1, 2, 3\]"):
            m.load_numpy(**again)
        for k, v in m.state_dict().items():
            assert torch.equal(v, before[k]), k
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_spare_cpus_from_many_threads_and_after_fork():
    cpus = len(os.sched_getaffinity(0))
    results: list[int] = []
    errors: list[BaseException] = []

    def ask():
        try:
            for _ in range(200):
                results.append(engine._read_spare_cpus(cpus + 1))  # always the full reading, with refreshes
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 800 and all(r <= cpus for r in results)
    assert engine._cpu_watch not in (None, False)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reads its own /proc/self, not the parent's files
        ok = engine._cpu_watch is None and engine._spare_cpus(cpus + 1) <= cpus and engine._cpu_watch is not None
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    os.close(read)
