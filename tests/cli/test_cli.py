"""The ``numpyrnn`` command, run as a real subprocess on files written here.

Every check compares what the command wrote with what the library API gives
for the same weights.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN, reference
from numpyrnn.spec import RNNSpec

from ..conftest import make_blocks
from ..extras import needs
from .conftest import ROOT, needs_layout, run_cli


def _load_pt(path) -> dict:
    return torch.load(path, weights_only=True)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


class _Plant:
    """Unpickling this creates ``marker``: proof that something was unpickled."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_plant_really_fires(tmp_path):
    """The planted payload is live: plain unpickling creates the marker."""
    marker = tmp_path / "fired"
    pickle.loads(pickle.dumps(_Plant(marker)))
    assert marker.exists()


# --------------------------------------------------------------------------------------
# blocks -> .pt / .safetensors, checked against from_numpy and the numpy reference
# --------------------------------------------------------------------------------------

def test_convert_blocks_npz_gru_to_pt(tmp_path):
    spec = RNNSpec("GRU", input_size=5, hidden_size=4, num_layers=2, bidirectional=True, bias=True)
    arrays = {k: v for k, v in make_blocks(spec, dtype=np.float64, seed=3).items() if v is not None}
    np.savez(tmp_path / "w.npz", **arrays)
    r = run_cli("convert", tmp_path / "w.npz", "-o", tmp_path / "gru.pt", "--cell", "gru")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1
    assert "GRU(input=5, hidden=4, layers=2, bidirectional, bias) float64" in r.stdout
    assert "bytes" in r.stdout and " s" in r.stdout
    sd = _load_pt(tmp_path / "gru.pt")
    plain = nn.GRU(5, 4, 2, bidirectional=True, dtype=torch.float64)
    plain.load_state_dict(sd)  # strict: exactly the keys and shapes of the printed configuration
    _assert_same_state(sd, NumpyGRU.from_numpy(**arrays, dtype=torch.float64).state_dict())
    x = np.random.default_rng(0).standard_normal((6, 2, 5))
    y, _ = plain(torch.from_numpy(x))
    y_ref, _ = reference.gru(x, arrays["w0"], arrays["w"], b0=arrays["b0"], b=arrays["b"])
    np.testing.assert_allclose(y.detach().numpy(), y_ref, rtol=0, atol=1e-10)


def test_convert_npy_folder_lstm_proj_to_safetensors(tmp_path):
    pytest.importorskip("safetensors")
    from safetensors.torch import load_file

    spec = RNNSpec("LSTM", input_size=3, hidden_size=5, num_layers=2, bidirectional=False, bias=True, proj_size=2)
    arrays = {k: v for k, v in make_blocks(spec, seed=4).items() if v is not None}
    folder = tmp_path / "blocks"
    folder.mkdir()
    for k, v in arrays.items():
        np.save(folder / f"{k}.npy", v)
    r = run_cli("convert", folder, "-o", tmp_path / "lstm.safetensors", "--cell", "lstm", "--batch-first")
    assert r.returncode == 0, r.stderr
    assert "LSTM(input=3, hidden=5, layers=2, unidirectional, bias, proj=2) float32, batch_first" in r.stdout
    sd = load_file(str(tmp_path / "lstm.safetensors"))
    nn.LSTM(3, 5, 2, proj_size=2).load_state_dict(sd)
    _assert_same_state(sd, NumpyLSTM.from_numpy(**arrays).state_dict())


def test_convert_gates_rowwise_relu(tmp_path):
    spec = RNNSpec("GRU", input_size=3, hidden_size=4, num_layers=1, bidirectional=False, bias=True)
    arrays = {k: v for k, v in make_blocks(spec, seed=5).items() if v is not None}
    np.savez(tmp_path / "g.npz", **arrays)
    r = run_cli("convert", tmp_path / "g.npz", "-o", tmp_path / "g.pt", "--cell", "gru", "--gates", "zrn", "--rowwise")
    assert r.returncode == 0, r.stderr
    want = NumpyGRU.from_numpy(**arrays, gates="zrn", rowwise=True).state_dict()
    _assert_same_state(_load_pt(tmp_path / "g.pt"), want)

    rspec = RNNSpec("RNN_RELU", input_size=3, hidden_size=4, num_layers=1, bidirectional=True, bias=False)
    rarrays = {k: v for k, v in make_blocks(rspec, seed=6).items() if v is not None}
    np.savez(tmp_path / "r.npz", **rarrays)
    r = run_cli("convert", tmp_path / "r.npz", "-o", tmp_path / "r.pt", "--cell", "rnn", "--nonlinearity", "relu")
    assert r.returncode == 0, r.stderr
    assert "RNN(input=3, hidden=4, layers=1, bidirectional, no bias, relu)" in r.stdout
    sd = _load_pt(tmp_path / "r.pt")
    _assert_same_state(sd, NumpyRNN.from_numpy(**rarrays, nonlinearity="relu").state_dict())


