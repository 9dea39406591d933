"""Tests that do not pass yet, each with the gap it shows.

They still run (marked ``xfail``, not strict), so the suite reports them as
expected failures and says at once when one starts passing. Each entry names
what is missing; the CHANGELOG's "Known gaps" section lists the same.
"""

from __future__ import annotations

GAPS: dict[str, str] = {}


def gap(nodeid: str) -> str | None:
    """The gap a test shows, by its node id (a parametrised test by its name alone too)."""
    return GAPS.get(nodeid) or GAPS.get(nodeid.split("[", 1)[0])
