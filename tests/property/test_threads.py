"""What docs/safety.md promises about threads, tested.

* Loads into different modules from different threads are exact and independent,
  also when they read the same source arrays and when the arrays are read-only
  (the path that takes numpyrnn's warning-filter lock).
* No warning leaks, and the lock is never left held.
* A refused load writes nothing, so a forward running beside it is undisturbed.
* Loading into a fresh module and swapping the reference (or holding one lock
  around loads and forwards) gives readers the old or the new weights, never a mix.
* An unguarded load beside a forward on the same module does not crash and ends
  with the new weights exactly; what that forward computes is unspecified.
"""

from __future__ import annotations

import copy
import threading
import warnings

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, engine, load_numpy
from numpyrnn.spec import RNNSpec

from .cases import BLOCK, assert_state_identical, state_bits
from .strategies import Config, block_arrays

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")

JOIN_TIMEOUT = 120.0

CONFIGS = [
    Config(RNNSpec("GRU", 3, 4, 2, True, True), "zrn", False, np.dtype(np.float32), 11),
    Config(RNNSpec("LSTM", 2, 5, 3, True, True, 3), None, True, np.dtype(np.float64), 12),
    Config(RNNSpec("RNN_TANH", 4, 3, 1, False, False), None, False, np.dtype(np.float32), 13),
    Config(RNNSpec("LSTM", 3, 4, 2, False, True), "fgio", False, np.dtype(np.float32), 14),
]


def _run_threads(targets) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported to the main thread
                errors.append(exc)
        return run

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a thread did not finish: deadlock?"
    return errors


def _readonly(arrays):
    out = {}
    for k, v in arrays.items():
        if v is not None:
            v = v.copy()
            v.flags.writeable = False
        out[k] = v
    return out


def test_concurrent_loads_into_different_modules_are_exact_and_silent():
    sources = [(cfg, block_arrays(cfg, special=True), block_arrays(Config(cfg.spec, cfg.gates, cfg.rowwise,
                                                                          cfg.dtype, cfg.seed + 100)))
               for cfg in CONFIGS]
    expected = [(state_bits(BLOCK.from_source(c, a)), state_bits(BLOCK.from_source(c, b))) for c, a, b in sources]
    modules = [cfg.torch_module() for cfg, _, _ in sources]
    results: dict[int, list] = {i: [] for i in range(len(modules))}

    def worker(i):
        cfg, a, b = sources[i]
        module = modules[i]
        bad = dict(a, w0=np.full_like(a["w0"], np.nan))

        def run():
            for k in range(30):
                src = (a, b)[k % 2]
                load_numpy(module, **(_readonly(src) if k % 3 else src), **cfg.options())
                results[i].append(state_bits(module))
                with pytest.raises(LayoutError, match=r"^w0: holds nan at index \[0, 0, 0\]"):
                    load_numpy(module, **bad, **cfg.options())
        return run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        errors = _run_threads([worker(i) for i in range(len(modules))])
    assert not errors, errors
    assert [str(w.message) for w in caught] == []
    for i, states in results.items():
        assert len(states) == 30
        for k, got in enumerate(states):
            assert_state_identical(got, expected[i][k % 2])
    assert engine._warn_lock.acquire(timeout=1)
    engine._warn_lock.release()


def test_many_threads_read_one_source_into_their_own_modules():
    cfg = CONFIGS[1]
    shared = _readonly(block_arrays(cfg))
    want = state_bits(BLOCK.from_source(cfg, shared))
    built: list = []

    def worker():
        for _ in range(10):
            built.append(BLOCK.from_source(cfg, shared))

    errors = _run_threads([worker] * 6)
    assert not errors, errors
    assert len(built) == 60
    for module in built:
        assert_state_identical(state_bits(module), want)


