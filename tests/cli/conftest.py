"""Helpers for the command-line tests: run the real ``numpyrnn`` command in a subprocess."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")

ROOT = Path(__file__).resolve().parents[2]


def command() -> list[str]:
    """The console script when it is installed, else ``python -m numpyrnn``."""
    exe = shutil.which("numpyrnn")
    return [exe] if exe else [sys.executable, "-m", "numpyrnn"]


def run_cli(*args: str, cwd: Path | None = None, module: bool = False) -> subprocess.CompletedProcess:
    """Run ``numpyrnn ARGS`` against this checkout's package; never raises on a non-zero exit."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("KERAS_BACKEND", "torch")
    cmd = [sys.executable, "-m", "numpyrnn"] if module else command()
    return subprocess.run([*cmd, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def needs_layout(name: str):
    """Skip unless ``numpyrnn/layouts/<name>.py`` exists in this checkout."""
    found = importlib.util.find_spec(f"numpyrnn.layouts.{name}") is not None
    return pytest.mark.skipif(not found, reason=f"numpyrnn.layouts.{name} is not in this checkout")
