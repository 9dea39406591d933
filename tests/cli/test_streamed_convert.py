"""``numpyrnn convert`` of block arrays to .safetensors writes the parameters straight into the file
(numpyrnn.streaming): the same file, the same refusals, the same messages as building the module first."""

from __future__ import annotations

import numpy as np
import pytest

from numpyrnn import cli

from .conftest import run_cli

pytest.importorskip("safetensors", reason="the files extra")


def _arrays(G: int, I: int, H: int, L: int = 2, D: int = 2, dtype=np.float32, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {"w0": rng.standard_normal((D, H, G * (I + H))), "b0": rng.standard_normal((D, H, 2 * G))}
    if L > 1:
        out["w"] = rng.standard_normal((L - 1, D, H, G * (D * H + H)))
        out["b"] = rng.standard_normal((L - 1, D, H, 2 * G))
    return {k: v.astype(dtype) for k, v in out.items()}


def _built(monkeypatch, *args) -> int:
    """``numpyrnn ARGS`` in this process with streaming turned off: the module is built, then written."""
    with monkeypatch.context() as m:
        m.setattr(cli, "_STREAMED", ())
        return cli.main([str(a) for a in args])


CASES = [
    ("gru", {}, ()),
    ("lstm", {}, ("--batch-first",)),
    ("rnn", {}, ("--nonlinearity", "relu")),
    ("gru", {"dtype": np.float64}, ()),
    ("gru", {"dtype": np.float64}, ("--dtype", "float16")),
    ("lstm", {}, ("--dtype", "bfloat16")),
    ("gru", {}, ("--gates", "zrn")),
    ("gru", {"L": 1, "D": 1}, ("--rowwise",)),
    ("lstm", {"L": 3, "D": 1}, ("--dtype", "float64")),
]


@pytest.mark.parametrize("cell,shape,options", CASES, ids=lambda v: str(v))
def test_the_file_is_byte_for_byte_what_building_writes(tmp_path, monkeypatch, cell, shape, options, capsys):
    G = {"gru": 3, "lstm": 4, "rnn": 1}[cell]
    np.savez(tmp_path / "w.npz", **_arrays(G, 9, 13, **shape))
    args = ("convert", tmp_path / "w.npz", "--cell", cell, *options)
    assert _built(monkeypatch, *args, "-o", tmp_path / "built.safetensors") == 0
    built_out = capsys.readouterr().out
    proc = run_cli(*args, "-o", tmp_path / "streamed.safetensors")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "streamed.safetensors").read_bytes() == (tmp_path / "built.safetensors").read_bytes()
    # the summary reads the same but for the path and the time
    strip = lambda text: text.split(":", 1)[1].rsplit(",", 1)[0]  # noqa: E731
    assert strip(proc.stdout) == strip(built_out)


def test_a_folder_of_npy_files_and_a_large_module(tmp_path, monkeypatch):
    """A few MB: every parameter is made in several chunks, through both buffers."""
    folder = tmp_path / "blocks"
    folder.mkdir()
    for k, v in _arrays(3, 160, 192).items():
        np.save(folder / f"{k}.npy", v)
    assert _built(monkeypatch, "convert", folder, "--cell", "gru", "-o", tmp_path / "built.safetensors") == 0
    assert run_cli("convert", folder, "--cell", "gru", "-o", tmp_path / "streamed.safetensors").returncode == 0
    assert (tmp_path / "streamed.safetensors").read_bytes() == (tmp_path / "built.safetensors").read_bytes()


@pytest.mark.parametrize("bad", ["nan", "inf", "overflow"])
def test_a_bad_value_is_refused_as_before_and_nothing_is_written(tmp_path, bad):
    arrays = _arrays(3, 40, 48, dtype=np.float64 if bad == "overflow" else np.float32)
    arrays["w"][0, 1, 5, 7] = {"nan": np.nan, "inf": -np.inf, "overflow": 1e300}[bad]
    np.savez(tmp_path / "w.npz", **arrays)
    old = b"the previous output"
    for name in ("o.safetensors", "o.pt"):
        (tmp_path / name).write_bytes(old)
    cast = ("--dtype", "float32") if bad == "overflow" else ()
    streamed = run_cli("convert", tmp_path / "w.npz", "--cell", "gru", *cast, "-o", tmp_path / "o.safetensors")
    built = run_cli("convert", tmp_path / "w.npz", "--cell", "gru", *cast, "-o", tmp_path / "o.pt")  # never streamed
    assert streamed.returncode == built.returncode != 0
    assert streamed.stderr == built.stderr and "w: holds" in streamed.stderr, (streamed.stderr, built.stderr)
    assert len(streamed.stderr.strip().splitlines()) == 1
    assert (tmp_path / "o.safetensors").read_bytes() == old
    assert not list(tmp_path.glob(".*.part"))


def test_convert_verify_builds_the_modules(tmp_path):
    """--verify runs the modules before anything is written: they are built, not deferred."""
    pytest.importorskip("torch")
    np.savez(tmp_path / "w.npz", **_arrays(3, 5, 6))
    proc = run_cli("convert", tmp_path / "w.npz", "--cell", "gru", "-o", tmp_path / "o.safetensors", "--verify")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o.safetensors").exists()
