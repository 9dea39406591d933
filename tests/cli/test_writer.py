"""``numpyrnn.files.write_safetensors``: numpyrnn's own ``.safetensors`` writer.

The files it writes must read back through the ``safetensors`` package exactly as
the package's own writer's files do: same tensors (dtype, shape, values), same
metadata, and ``numpyrnn.load`` rebuilds the converted modules exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, NumpyRNN, files
from numpyrnn.formats import native

from ..extras import needs

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def _state(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "weight": torch.randn(5, 3, generator=g).to(dtype),
        "bias": torch.randn(5, generator=g).to(dtype),
        "scalar": torch.tensor(2.5).to(dtype),
        "empty": torch.zeros(0, 4, dtype=dtype),
        "transposed": torch.randn(3, 4, generator=g).to(dtype).t(),  # not contiguous
    }


def _read_back(path) -> tuple[dict[str, torch.Tensor], dict | None]:
    safetensors = needs("safetensors")
    from safetensors.torch import load_file

    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        opened = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    loaded = load_file(str(path))
    assert opened.keys() == loaded.keys()
    for k in opened:
        assert opened[k].dtype == loaded[k].dtype and torch.equal(opened[k], loaded[k]), k
    return loaded, meta


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert tuple(a[k].shape) == tuple(b[k].shape), k
        assert torch.equal(a[k].cpu(), b[k].cpu()), k


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("metadata", [{"numpyrnn": '{"a": 1}', "other": "ünïcode"}, {}, None], ids=["meta", "empty", "none"])
def test_reads_back_as_safetensors_writes_it(tmp_path, dtype, metadata):
    needs("safetensors")
    from safetensors.torch import save_file

    state = _state(dtype)
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    n = files.write_safetensors(ours, state, metadata)
    assert n == ours.stat().st_size
    save_file({k: v.contiguous() for k, v in state.items()}, str(theirs), metadata=metadata)
    got, meta = _read_back(ours)
    want, want_meta = _read_back(theirs)
    _same(got, want)
    _same(got, state)
    assert (meta or {}) == (want_meta or {}) == (metadata or {})
    # the payload is the tensors' bytes, nothing else: header + data is the whole file
    head = int.from_bytes(ours.read_bytes()[:8], "little")
    assert head % 8 == 0
    assert n == 8 + head + sum(v.numel() * v.element_size() for v in state.values())


def test_other_dtypes_and_order(tmp_path):
    state = {"z": torch.arange(6, dtype=torch.int64).reshape(2, 3), "a": torch.tensor([True, False, True]),
             "m": torch.arange(4, dtype=torch.uint8), "i": torch.arange(-3, 3, dtype=torch.int8),
             "j": torch.arange(5, dtype=torch.int32), "k": torch.arange(5, dtype=torch.int16)}
    files.write_safetensors(tmp_path / "w.safetensors", state)
    got, _ = _read_back(tmp_path / "w.safetensors")
    _same(got, state)
    header = json.loads((tmp_path / "w.safetensors").read_bytes()[8:8 + int.from_bytes(
        (tmp_path / "w.safetensors").read_bytes()[:8], "little")])
    assert [k for k in header if k != "__metadata__"] == list(state)  # laid out in the given order
    assert "__metadata__" not in header


def test_large_tensor_goes_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_WRITE_CHUNK", 4096)  # many chunks over a small tensor
    state = {"w": torch.randn(1000, 37), "b": torch.randn(3)}
    files.write_safetensors(tmp_path / "w.safetensors", state, {"k": "v"})
    got, meta = _read_back(tmp_path / "w.safetensors")
    _same(got, state)
    assert meta == {"k": "v"}


@pytest.mark.parametrize(("state", "metadata", "match"), [
    ({"w": np.zeros(3, np.float32)}, None, "expected a torch.Tensor"),
    ({"w": torch.zeros(3, dtype=torch.complex64)}, None, "no dtype"),
    ({"__metadata__": torch.zeros(3)}, None, "__metadata__"),
    ({"w": torch.zeros(3)}, {"k": 1}, "str to str"),
], ids=["numpy", "complex", "reserved-name", "metadata"])
def test_refusals_leave_nothing(tmp_path, state, metadata, match):
    with pytest.raises(TypeError, match=match):
        files.write_safetensors(tmp_path / "w.safetensors", state, metadata)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_kept_on_refusal(tmp_path):
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"old")
    with pytest.raises(TypeError):
        files.write_safetensors(out, {"w": "not a tensor"})  # type: ignore[dict-item]
    assert out.read_bytes() == b"old" and list(tmp_path.iterdir()) == [out]


def test_missing_folder(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        files.write_safetensors(tmp_path / "no" / "w.safetensors", {"w": torch.zeros(2)})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_failed_write_leaves_no_output(tmp_path):
    """A write that fails half-way (a file size limit) removes the temporary file and says so."""
    script = (
        "import resource, signal, sys, torch\n"
        "from numpyrnn import files, LayoutError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
        "try:\n"
        "    files.write_safetensors(sys.argv[1], {'w': torch.zeros(100_000)})\n"
        "except LayoutError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    out = tmp_path / "w.safetensors"
    env = dict(os.environ, PYTHONPATH=str(os.path.dirname(os.path.dirname(numpyrnn.__file__))))
    r = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 3, r.stderr
    assert "cannot be written" in r.stdout and "nothing was written" in r.stdout
    assert list(tmp_path.iterdir()) == []


def _modules():
    g = torch.Generator().manual_seed(1)
    gru = NumpyGRU(input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    lstm = NumpyLSTM(input_size=4, hidden_size=5, proj_size=2)
    rnn = NumpyRNN(input_size=2, hidden_size=3, nonlinearity="relu", bias=False)
    with torch.no_grad():
        for m in (gru, lstm, rnn):
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
    return {"encoder": gru, "decoder": lstm, "head": rnn}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_several_modules_with_prefixes_rebuild_exactly(tmp_path, suffix):
    needs("safetensors")
    from numpyrnn.formats import config_of

    mods = _modules()
    configs = {k: config_of(m, source=k) for k, m in mods.items()}
    out = tmp_path / f"m{suffix}"
    n = native.write(out, mods, configs)
    assert n == out.stat().st_size
    if suffix == ".safetensors":
        got, meta = _read_back(out)
        want = {f"{k}.{p}": v for k, m in mods.items() for p, v in m.state_dict().items()}
        _same(got, want)
        rec = json.loads(meta[native.META_KEY])
        assert [(m["name"], m["prefix"]) for m in rec["modules"]] == [(k, f"{k}.") for k in mods]
    loaded = numpyrnn.load_all(out)
    assert list(loaded) == list(mods)
    for k, m in mods.items():
        assert type(loaded[k]) is type(m)
        _same(loaded[k].state_dict(), m.state_dict())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_one_module_every_float_dtype(tmp_path, dtype):
    needs("safetensors")
    from numpyrnn.formats import config_of

    m = NumpyGRU(input_size=3, hidden_size=4, bidirectional=True).to(dtype)
    out = tmp_path / "m.safetensors"
    native.write(out, {"gru": m}, {"gru": config_of(m, source="gru")})
    got, _ = _read_back(out)
    _same(got, m.state_dict())
    back = numpyrnn.load(out)
    assert next(back.parameters()).dtype == dtype
    _same(back.state_dict(), m.state_dict())


def test_convert_command_output_reads_back(tmp_path):
    needs("safetensors")
    from .conftest import run_cli

    w0 = np.random.default_rng(0).standard_normal((2, 4, 18)).astype(np.float32)
    np.savez(tmp_path / "w.npz", w0=w0)
    r = run_cli("convert", str(tmp_path / "w.npz"), "-o", str(tmp_path / "w.safetensors"), "--cell", "gru")
    assert r.returncode == 0, r.stderr
    want = NumpyGRU.from_numpy(w0)
    got, meta = _read_back(tmp_path / "w.safetensors")
    _same(got, want.state_dict())
    assert json.loads(meta[native.META_KEY])["modules"][0]["config"]["cell"] == "gru"
    _same(numpyrnn.load(tmp_path / "w.safetensors").state_dict(), want.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz", "w.safetensors"]


def test_a_fresh_temporary_file_is_opened_without_truncating(tmp_path):
    """atomic_write's temporary file is empty already; opening it without O_TRUNC spares ext4's
    flush-on-close of a file truncated to zero (the whole file's writeback, about 1 s per 2 GB)."""
    from numpyrnn import safeio

    path = tmp_path / "f"
    path.write_bytes(b"abc")
    with safeio.open_fresh(str(path)) as f:
        f.write(b"X")
    assert path.read_bytes() == b"Xbc"
