"""``numpyrnn verify``, ``numpyrnn detect`` and ``numpyrnn convert --verify``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from numpyrnn import NumpyGRU, files
from numpyrnn._seed import seed_arrays
from numpyrnn.cli import main

from .conftest import run_cli

I, H = 10, 20


@pytest.fixture
def recorded(tmp_path):
    """The question's arrays, an input, and the output of those arrays read as ``zrn`` through the row loop."""
    w0, w = seed_arrays(I, H, 2, 2)
    np.savez(tmp_path / "weights.npz", w0=w0, w=w)
    x = np.random.default_rng(0).standard_normal((8, 3, I)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    with torch.no_grad():
        y = NumpyGRU.from_numpy(w0, w, gates="zrn", rowwise=True)(torch.from_numpy(x))[0].numpy()
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "noise.npy", np.random.default_rng(1).uniform(-1, 1, y.shape).astype(np.float32))
    return tmp_path


@pytest.mark.parametrize("sub", ["verify", "detect"])
def test_help_has_examples(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main([sub, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"numpyrnn {sub}" in out


def test_detect_prints_the_match_and_the_convert_line(recorded, capsys):
    d = recorded
    assert main(["detect", str(d / "weights.npz"), "--input", str(d / "x.npy"), "--output", str(d / "y.npy"),
                 "--cell", "gru"]) == 0
    out = capsys.readouterr().out
    assert "match: gates='zrn' rowwise=True" in out
    line = next(ln.strip() for ln in out.splitlines() if ln.strip().startswith("numpyrnn convert"))
    assert line == f"numpyrnn convert {d / 'weights.npz'} -o converted.pt --cell gru --gates zrn --rowwise --verify"
    # and that command line does what it says
    args = line.split()[1:]
    args[args.index("converted.pt")] = str(d / "converted.pt")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "OK:" in out and "wrote" in out and (d / "converted.pt").exists()
    assert main(["verify", str(d / "weights.npz"), str(d / "converted.pt"), "--cell", "gru", "--gates", "zrn",
                 "--rowwise"]) == 0


def test_detect_refuses_noise(recorded, capsys):
    d = recorded
    code = main(["detect", str(d / "weights.npz"), "--input", str(d / "x.npy"), "--output", str(d / "noise.npy"),
                 "--cell", "gru"])
    assert code == 1
    err = capsys.readouterr().err
    assert "no reading of the arrays reproduces y" in err and "closest:" in err


def test_detect_saves_rewritten_biases(tmp_path, capsys):
    rng = np.random.default_rng(2)
    w0 = rng.uniform(-0.5, 0.5, (1, 4, 4 * (3 + 4))).astype(np.float32)
    b0 = rng.uniform(-0.5, 0.5, (1, 4, 4)).astype(np.float32)  # one summed bias per gate
    np.savez(tmp_path / "w.npz", w0=w0, b0=b0)
    x = rng.uniform(-1, 1, (5, 2, 3)).astype(np.float32)
    full = np.concatenate([b0, np.zeros_like(b0)], axis=-1)
    full[..., 1] += 1.0  # torch order i, f, g, o; forget bias 1 added at run time
    from numpyrnn import NumpyLSTM

    with torch.no_grad():
        y = NumpyLSTM.from_numpy(w0, b0=full)(torch.from_numpy(x))[0].numpy()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    base = ["detect", str(tmp_path / "w.npz"), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy"),
            "--cell", "lstm"]
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "bias=summed forget_bias=1" in out and "--save FIXED.npz" in out and "numpyrnn convert" not in out
    assert main([*base, "--save", str(tmp_path / "fixed.npz")]) == 0
    out = capsys.readouterr().out
    assert f"numpyrnn convert {tmp_path / 'fixed.npz'} -o converted.pt --cell lstm --verify" in out
    np.testing.assert_allclose(files.read_blocks(tmp_path / "fixed.npz")["b0"], full, atol=1e-7)


def test_verify_exit_codes(recorded):
    d = recorded
    ok = run_cli("verify", d / "weights.npz", "--cell", "gru", "--gates", "zrn", "--rowwise", "--input", d / "x.npy")
    assert ok.returncode == 0, ok.stderr
    assert "oracle: numpyrnn.reference" in ok.stdout and "given x" in ok.stdout and "OK:" in ok.stdout
    files.write_state_dict(d / "loop.pt", NumpyGRU.from_numpy(*seed_arrays(I, H, 2, 2), rowwise=True).state_dict())
    bad = run_cli("verify", d / "weights.npz", d / "loop.pt", "--cell", "gru")
    assert bad.returncode == 1 and "FAILED:" in bad.stdout and "FAIL" in bad.stdout
    usage = run_cli("verify", d / "weights.npz", "--from", "onnx", "--gates", "zrn")
    assert usage.returncode == 2 and "--gates and --rowwise apply to the block layout" in usage.stderr


def test_verify_atol_and_seed(recorded, capsys):
    d = recorded
    assert main(["verify", str(d / "weights.npz"), "--cell", "gru", "--atol", "1e-9", "--seed", "3"]) == 1
    out = capsys.readouterr().out
    assert "1e-09" in out and "overridden" in out and "FAILED" in out


def test_verify_reference_oracle_for_an_onnx_file(tmp_path, capsys):
    pytest.importorskip("onnx", reason="onnx not installed: pip install numpyrnn[interop]")
    rng = np.random.default_rng(0)
    layers = [{"W": rng.uniform(-0.5, 0.5, (2, 12, 3)).astype(np.float32),
               "R": rng.uniform(-0.5, 0.5, (2, 12, 3)).astype(np.float32),
               "B": rng.uniform(-0.5, 0.5, (2, 24)).astype(np.float32)}]
    files.write_onnx(tmp_path / "m.onnx", layers, mode="LSTM")
    assert main(["verify", str(tmp_path / "m.onnx"), "--oracle", "reference"]) == 0
    out = capsys.readouterr().out
    assert "oracle: numpyrnn.reference (numpy, float64; asked for)" in out and "c_n[layer 0, backward]" in out


def test_convert_verify_writes_nothing_when_the_conversion_is_wrong(recorded, monkeypatch, capsys):
    d = recorded
    real = NumpyGRU.from_numpy  # what the block reader's modules are built by

    def wrong(*args, **kwargs):  # a conversion with one weight off, as a bug in a reader would leave it
        module = real(*args, **kwargs)
        with torch.no_grad():
            module.weight_hh_l1_reverse[0, 0] += 0.1
        return module

    monkeypatch.setattr(NumpyGRU, "from_numpy", wrong)
    out_path = d / "gru.safetensors"
    argv = ["convert", str(d / "weights.npz"), "-o", str(out_path), "--cell", "gru", "--verify"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "FAILED:" in captured.out and "not written" in captured.err
    bad = [ln for ln in captured.out.splitlines() if ln.rstrip().endswith("FAIL")]
    assert bad and all("layer 0" not in ln for ln in bad)  # the layer below the changed weight is right
    assert not out_path.exists()
    # an output already there is left as it was
    out_path.write_bytes(b"earlier output")
    assert main(argv) == 1
    assert out_path.read_bytes() == b"earlier output"
    capsys.readouterr()
    # the same command without the bug writes the file
    monkeypatch.setattr(NumpyGRU, "from_numpy", real)
    assert main(argv) == 0
    assert "OK:" in capsys.readouterr().out and out_path.read_bytes() != b"earlier output"


def test_convert_verify_keras(tmp_path):
    keras = pytest.importorskip("keras", reason="keras not installed: pip install numpyrnn[interop]")
    model = keras.Sequential([keras.Input((None, 3)), keras.layers.LSTM(4, return_sequences=True)])
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    r = run_cli("convert", tmp_path / "m.keras", "-o", tmp_path / "lstm.pt", "--cell", "lstm", "--verify")
    assert r.returncode == 0, r.stderr
    assert "oracle: keras" in r.stdout and "OK:" in r.stdout and (tmp_path / "lstm.pt").exists()


@pytest.fixture
def flax_gru_file(tmp_path):
    """Two GRU layers of ``nn.RNN(GRUCell)`` params, in flax's shapes (biases on ir, iz, in and hn)."""
    pytest.importorskip("msgpack", reason="msgpack not installed: pip install numpyrnn[files]")
    rng = np.random.default_rng(4)
    layers, width, h = {}, 3, 4
    for k in range(2):
        cell = {}
        for g in ("ir", "iz", "in", "hr", "hz", "hn"):
            cell[g] = {"kernel": rng.uniform(-0.6, 0.6, (width if g[0] == "i" else h, h)).astype(np.float32)}
            if g in ("ir", "iz", "in", "hn"):
                cell[g]["bias"] = rng.uniform(-0.6, 0.6, h).astype(np.float32)
        layers[f"RNN_{k}"] = {"cell": cell}
        width = h
    path = tmp_path / "params.msgpack"
    files.write_msgpack(path, {"params": layers})
    return path


def test_verify_layer_and_stack(flax_gru_file, capsys):
    p = str(flax_gru_file)
    assert main(["verify", p]) == 0
    out = capsys.readouterr().out
    assert "module: RNN_0: GRU(input=3, hidden=4, layers=1" in out and "module: RNN_1: GRU(input=4" in out
    assert main(["verify", p, "--stack"]) == 0
    out = capsys.readouterr().out
    assert "module: RNN_0: GRU(input=3, hidden=4, layers=2" in out and "RNN_1" not in out
    assert "h_n[layer 1]" in out
    assert main(["verify", p, "--layer", "RNN_1"]) == 0
    out = capsys.readouterr().out
    assert "module: RNN_1" in out and "RNN_0" not in out
    assert main(["verify", p, "--layer", "RNN_7"]) == 1
    assert "no recurrent module named 'RNN_7'; the file holds 'RNN_0', 'RNN_1'" in capsys.readouterr().err


def test_verify_stack_is_for_flax(recorded, capsys):
    assert main(["verify", str(recorded / "weights.npz"), "--cell", "gru", "--stack"]) == 2
    assert "--stack applies to --from flax only (a blocks file" in capsys.readouterr().err


def test_convert_verify_checks_the_modules_it_writes(flax_gru_file, tmp_path, capsys):
    p, out = str(flax_gru_file), tmp_path / "stack.pt"
    assert main(["convert", p, "-o", str(out), "--stack", "--verify"]) == 0
    text = capsys.readouterr().out
    assert "OK:" in text and "GRU(input=3, hidden=4, layers=2" in text and out.exists()
    one = tmp_path / "top.safetensors"
    assert main(["convert", p, "-o", str(one), "--layer", "RNN_1", "--verify"]) == 0
    text = capsys.readouterr().out
    assert "module: RNN_1" in text and "RNN_0" not in text and one.exists()
    both = tmp_path / "both.safetensors"
    assert main(["convert", p, "-o", str(both), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "module: RNN_0" in text and "module: RNN_1" in text
    # the converted file, checked module by module under the source's names
    assert main(["verify", p, str(both)]) == 0
    capsys.readouterr()
    assert main(["verify", p, str(one)]) == 0  # a file of some of the modules checks those
    text = capsys.readouterr().out
    assert "module: RNN_1" in text and "RNN_0" not in text
    assert main(["verify", p, str(tmp_path / "stack.pt")]) == 1  # the stack is one module, not the file's two
    assert ("module for 'RNN_0': GRU(input=3, hidden=4, layers=2, unidirectional, bias) does not have the source's "
            "configuration GRU(input=3, hidden=4, layers=1") in capsys.readouterr().err
    assert main(["verify", p, str(tmp_path / "stack.pt"), "--stack"]) == 0


@pytest.fixture
def reset_before_onnx(tmp_path):
    """A 2-layer bidirectional ONNX GRU with ``linear_before_reset=0`` (the ONNX default), written with onnx.helper."""
    onnx = pytest.importorskip("onnx", reason="onnx not installed: pip install numpyrnn[interop]")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed: pip install numpyrnn[interop]")
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(2)
    nodes, inits, x = [], [numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "flat")], "X"
    for k in range(2):
        width = 3 if k == 0 else 8
        for n, shape in (("W", (2, 12, width)), ("R", (2, 12, 4)), ("B", (2, 24))):
            inits.append(numpy_helper.from_array(rng.uniform(-0.8, 0.8, shape).astype(np.float32), f"{n}{k}"))
        nodes.append(helper.make_node("GRU", [x, f"W{k}", f"R{k}", f"B{k}"], [f"Y{k}"], name=f"gru{k}",
                                      hidden_size=4, direction="bidirectional"))
        nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"T{k}"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"T{k}", "flat"], [f"Z{k}"]))
        x = f"Z{k}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [5, 2, 3])],
                              [helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    path = tmp_path / "gru.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_convert_variants_verify_writes_the_checked_variant(reset_before_onnx, tmp_path):
    out = tmp_path / "gru.safetensors"
    r = run_cli("convert", reset_before_onnx, "-o", out, "--variants", "--verify")
    assert r.returncode == 0, r.stderr
    assert "oracle: onnxruntime" in r.stdout and "ResetBeforeGRU(" in r.stdout and "OK:" in r.stdout
    assert out.exists()
    ok = run_cli("verify", reset_before_onnx, out, "--variants")
    assert ok.returncode == 0 and "OK:" in ok.stdout, ok.stdout + ok.stderr
    # without --variants the source is refused, with the way out
    refused = run_cli("verify", reset_before_onnx)
    assert refused.returncode == 1 and "--variants builds ResetBeforeGRU" in refused.stderr, refused.stderr
    usage = run_cli("verify", reset_before_onnx, "--variants", "--from", "blocks")
    assert usage.returncode == 2 and "--variants applies to Keras, ONNX and TF1 files" in usage.stderr


def test_convert_variants_verify_writes_nothing_when_a_variant_is_wrong(reset_before_onnx, tmp_path, monkeypatch,
                                                                        capsys):
    from numpyrnn.variants import loading

    real = loading.load  # what the ONNX reader builds its variant modules with

    def wrong(*args, **kwargs):  # one weight off, as a bug in the variant loader would leave it
        module = real(*args, **kwargs)
        with torch.no_grad():
            module.weight_ih_l1_reverse[0, 0] += 0.1
        return module

    monkeypatch.setattr(loading, "load", wrong)
    out = tmp_path / "gru.pt"
    argv = ["convert", str(reset_before_onnx), "-o", str(out), "--variants", "--verify"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "FAILED:" in captured.out and "not written" in captured.err
    bad = [ln for ln in captured.out.splitlines() if ln.rstrip().endswith("FAIL")]
    assert bad and all("layer 0" not in ln for ln in bad)  # the layer below the changed weight is right
    assert not out.exists()
    monkeypatch.setattr(loading, "load", real)
    assert main(argv) == 0 and out.exists()
    capsys.readouterr()
    # the same weight changed in the written file: verify SOURCE CONVERTED --variants exits 1
    import numpyrnn
    from numpyrnn.formats import config_of, native

    with pytest.warns(loading.VariantWarning, match=r"built ResetBeforeGRU\(3, 4, num_layers=2"):
        m = numpyrnn.load(out)
    with torch.no_grad():
        m.weight_hh_l0[1, 2] -= 0.1
    changed = tmp_path / "changed.safetensors"
    native.write(changed, {"gru0": m}, {"gru0": config_of(m, source="gru0", format="onnx")})
    assert main(["verify", str(reset_before_onnx), str(changed), "--variants"]) == 1
    out_text = capsys.readouterr().out
    assert "FAILED:" in out_text and "ResetBeforeGRU(" in out_text