def test_export_to_blocks_and_back(tmp_path):
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3)
    torch.save(lstm.state_dict(), tmp_path / "lstm.pt")
    r = run_cli("export", tmp_path / "lstm.pt", "-o", tmp_path / "b.npz", "--cell", "lstm", "--to", "blocks",
                "--gates", "ifog")
    assert r.returncode == 0, r.stderr
    assert "LSTM(input=4, hidden=6, layers=2, bidirectional, bias, proj=3) as blocks" in r.stdout
    got = dict(np.load(tmp_path / "b.npz", allow_pickle=False))
    want = {k: v for k, v in NumpyLSTM.to_numpy(lstm, gates="ifog").items() if v is not None}
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    # and back through convert: bit-exact
    r = run_cli("convert", tmp_path / "b.npz", "-o", tmp_path / "again.pt", "--cell", "lstm", "--gates", "ifog")
    assert r.returncode == 0, r.stderr
    _assert_same_state(_load_pt(tmp_path / "again.pt"), lstm.state_dict())


# --------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------

def test_inspect_good_and_bad(tmp_path):
    spec = RNNSpec("LSTM", input_size=3, hidden_size=4, num_layers=2, bidirectional=True, bias=True)
    arrays = {k: v for k, v in make_blocks(spec, seed=7).items() if v is not None}
    np.savez(tmp_path / "ok.npz", **arrays)
    r = run_cli("inspect", tmp_path / "ok.npz")
    assert r.returncode == 0, r.stderr
    assert ("module 'ok': cell=lstm input=3 hidden=4 layers=2 directions=2 bias=yes projection=none "
            "batch_first=no nonlinearity=tanh dtype=float32") in r.stdout
    assert "problems: none" in r.stdout

    arrays["b"] = arrays["b"][:, :1]  # wrong directions axis in the layers above
    arrays["w0"][1, 2, 3] = np.nan
    np.savez(tmp_path / "bad.npz", **arrays)
    r = run_cli("inspect", tmp_path / "bad.npz")
    assert r.returncode == 1
    assert "problem: b (block layout): expected (layers-1=1, directions=2, hidden=4, 2*4=8), got (1, 1, 4, 8)" in r.stdout


# --------------------------------------------------------------------------------------
# exit codes
# --------------------------------------------------------------------------------------

