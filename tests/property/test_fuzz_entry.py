"""The fuzz entry point runs for the time it is given and reports what it finds."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "fuzz" / "fuzz_numpyrnn.py"


def _load():
    spec = importlib.util.spec_from_file_location("fuzz_numpyrnn", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


def test_fuzz_runs_a_fixed_set_of_cases_without_findings():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    args = ["--seconds", "120", "--rounds", "2", "--seed", "1", "--chunk", "25"]  # the same cases every run
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("no findings in 2 rounds (build: 50, damage: 50, h5: 50, load: 50, zip: 50 examples; "
                                  "layouts: block"), \
        proc.stdout


def test_fuzz_reports_a_finding_with_exit_status_1(capsys):
    fuzz = _load()

    @fuzz.target("planted", st.integers(0, 100))
    def check(n):
        if n > 50:
            raise fuzz.Finding(f"planted finding at {n}")

    assert fuzz.run(5.0, ["planted"], seed_value=3, chunk=50) == 1
    err = capsys.readouterr().err
    assert "planted finding at 51" in err  # shrunk to the smallest failing input
    assert "FINDING in target 'planted'" in err


def test_fuzz_check_flags_an_escaping_exception_and_a_changed_module():
    fuzz = _load()
    from numpyrnn.spec import RNNSpec

    from .cases import BLOCK
    from .strategies import Config, block_arrays

    cfg = Config(RNNSpec("GRU", 2, 3), None, False, np.dtype(np.float32), 0)
    source = block_arrays(cfg)

    def explode(module, cfg, source):
        raise IndexError("boom")

    def half_write(module, cfg, source):
        module.weight_ih_l0.data.zero_()
        raise TypeError("refused after writing")

    for load, message in ((explode, "IndexError escaped: boom"), (half_write, "a refused load changed the module")):
        case = dataclasses.replace(BLOCK, load_source=load)
        try:
            fuzz.check_load((case, cfg, source, cfg.options()))
        except fuzz.Finding as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{load.__name__} was not flagged")
    fuzz.check_load((BLOCK, cfg, source, cfg.options()))  # the real one is clean
