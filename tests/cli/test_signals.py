"""SIGTERM, SIGHUP and SIGINT during a real ``numpyrnn convert``: one line, no temporary file, no partial output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import ROOT

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")

SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A 200 MB block-layout GRU (input 2048, hidden 2048, bidirectional)."""
    path = tmp_path_factory.mktemp("big") / "w.npz"
    w0 = np.random.default_rng(0).standard_normal((2, 2048, 3 * 4096), dtype=np.float32)
    np.savez(path, w0=w0)
    return path


def _convert(src: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "numpyrnn", "convert", str(src), "-o", str(out), "--cell", "gru"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _has_open(pid: int, path: Path) -> bool:
    try:
        links = [os.readlink(p) for p in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:
        return False
    return str(path) in links


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.part"))


def _check_interrupted(proc: subprocess.Popen, sig: int, out: Path, old: bytes | None) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    err = err.strip()
    assert "Traceback" not in err and "enforce fail" not in err, err
    assert not _parts(out.parent), _parts(out.parent)
    if proc.returncode == 0:  # finished before the signal: a complete output
        assert set(torch.load(out, weights_only=True)) >= {"weight_ih_l0", "weight_hh_l0_reverse"}
        return 0, err
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"numpyrnn: interrupted by {signal.Signals(sig).name}; "), err
    if "written completely" not in err:
        assert "no output was written or replaced" in err, err
        if old is None:
            assert not out.exists()
        else:
            assert out.read_bytes() == old  # the existing output keeps its content
    return proc.returncode, err


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_during_the_write_removes_the_temporary_file(tmp_path, big, sig):
    out = tmp_path / "out.pt"
    out.write_bytes(b"previous output")
    caught_mid_write = False
    for _ in range(3):
        proc = _convert(big, out)
        deadline = time.monotonic() + 240
        seen = False
        while proc.poll() is None and time.monotonic() < deadline:
            parts = _parts(tmp_path)
            if parts and parts[0].stat().st_size > 1 << 20:  # torch is writing the output
                seen = True
                proc.send_signal(sig)
                break
            time.sleep(0.002)
        code, err = _check_interrupted(proc, sig, out, b"previous output")
        if seen and code == 128 + sig and "no output was written" in err:
            caught_mid_write = True
            break
        out.write_bytes(b"previous output")
    assert caught_mid_write, "the signal never landed during the write"


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="watches /proc to know the command is reading")
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_signal_before_the_write_is_one_line(tmp_path, big, sig):
    out = tmp_path / "out.pt"
    proc = _convert(big, out)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline and not _has_open(proc.pid, big):
        time.sleep(0.002)
    assert proc.poll() is None, "the command ended before it read its input"
    proc.send_signal(sig)  # the command is reading its input
    code, err = _check_interrupted(proc, sig, out, None)
    assert code == 128 + sig, err


_SELF_SIGNAL = """
import os, signal, sys, torch
from numpyrnn import files

sig = getattr(signal, sys.argv[2])

class Killer:  # a file that receives the signal in the middle of torch.save
    def __init__(self, tmp):
        self.f, self.n = open(tmp, "wb"), 0
    def write(self, data):
        self.n += 1
        if self.n == 3:
            os.kill(os.getpid(), sig)
        return self.f.write(data)
    def flush(self):
        self.f.flush()

def write(tmp):
    k = Killer(tmp)
    torch.save({"w": torch.ones(1 << 20)}, k)
    k.f.close()

files.atomic_write(sys.argv[1], write)
print("NOT INTERRUPTED")
"""


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_library_atomic_write_interrupted_inside_torch_save(tmp_path, sig):
    """The signal lands inside torch's C++ writer; what comes out is the interruption, not torch's error."""
    out = tmp_path / "o.pt"
    proc = subprocess.run([sys.executable, "-c", _SELF_SIGNAL, str(out), signal.Signals(sig).name],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert "NOT INTERRUPTED" not in proc.stdout
    assert not out.exists() and not _parts(tmp_path), list(tmp_path.iterdir())
    assert "enforce fail" not in proc.stderr, proc.stderr
    if sig == signal.SIGINT:  # KeyboardInterrupt, as Python's own SIGINT handling gives
        assert proc.returncode == -signal.SIGINT and proc.stderr.strip().endswith("KeyboardInterrupt"), proc.stderr
    else:  # a quiet exit with the status a shell reports for the signal
        assert proc.returncode == 128 + sig and not proc.stderr.strip(), (proc.returncode, proc.stderr)


_OWN_HANDLER = """
import os, signal, sys
from numpyrnn import files

class Mine(Exception):
    pass

def handler(signum, frame):
    raise Mine("the application's own handler")

signal.signal(signal.SIGTERM, handler)

def write(tmp):
    with open(tmp, "wb") as f:
        f.write(b"x" * 1000)
        os.kill(os.getpid(), signal.SIGTERM)
        f.write(b"y")

try:
    files.atomic_write(sys.argv[1], write)
except Mine as exc:
    print("CAUGHT", exc)
"""


def test_an_applications_own_handler_is_left_alone(tmp_path):
    out = tmp_path / "o.bin"
    proc = subprocess.run([sys.executable, "-c", _OWN_HANDLER, str(out)], capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert proc.stdout.strip() == "CAUGHT the application's own handler", proc.stdout + proc.stderr
    assert not out.exists() and not _parts(tmp_path)


def test_sigkill_leaves_a_recognisable_part_file_and_the_old_output(tmp_path, big):
    """What safety.md says SIGKILL leaves: a hidden ``.<output>.<random>.part`` next to the untouched output."""
    out = tmp_path / "out.pt"
    out.write_bytes(b"previous output")
    for _ in range(3):
        proc = _convert(big, out)
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            parts = _parts(tmp_path)
            if parts and parts[0].stat().st_size > 1 << 20:
                proc.kill()
                break
            time.sleep(0.002)
        proc.communicate(timeout=300)
        if proc.returncode == -signal.SIGKILL:
            break
    assert proc.returncode == -signal.SIGKILL
    parts = _parts(tmp_path)
    assert len(parts) == 1 and parts[0].name.startswith(".out.pt.") and parts[0].name.endswith(".part"), parts
    assert out.read_bytes() == b"previous output"


_STREAMED_SIGNAL = """
import os, signal, sys
from numpyrnn import cli, streaming

sig = getattr(signal, sys.argv[1])
emit = streaming._Maker._emit
made = [0]

def emit_then_signal(self, *args, **kwargs):  # the signal lands while the writer thread writes a chunk
    made[0] += 1
    if made[0] == 5:
        os.kill(os.getpid(), sig)
    return emit(self, *args, **kwargs)

streaming._Maker._emit = emit_then_signal
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: signal.Signals(s).name)
def test_signal_while_parameters_are_made_into_the_file(tmp_path, big, sig):
    """convert to .safetensors from block arrays writes on a thread of its own while the main thread
    makes the next chunk: a signal still removes the temporary file and leaves the old output."""
    pytest.importorskip("safetensors", reason="the files extra")
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"previous output")
    proc = subprocess.Popen([sys.executable, "-c", _STREAMED_SIGNAL, signal.Signals(sig).name, "convert", str(big),
                             "-o", str(out), "--cell", "gru"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    _, err = proc.communicate(timeout=300)
    err = err.strip()
    assert proc.returncode == 128 + sig, err
    assert len(err.splitlines()) == 1 and "no output was written or replaced" in err, err
    assert out.read_bytes() == b"previous output"
    assert not _parts(tmp_path)