def test_exit_codes(tmp_path, capsys):
    from numpyrnn.cli import main

    spec = RNNSpec("GRU", input_size=2, hidden_size=3)
    blocks = {k: v for k, v in make_blocks(spec).items() if v is not None}
    np.savez(tmp_path / "g.npz", w0=blocks["w0"])  # no biases: nothing records the cell
    np.savez(tmp_path / "gb.npz", **blocks)  # b0 (D, H, 6) records a GRU
    # 2: usage errors, caught by argparse or by the option checks
    r = run_cli("convert", tmp_path / "g.npz", "-o", tmp_path / "g.pt")
    assert r.returncode == 2 and "block arrays do not record their cell; pass --cell gru, --cell lstm or --cell rnn" in r.stderr
    r = run_cli("convert", tmp_path / "gb.npz", "-o", tmp_path / "g.pt", "--cell", "lstm")
    assert r.returncode == 1 and "gb.npz: the file records a GRU cell (the block arrays' shapes), but --cell lstm was given" in r.stderr
    assert not (tmp_path / "g.pt").exists()
    usage = [
        (["-o", str(tmp_path / "g.onnx"), "--cell", "gru"], "must end in .pt or .safetensors"),
        (["-o", str(tmp_path / "g.pt"), "--cell", "gru", "--from", "tf1", "--gates", "zrn"],
         "--gates and --rowwise apply to the block layout"),
        (["-o", str(tmp_path / "g.pt"), "--cell", "gru", "--forget-bias", "0"], "--forget-bias applies to --from tf1 only"),
        (["-o", str(tmp_path / "g.pt"), "--cell", "gru", "--nonlinearity", "relu"], "--nonlinearity relu applies to --cell rnn"),
    ]
    for extra, message in usage:
        assert main(["convert", str(tmp_path / "g.npz"), *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["export", str(tmp_path / "g.npz"), "-o", str(tmp_path / "x.npz"), "--cell", "gru", "--to", "blocks"]) == 2
    assert "the input of export must end in .pt" in capsys.readouterr().err
    # 1: bad weights, one line, no traceback ...
    r = run_cli("convert", tmp_path / "g.npz", "-o", tmp_path / "g.pt", "--cell", "lstm")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "w0: axis 2 should be 4*(input+hidden)" in r.stderr
    assert not (tmp_path / "g.pt").exists()
    # ... unless --debug asks for it
    r = run_cli("--debug", "convert", tmp_path / "g.npz", "-o", tmp_path / "g.pt", "--cell", "lstm")
    assert r.returncode == 1 and "Traceback" in r.stderr and "LayoutError" in r.stderr


def test_python_dash_m_and_help():
    r = run_cli("--help", module=True)
    assert r.returncode == 0 and "convert" in r.stdout and "exit codes" in r.stdout


@pytest.mark.parametrize("sub", ["demo", "convert", "export", "inspect"])
def test_every_subcommand_help_has_an_example(sub, capsys):
    from numpyrnn.cli import main

    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"numpyrnn {sub}" in out


# --------------------------------------------------------------------------------------
# safety: pickles, corrupted files, partial output
# --------------------------------------------------------------------------------------

def test_planted_pickles_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    evil = np.array([_Plant(marker)], dtype=object)
    np.savez(tmp_path / "evil.npz", w0=evil)  # np.savez pickles object arrays
    folder = tmp_path / "evil_folder"
    folder.mkdir()
    np.save(folder / "w0.npy", evil, allow_pickle=True)
    torch.save({"weight_ih_l0": _Plant(marker)}, tmp_path / "evil.pt")

    r = run_cli("convert", tmp_path / "evil.npz", "-o", tmp_path / "o.pt", "--cell", "gru")
    assert r.returncode == 1 and "holds Python objects" in r.stderr and "refuses object arrays" in r.stderr
    r = run_cli("convert", folder, "-o", tmp_path / "o.pt", "--cell", "gru")
    assert r.returncode == 1 and "w0.npy: holds Python objects" in r.stderr
    r = run_cli("export", tmp_path / "evil.pt", "-o", tmp_path / "o.npz", "--cell", "gru", "--to", "blocks")
    assert r.returncode == 1 and "refused: loading it would run pickled code" in r.stderr
    from numpyrnn.cli import main

    assert main(["inspect", str(tmp_path / "evil.pt")]) == 1
    assert not marker.exists()
    assert not (tmp_path / "o.pt").exists() and not (tmp_path / "o.npz").exists()


def test_corrupted_and_truncated_files(tmp_path):
    spec = RNNSpec("GRU", input_size=2, hidden_size=3, bidirectional=True)
    arrays = {k: v for k, v in make_blocks(spec).items() if v is not None}
    np.savez(tmp_path / "g.npz", **arrays)
    data = (tmp_path / "g.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    torch.save(NumpyGRU.from_numpy(**arrays).state_dict(), tmp_path / "g.pt")
    pt = bytearray((tmp_path / "g.pt").read_bytes())
    pt[:64] = b"\xff" * 64
    (tmp_path / "bad.pt").write_bytes(bytes(pt))
    folder = tmp_path / "huge"
    folder.mkdir()
    with open(folder / "w0.npy", "wb") as f:  # declares 8 TB, holds 16 bytes
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
        f.write(b"\0" * 16)

    cases = [
        (("convert", tmp_path / "trunc.npz", "-o", tmp_path / "out.pt", "--cell", "gru"), "trunc.npz: not a readable .npz"),
        (("export", tmp_path / "bad.pt", "-o", tmp_path / "out.npz", "--cell", "gru", "--to", "blocks"), "bad.pt: not a readable torch file"),
        (("convert", folder, "-o", tmp_path / "out.pt", "--cell", "gru"), "w0.npy: the header declares shape (1000000, 1000000)"),
    ]
    for args, message in cases:
        r = run_cli(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "g.npz", "g.pt", "huge", "trunc.npz"]


def test_failed_run_keeps_existing_output(tmp_path):
    """A failure leaves no partial file and never clobbers; a success replaces."""
    spec = RNNSpec("GRU", input_size=2, hidden_size=3)
    good = {k: v for k, v in make_blocks(spec).items() if v is not None}
    bad = dict(good, w0=np.where(np.arange(good["w0"].size).reshape(good["w0"].shape) == 4, np.inf, good["w0"]))
    np.savez(tmp_path / "good.npz", **good)
    np.savez(tmp_path / "bad.npz", **bad)
    out = tmp_path / "out.pt"
    out.write_bytes(b"precious")
    r = run_cli("convert", tmp_path / "bad.npz", "-o", out, "--cell", "gru")
    assert r.returncode == 1 and "w0: holds inf at index [0, 0, 4]" in r.stderr
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "good.npz", "out.pt"]
    r = run_cli("convert", tmp_path / "good.npz", "-o", out, "--cell", "gru")
    assert r.returncode == 0, r.stderr
    _assert_same_state(_load_pt(out), NumpyGRU.from_numpy(**good).state_dict())


# --------------------------------------------------------------------------------------
# foreign formats, both directions, against the library API
# --------------------------------------------------------------------------------------

@needs_layout("keras")
def test_keras_both_directions(tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.Sequential([
        keras.Input((7, 3)),
        keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True)),
        keras.layers.Bidirectional(keras.layers.GRU(4, return_sequences=True)),
    ])
    model.save(tmp_path / "m.keras")
    r = run_cli("convert", tmp_path / "m.keras", "-o", tmp_path / "m.pt", "--cell", "gru")
    assert r.returncode == 0, r.stderr
    want = NumpyGRU.from_keras([layer.get_weights() for layer in model.layers]).state_dict()
    sd = _load_pt(tmp_path / "m.pt")
    _assert_same_state(sd, want)

    # export a torch GRU to Keras get_weights lists and run them in Keras
    torch.manual_seed(1)
    gru = nn.GRU(3, 4, num_layers=2, batch_first=True)
    torch.save(gru.state_dict(), tmp_path / "t.pt")
    r = run_cli("export", tmp_path / "t.pt", "-o", tmp_path / "k.npz", "--cell", "gru", "--to", "keras")
    assert r.returncode == 0, r.stderr
    f = np.load(tmp_path / "k.npz", allow_pickle=False)
    km = keras.Sequential([keras.Input((7, 3)), keras.layers.GRU(4, return_sequences=True),
                           keras.layers.GRU(4, return_sequences=True)])
    for k, layer in enumerate(km.layers):
        layer.set_weights([f[f"layer_{k}_{j}"] for j in range(len(layer.get_weights()))])
    x = np.random.default_rng(2).standard_normal((2, 7, 3)).astype(np.float32)
    y_keras = np.asarray(km(x).detach().cpu())
    y_torch = gru(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(y_keras, y_torch, rtol=0, atol=1e-5)
    r = run_cli("convert", tmp_path / "k.npz", "--from", "keras", "-o", tmp_path / "k.pt", "--cell", "gru")
    assert r.returncode == 0, r.stderr
    _assert_same_state(_load_pt(tmp_path / "k.pt"), gru.state_dict())


@needs_layout("onnx")
def test_onnx_both_directions(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(2)
    lstm = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    torch.save(lstm.state_dict(), tmp_path / "l.pt")
    r = run_cli("export", tmp_path / "l.pt", "-o", tmp_path / "l.onnx", "--cell", "lstm", "--to", "onnx")
    assert r.returncode == 0, r.stderr
    x = np.random.default_rng(3).standard_normal((5, 2, 3)).astype(np.float32)
    (y_onnx,) = ort.InferenceSession(str(tmp_path / "l.onnx"), providers=["CPUExecutionProvider"]).run(["Y"], {"X": x})
    np.testing.assert_allclose(y_onnx, lstm(torch.from_numpy(x))[0].detach().numpy(), rtol=0, atol=1e-5)
    r = run_cli("convert", tmp_path / "l.onnx", "-o", tmp_path / "back.pt", "--cell", "lstm")
    assert r.returncode == 0, r.stderr
    import onnx

    want = NumpyLSTM.from_onnx(onnx.load(str(tmp_path / "l.onnx"))).state_dict()
    _assert_same_state(_load_pt(tmp_path / "back.pt"), want)
    ref = lstm(torch.from_numpy(x))[0]
    back = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    back.load_state_dict(_load_pt(tmp_path / "back.pt"))
    torch.testing.assert_close(back(torch.from_numpy(x))[0], ref, rtol=0, atol=1e-6)


@needs_layout("flax")
def test_flax_both_directions(tmp_path):
    needs("msgpack")
    torch.manual_seed(3)
    gru = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    torch.save(gru.state_dict(), tmp_path / "g.pt")
    r = run_cli("export", tmp_path / "g.pt", "-o", tmp_path / "g.msgpack", "--cell", "gru", "--to", "flax")
    assert r.returncode == 0, r.stderr
    from numpyrnn import files

    tree = files.read_msgpack(tmp_path / "g.msgpack")
    want = NumpyGRU.to_flax(gru)
    got = files.flax_layers(tree)
    assert len(got) == len(want)
    for a, b in zip(files.listing(got), files.listing(want)):
        assert a == b
    # params record no graph: the two layers are separate modules unless --stack says they feed each other
    r = run_cli("convert", tmp_path / "g.msgpack", "-o", tmp_path / "apart.pt")
    assert r.returncode == 0, r.stderr
    assert sorted({k.split(".")[0] for k in _load_pt(tmp_path / "apart.pt")}) == ["0", "1"]
    r = run_cli("convert", tmp_path / "g.msgpack", "-o", tmp_path / "back.pt", "--stack", "--cell", "gru")
    assert r.returncode == 0, r.stderr
    back = _load_pt(tmp_path / "back.pt")
    _assert_same_state(back, NumpyGRU.from_flax(want).state_dict())
    # Flax's r and z gates keep one bias, so the state differs; the function it computes does not
    again = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    again.load_state_dict(back)
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(again(x)[0], gru(x)[0], rtol=0, atol=1e-5)


@needs_layout("tf1")
def test_tf1_both_directions(tmp_path):
    torch.manual_seed(4)
    lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    torch.save(lstm.state_dict(), tmp_path / "l.pt")
    r = run_cli("export", tmp_path / "l.pt", "-o", tmp_path / "ckpt.npz", "--cell", "lstm", "--to", "tf1",
                "--forget-bias", "0.5")
    assert r.returncode == 0, r.stderr
    got = dict(np.load(tmp_path / "ckpt.npz", allow_pickle=False))
    want = NumpyLSTM.to_tf1(lstm, forget_bias=0.5)
    np.testing.assert_array_equal(
        got["stack_bidirectional_rnn/cell_1/bidirectional_rnn/bw/lstm_cell/kernel"], want[1]["bw"]["kernel"])
    r = run_cli("convert", tmp_path / "ckpt.npz", "--from", "tf1", "-o", tmp_path / "back.pt", "--cell", "lstm",
                "--forget-bias", "0.5")
    assert r.returncode == 0, r.stderr
    back = _load_pt(tmp_path / "back.pt")
    _assert_same_state(back, NumpyLSTM.from_tf1(want, forget_bias=0.5).state_dict())
    # TF1 keeps one bias, so the state differs from the original; the function it computes does not
    again = nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    again.load_state_dict(back)
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(again(x)[0], lstm(x)[0], rtol=0, atol=1e-5)



@needs_layout("keras")
def test_keras_relu_simple_rnn_records_its_nonlinearity(tmp_path, capsys):
    keras = pytest.importorskip("keras")
    from numpyrnn.cli import main

    model = keras.Sequential([keras.Input((6, 3)), keras.layers.SimpleRNN(4, activation="relu", return_sequences=True)])
    model.save(tmp_path / "r.keras")
    # the file records relu: inspect and convert need no option, and a contradicting one is refused
    assert main(["inspect", str(tmp_path / "r.keras")]) == 0
    out = capsys.readouterr().out
    assert f"module '{model.layers[0].name}': cell=rnn" in out and "nonlinearity=relu" in out
    assert "problems: none" in out
    assert main(["convert", str(tmp_path / "r.keras"), "-o", str(tmp_path / "r.pt"), "--nonlinearity", "tanh"]) == 1
    assert (f"r.keras: layer '{model.layers[0].name}' records activation 'relu', but --nonlinearity tanh was given; "
            f"drop --nonlinearity") in capsys.readouterr().err
    assert not (tmp_path / "r.pt").exists()
    assert main(["convert", str(tmp_path / "r.keras"), "-o", str(tmp_path / "r.pt")]) == 0
    assert "relu" in capsys.readouterr().out
    rnn = nn.RNN(3, 4, nonlinearity="relu", batch_first=True)
    rnn.load_state_dict(_load_pt(tmp_path / "r.pt"))
    x = np.random.default_rng(5).standard_normal((2, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(rnn(torch.from_numpy(x))[0].detach().numpy(), np.asarray(model(x).detach().cpu()),
                               rtol=0, atol=1e-5)


@needs_layout("flax")
def test_flax_checkpoint_from_flax_serialization(tmp_path, capsys):
    """A checkpoint written by flax itself (a model's variables, layers as submodules) converts."""
    flax_nn = pytest.importorskip("flax.linen")
    serialization = pytest.importorskip("flax.serialization")
    import jax

    class Stack(flax_nn.Module):
        def setup(self):
            self.layers = [flax_nn.Bidirectional(flax_nn.RNN(flax_nn.LSTMCell(4)), flax_nn.RNN(flax_nn.LSTMCell(4)))
                           for _ in range(2)]

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    variables = Stack().init(jax.random.PRNGKey(0), np.zeros((1, 5, 3), np.float32))
    (tmp_path / "m.msgpack").write_bytes(serialization.to_bytes(variables))
    from numpyrnn.cli import main

    assert main(["convert", str(tmp_path / "m.msgpack"), "-o", str(tmp_path / "m.pt"), "--stack"]) == 0
    assert "'layers_0' LSTM(input=3, hidden=4, layers=2, bidirectional, bias)" in capsys.readouterr().out
    params = variables["params"]
    want = NumpyLSTM.from_flax([params["layers_0"], params["layers_1"]]).state_dict()
    _assert_same_state(_load_pt(tmp_path / "m.pt"), want)


@needs_layout("keras")
@needs_layout("flax")
def test_foreign_files_read_without_their_frameworks(tmp_path):
    """.keras via h5py and .msgpack via msgpack: with keras, jax, flax and tensorflow unimportable."""
    keras = pytest.importorskip("keras")
    pytest.importorskip("msgpack")
    from numpyrnn import files

    keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4)]).save(tmp_path / "m.keras")
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4)
    files.write_msgpack(tmp_path / "m.msgpack",
                        [{"cell": {**{f"i{g}": {"kernel": lstm.weight_ih_l0[k * 4:(k + 1) * 4].T.detach().numpy()}
                                      for k, g in enumerate("ifgo")},
                                   **{f"h{g}": {"kernel": lstm.weight_hh_l0[k * 4:(k + 1) * 4].T.detach().numpy(),
                                                "bias": np.zeros(4, np.float32)} for k, g in enumerate("ifgo")}}}])
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "jax", "flax", "tensorflow"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from numpyrnn.cli import main
codes = [main(["convert", {str(tmp_path / "m.keras")!r}, "-o", {str(tmp_path / "k.pt")!r}, "--cell", "lstm"]),
         main(["convert", {str(tmp_path / "m.msgpack")!r}, "-o", {str(tmp_path / "f.pt")!r}, "--cell", "lstm"])]
print("codes", codes, sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "jax", "flax", "tensorflow")))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "codes [0, 0] []" in r.stdout, r.stdout + r.stderr
    back = _load_pt(tmp_path / "f.pt")
    torch.testing.assert_close(back["weight_ih_l0"], lstm.weight_ih_l0.detach(), rtol=0, atol=0)
    torch.testing.assert_close(back["weight_hh_l0"], lstm.weight_hh_l0.detach(), rtol=0, atol=0)


def test_demo_runs_and_shows_the_loop_is_wrong():
    r = run_cli("demo", "--grow", "32")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "numpyrnn matches the reference to float32 tolerance (1e-5)." in out
    ours = next(line for line in out.splitlines() if line.startswith("numpyrnn NumpyGRU.from_numpy"))
    loop = next(line for line in out.splitlines() if line.startswith("original row loop"))
    assert float(ours.split()[2]) < 1e-5 and float(ours.split()[3]) < 1e-5
    assert float(loop.split()[3]) > 1e-2  # the loop's outputs are far from the formulas
    grown = [line.split() for line in out.splitlines() if line.strip().startswith("32 ")]
    assert len(grown) == 1 and grown[0][-1].endswith("x")
