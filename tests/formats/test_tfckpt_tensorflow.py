"""TensorFlow checkpoints written now by the installed TensorFlow, read without it.

Runs the committed fixture script into a temporary directory (in a subprocess:
TensorFlow stays out of the test process), then checks every case against the
outputs TensorFlow computed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .tfckpt_cases import CASES, check_case

pytest.importorskip("tensorflow", reason="tensorflow is not installed: pip install numpyrnn[tf-era]")
pytest.importorskip("tf_keras", reason="tf_keras is not installed: pip install numpyrnn[tf-era]")

SCRIPT = Path(__file__).resolve().parent.parent / "data" / "make_tf_checkpoints.py"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("tf")
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, env=env, capture_output=True, timeout=600)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_fresh_checkpoint_matches_tensorflow(written, case):
    check_case(written, case)
