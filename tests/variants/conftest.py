"""Fixtures shared by the variant tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def keras3():
    if os.environ.get("KERAS_BACKEND", "torch") != "torch":
        pytest.skip("these tests run Keras on its torch backend (KERAS_BACKEND=torch)")
    os.environ["KERAS_BACKEND"] = "torch"
    return pytest.importorskip("keras", reason="needs the interop extra (keras)")
