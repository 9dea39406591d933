"""Hypothesis profiles for the property suite, selected with ``HYPOTHESIS_PROFILE``.

* ``dev`` (default when the variable is unset): a fifth of the CI budget, random
  seeds, the example database on, so a failure found locally is replayed first.
* ``ci``: the full budget (at least 2,000 generated cases in total),
  derandomized so that every CI run tries the same cases, no database.
* ``deep``: 25 times the CI budget with random seeds, for runs by hand.

Every test takes its example count from :func:`budget`, so the share of each
property stays the same across profiles.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: Examples per property in the ``ci`` profile; see :func:`budget`.
CI_BUDGET: dict[str, int] = {}
SCALE = {"dev": 0.2, "ci": 1.0, "deep": 25.0}

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=20, **_common)
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile("deep", max_examples=2500, print_blob=True, **_common)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")
if PROFILE not in SCALE:
    raise RuntimeError(f"HYPOTHESIS_PROFILE={PROFILE!r}: expected one of {sorted(SCALE)}")
settings.load_profile(PROFILE)


def budget(name: str, ci: int) -> settings:
    """Settings for one property: ``ci`` examples in CI, scaled for the other profiles."""
    CI_BUDGET[name] = ci
    return settings(max_examples=max(5, round(ci * SCALE[PROFILE])))
