"""PaddlePaddle files written now by the installed paddle, read without it (paddle runs in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .paddle_cases import CASES, check_case

if "tensorflow" in sys.modules:
    # paddlepaddle 3.3 crashes (SIGSEGV) when it is imported after TensorFlow 2.21 in one process
    pytest.skip("paddle cannot be imported after tensorflow in one process; run this file in a pytest of its own",
                allow_module_level=True)
pytest.importorskip("paddle", reason="paddlepaddle is not installed: pip install numpyrnn[tf-era]")

SCRIPT = Path(__file__).resolve().parent.parent / "data" / "make_paddle_params.py"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("paddle")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, str(SCRIPT), str(out)], check=True, env=env, capture_output=True, timeout=600)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_fresh_pdparams_match_paddle(written, case):
    check_case(written, case)
