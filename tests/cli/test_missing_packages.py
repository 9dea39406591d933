"""Each file format whose package is missing says which extra installs it, in one LayoutError.

A package is made missing by a ``None`` entry in ``sys.modules``, which makes
``import`` raise ``ImportError`` exactly as an absent package does.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, files
from numpyrnn.cli import main

HINT = 'pip install "numpyrnn[files]"'


def _hide(monkeypatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


STATE = {"weight_ih_l0": torch.zeros(3, 2), "weight_hh_l0": torch.zeros(3, 1)}
CASES = {
    "read .safetensors": (("safetensors", "safetensors.torch"), "w.safetensors",
                          lambda p: files.read_state_dict(p)),
    "write .safetensors": (("safetensors", "safetensors.torch"), "w.safetensors",
                           lambda p: files.write_state_dict(p, STATE)),
    "read .keras": (("h5py",), "m.keras", lambda p: files.read_keras(p)),
    "read .weights.h5": (("h5py",), "m.weights.h5", lambda p: files.read_keras(p)),
    "read .onnx": (("onnx",), "m.onnx", lambda p: files.read_onnx(p)),
    "write .onnx": (("onnx",), "m.onnx", lambda p: files.write_onnx(
        p, [{"W": np.zeros((1, 3, 2), np.float32), "R": np.zeros((1, 3, 1), np.float32)}], mode="RNN_TANH")),
    "read .msgpack": (("msgpack",), "t.msgpack", lambda p: files.read_msgpack(p)),
    "write .msgpack": (("msgpack",), "t.msgpack", lambda p: files.write_msgpack(p, [{"a": np.zeros(2)}])),
}


@pytest.mark.parametrize("case", CASES)
def test_missing_package_names_the_extra(case, tmp_path, monkeypatch):
    modules, name, call = CASES[case]
    path = tmp_path / name
    path.write_bytes(b"whatever is in it: the package is needed first")
    before = sorted(tmp_path.iterdir())
    _hide(monkeypatch, *modules)
    with pytest.raises(LayoutError) as info:
        call(path)
    message = str(info.value)
    assert HINT in message and modules[0] in message, message
    assert sorted(tmp_path.iterdir()) == before  # nothing half-written


@pytest.mark.parametrize(("name", "module"), [("m.onnx", "onnx"), ("m.keras", "h5py"), ("t.msgpack", "msgpack")])
def test_command_line_says_how_to_install(name, module, tmp_path, monkeypatch, capsys):
    (tmp_path / name).write_bytes(b"not read: the package is needed first")
    _hide(monkeypatch, module)
    assert main(["inspect", str(tmp_path / name)]) == 1
    err = capsys.readouterr().err
    assert HINT in err and module in err and "Traceback" not in err, err


#: every file a format reads with an optional package: (name, the package)
NEEDS = [("m.onnx", "onnx"), ("m.keras", "h5py"), ("m.weights.h5", "h5py"), ("m.h5", "h5py"),
         ("t.msgpack", "msgpack"), ("w.safetensors", "safetensors")]


@pytest.mark.parametrize(("name", "module"), NEEDS)
def test_every_entry_point_names_the_extra(name, module, tmp_path, monkeypatch, capsys):
    """``load``, ``load_all``, ``read_model``, detection and every command that reads: one line naming the extra."""
    import numpyrnn
    from numpyrnn import formats

    path = tmp_path / name
    path.write_bytes(b"not read: the package is needed first")
    _hide(monkeypatch, module, *(("safetensors.torch",) if module == "safetensors" else ()))
    formats.detect_format(path)  # detection needs none of the optional packages
    for call in (numpyrnn.load_all, numpyrnn.load, numpyrnn.read_model):
        with pytest.raises(LayoutError) as info:
            call(path)
        text = str(info.value)
        assert text.startswith(f"{name}: ") and HINT in text and module in text and "\n" not in text, text
    for argv in (["inspect", str(path)], ["convert", str(path), "-o", str(tmp_path / "o.pt")]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and HINT in err and module in err and "Traceback" not in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written


def test_detection_imports_no_optional_package(tmp_path):
    import os
    import subprocess

    from .conftest import ROOT

    for name in ("m.onnx", "m.keras", "m.weights.h5", "t.msgpack", "w.safetensors", "w.npz", "w.pt"):
        (tmp_path / name).write_bytes(b"x")
    code = ("import sys\nfrom numpyrnn import formats\n"
            f"for p in sorted(__import__('pathlib').Path({str(tmp_path)!r}).iterdir()):\n"
            "    formats.detect_format(p)\n"
            "print(sorted(m for m in ('onnx', 'h5py', 'msgpack', 'safetensors', 'keras', 'jax') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
