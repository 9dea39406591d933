"""Damaged weight files through the command line: truncated, bytes flipped, wrong suffix.

The command's contract for any file: exit 0 with a complete output, or exit 1 with a
one-line message and no output file. Never a traceback, another exit code, or a
partial file. A truncated file or a misnamed one is always refused; a flipped byte
may land in the values and still describe valid weights.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from numpyrnn import NumpyGRU, cli
from numpyrnn.spec import RNNSpec

from ..extras import install_hint
from .profiles import budget

SPEC = RNNSpec("GRU", 3, 4, num_layers=2, bidirectional=True, bias=True)


def _valid_files(folder: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    module = NumpyGRU(**SPEC.module_kwargs())
    blocks = module.to_numpy()
    files = {}
    files["npz"] = folder / "w.npz"
    np.savez(files["npz"], **{k: v for k, v in blocks.items() if v is not None})
    files["pt"] = folder / "w.pt"
    torch.save(module.state_dict(), files["pt"])
    files["onnx"] = folder / "w.onnx"
    if cli.main(["export", str(files["pt"]), "-o", str(files["onnx"]), "--cell", "gru", "--to", "onnx"]) != 0:
        del files["onnx"]
    try:
        from safetensors.torch import save_file
    except ImportError:
        pass
    else:
        files["safetensors"] = folder / "w.safetensors"
        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(files["safetensors"]))
    return files


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    with contextlib.redirect_stdout(io.StringIO()):
        return _valid_files(tmp_path_factory.mktemp("valid"))


def _command(kind: str, src: Path, out: Path) -> list[str]:
    if kind in ("pt", "safetensors"):
        return ["export", str(src), "-o", str(out), "--cell", "gru", "--to", "blocks"]
    return ["convert", str(src), "-o", str(out), "--cell", "gru"]


def _output_name(kind: str) -> str:
    return "out.npz" if kind in ("pt", "safetensors") else "out.pt"


def _run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
    return code, err.getvalue()


@st.composite
def damage(draw, data: bytes):
    kind = draw(st.sampled_from(["truncate", "flip", "flip_header"]))
    if kind == "truncate":
        n = draw(st.integers(0, len(data) - 1))
        return kind, data[:n]
    if kind == "flip_header":  # the first bytes hold magic numbers, headers and lengths
        at = draw(st.integers(0, min(len(data), 128) - 1))
    else:
        at = draw(st.integers(0, len(data) - 1))
    bit = draw(st.integers(0, 7))
    b = bytearray(data)
    b[at] ^= 1 << bit
    return kind, bytes(b)


KINDS = ["npz", "pt", "onnx", "safetensors"]
PACKAGE = {"npz": "numpy", "pt": "torch", "onnx": "onnx", "safetensors": "safetensors"}


@pytest.mark.parametrize("kind", KINDS)
@budget("cli_damaged_files", 150)
@given(data=st.data())
def test_damaged_file_gives_exit_1_and_no_output_or_a_complete_result(valid, kind, data):
    if kind not in valid:
        pytest.skip(f"writing {kind} files needs {PACKAGE[kind]}: {install_hint(PACKAGE[kind])}")
    raw = valid[kind].read_bytes()
    how, damaged = data.draw(damage(raw), label="damage")
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / valid[kind].name
        src.write_bytes(damaged)
        out = Path(d) / _output_name(kind)
        code, err = _run(_command(kind, src, out))
        assert code in (0, 1), f"{how}: exit {code}: {err}"
        if code == 1:
            assert not out.exists(), f"{how}: a failed run left {out.name}"
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert len(lines) == 1 and "error" in lines[0], f"{how}: not a one-line message: {err!r}"
            assert "Traceback" not in err
        else:
            assert how != "truncate", "a truncated file was accepted"
            assert out.exists() and out.stat().st_size > 0
        assert sorted(os.listdir(d)) in ([src.name], sorted([src.name, out.name])), os.listdir(d)


SUFFIXES = [".npz", ".pt", ".onnx", ".safetensors", ".msgpack", ".h5", ".npy"]


@pytest.mark.parametrize("kind", KINDS)
@budget("cli_wrong_suffix", 20)
@given(suffix=st.sampled_from(SUFFIXES))
def test_wrong_suffix_is_refused_cleanly(valid, kind, suffix):
    if kind not in valid:
        pytest.skip(f"writing {kind} files needs {PACKAGE[kind]}: {install_hint(PACKAGE[kind])}")
    if suffix == valid[kind].suffix:
        return
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / ("w" + suffix)
        src.write_bytes(valid[kind].read_bytes())
        out = Path(d) / "out.pt"
        argv = (["export", str(src), "-o", str(Path(d) / "out.npz"), "--cell", "gru", "--to", "blocks"]
                if suffix in (".pt", ".safetensors") else ["convert", str(src), "-o", str(out), "--cell", "gru"])
        code, err = _run(argv)
        assert code == 1, f"{kind} bytes named {suffix}: exit {code}: {err}"
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1 and "Traceback" not in err
        assert sorted(os.listdir(d)) == [src.name]
