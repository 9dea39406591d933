"""Shared fixtures: random block-layout arrays for any configuration."""

from __future__ import annotations

import os
import re

# Keras picks its backend when it is first imported: the tests run it on torch, whatever the shell says.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from numpyrnn.spec import RNNSpec  # noqa: E402

from .extras import install_hint  # noqa: E402

_MISSING = re.compile(r"could not import '(?P<module>[\w.]+)'")


def _name_the_extra(report) -> None:
    """A skip for a missing package (``pytest.importorskip``) also says which extra installs it."""
    if report.skipped and isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        path, line, reason = report.longrepr
        m = _MISSING.search(reason)
        if m and "pip install" not in reason:
            report.longrepr = (path, line, f"{reason} ({install_hint(m.group('module'))})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _name_the_extra(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _name_the_extra(outcome.get_result())

GATES = {"GRU": 3, "LSTM": 4, "RNN_TANH": 1, "RNN_RELU": 1}

# Keep the CPU tests on the two cores the machine has, and deterministic.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def make_blocks(spec: RNNSpec, *, dtype=np.float32, seed: int = 0, scale: float = 0.4, bias: bool | None = None):
    """Random block-layout arrays (w0, w, b0, b, proj) for ``spec``; ``None`` where absent."""
    rng = np.random.default_rng(seed)
    G, D, H, R, L = spec.gates, spec.directions, spec.hidden_size, spec.rec, spec.num_layers

    def r(*shape):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    bias = spec.bias if bias is None else bias
    return dict(
        w0=r(D, H, G * (spec.input_size + R)),
        w=r(L - 1, D, H, G * (D * R + R)) if L > 1 else None,
        b0=r(D, H, 2 * G) if bias else None,
        b=r(L - 1, D, H, 2 * G) if bias and L > 1 else None,
        proj=r(L, D, spec.proj_size, H) if spec.proj_size else None,
    )


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A deep copy of a module's state_dict, for bit-identical comparisons."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_state_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} changed"

# On Ampere and newer GPUs cuDNN runs float32 RNNs in TF32 by default, which differs from the
# CPU by ~1e-3. The tests compare weights through outputs, so they turn TF32 off (the legacy
# flags set cuDNN's conv and RNN settings together, which torch.export requires).
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def pytest_collection_modifyitems(config, items):
    """Tests in ``tests/known_gaps.py`` run as expected failures, each with the gap it shows."""
    from .known_gaps import gap

    for item in items:
        why = gap(item.nodeid)
        if why:
            item.add_marker(pytest.mark.xfail(reason=f"known gap: {why}", strict=False))
