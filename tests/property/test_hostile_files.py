"""Generated HDF5 files of every storage kind, link type and filter chain; zip members of every ratio."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given

from .hostile import check_h5_case, check_zip_case, h5_cases, zip_cases
from .profiles import budget

pytest.importorskip("h5py", reason="the keras extra (h5py)")


@budget("hostile_h5_storage", 80)
@given(case=h5_cases())
@example(case=dict(kind="external", var=0, seed=0, archive=False, filters="none", level=0, chunk_rows=1))
@example(case=dict(kind="virtual", var=2, seed=0, archive=True, filters="none", level=0, chunk_rows=1))
@example(case=dict(kind="sparse", var=0, seed=0, archive=False, filters="none", level=1, chunk_rows=1,
                   rows=1 << 14, written=0, floor=1 << 16, ratio=100.0))  # declares 786432 bytes, stores none
@example(case=dict(kind="sparse", var=0, seed=0, archive=False, filters="none", level=9, chunk_rows=1,
                   rows=1 << 14, written=8, floor=0, ratio=1000.0))  # within the ratio: rows, then zeros
def test_h5_inside_data_reads_exactly_and_data_elsewhere_is_refused(case):
    with tempfile.TemporaryDirectory() as d:
        check_h5_case(case, Path(d))


@budget("hostile_zip_ratio", 80)
@given(case=zip_cases())
@example(case=dict(container="npz", size=1 << 21, random=0.0, level=9, floor=0, ratio=100.0, seed=0))
@example(case=dict(container="keras", size=1 << 21, random=1.0, level=1, floor=0, ratio=1.0, seed=0))
def test_zip_members_are_refused_exactly_when_beyond_the_limits(case):
    with tempfile.TemporaryDirectory() as d:
        check_zip_case(case, Path(d))