def test_warning_filter_lock_is_released_when_torch_refuses_an_array():
    arr = np.array([object()] * 3)
    arr.flags.writeable = False
    with pytest.raises(TypeError):
        engine._as_tensor(arr)  # torch.from_numpy fails inside the lock
    assert engine._warn_lock.acquire(timeout=1), "lock left held"
    engine._warn_lock.release()
    # and the filter that silenced torch's read-only warning is gone again
    assert not any("not writable" in str(f[1].pattern if f[1] else "") for f in warnings.filters)


def _forward(module, x):
    with torch.no_grad():
        return module(x)[0]


def _two_weight_sets(cfg):
    a = block_arrays(cfg)
    b = block_arrays(Config(cfg.spec, cfg.gates, cfg.rowwise, cfg.dtype, cfg.seed + 1))
    return a, b


def test_refused_loads_do_not_disturb_a_concurrent_forward():
    cfg = CONFIGS[0]
    a, _ = _two_weight_sets(cfg)
    module = BLOCK.from_source(cfg, a)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32))
    y0 = _forward(module, x)
    bad = dict(a, b=a["b"].copy())
    bad["b"][0, 1, 3, 5] = np.inf  # only the last array is bad
    stop = threading.Event()
    mismatches: list = []

    def reader():
        while not stop.is_set():
            if not torch.equal(_forward(module, x), y0):
                mismatches.append(1)

    def writer():
        try:
            for _ in range(200):
                with pytest.raises(LayoutError, match=r"^b: holds inf at index \[0, 1, 3, 5\]"):
                    load_numpy(module, **bad, gates=cfg.gates)
        finally:
            stop.set()

    errors = _run_threads([reader, writer])
    assert not errors, errors
    assert mismatches == []


@pytest.mark.parametrize("pattern", ["swap", "lock"])
def test_readers_see_old_or_new_weights_with_swap_or_lock(pattern):
    cfg = CONFIGS[3]
    a, b = _two_weight_sets(cfg)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32))
    template = BLOCK.from_source(cfg, a)
    outputs = [_forward(BLOCK.from_source(cfg, s), x) for s in (a, b)]
    assert not torch.equal(outputs[0], outputs[1])
    holder = {"module": template}
    lock = threading.Lock()
    stop = threading.Event()
    seen = {0: 0, 1: 0, "mixed": 0}

    def reader():
        while not stop.is_set():
            if pattern == "lock":
                with lock:
                    y = _forward(holder["module"], x)
            else:
                y = _forward(holder["module"], x)  # one reference read: the old module or the new one
            which = next((i for i, o in enumerate(outputs) if torch.equal(y, o)), "mixed")
            seen[which] += 1

    def writer():
        try:
            for k in range(60):
                src = (a, b)[(k + 1) % 2]
                if pattern == "lock":
                    with lock:
                        load_numpy(holder["module"], **src, gates=cfg.gates)
                else:
                    fresh = copy.deepcopy(template)
                    load_numpy(fresh, **src, gates=cfg.gates)
                    holder["module"] = fresh
        finally:
            stop.set()

    errors = _run_threads([reader, reader, writer])
    assert not errors, errors
    assert seen["mixed"] == 0, seen
    assert seen[0] + seen[1] > 0


def test_unguarded_load_beside_forward_does_not_crash_and_ends_exact():
    cfg = CONFIGS[1]
    a, b = _two_weight_sets(cfg)
    module = BLOCK.from_source(cfg, a)
    want_b = state_bits(BLOCK.from_source(cfg, b))
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((4, 2, 2)))
    stop = threading.Event()
    count = [0]

    def reader():
        while not stop.is_set():
            y = _forward(module, x)
            assert y.shape == (4, 2, 2 * 3) and torch.isfinite(y).all()
            count[0] += 1

    def writer():
        try:
            for k in range(80):
                load_numpy(module, **(a, b)[k % 2], gates=cfg.gates, rowwise=cfg.rowwise)
        finally:
            stop.set()

    errors = _run_threads([reader, writer])
    assert not errors, errors
    assert count[0] > 0
    assert_state_identical(state_bits(module), want_b)
