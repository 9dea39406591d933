"""The ``ci`` profile's promise: at least 2,000 generated cases per run."""

from __future__ import annotations

import importlib

from .profiles import CI_BUDGET, SCALE

MODULES = ("test_roundtrip", "test_corruption", "test_awkward")


def test_ci_profile_generates_at_least_2000_cases():
    for name in MODULES:  # their decorators record each property's budget
        importlib.import_module(f"{__package__}.{name}")
    assert len(CI_BUDGET) >= 12, sorted(CI_BUDGET)
    assert sum(CI_BUDGET.values()) >= 2000, CI_BUDGET
    assert SCALE["deep"] > SCALE["ci"] > SCALE["dev"]
