"""``numpyrnn.verify`` on the variant modules ``variants=True`` builds, against the source's own framework.

Keras 3 files run in Keras, ONNX files in onnxruntime; TF1 ``GRUCell`` variables run
in TensorFlow where it is installed and otherwise in ``numpyrnn.reference``'s
variant formulas. Each check also catches one weight changed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import numpyrnn
from numpyrnn import LayoutError
from numpyrnn.variants import Directions, PeepholeLSTM, ResetBeforeGRU, VariantWarning

from .test_files import _keras_model

T, N, I, H = 5, 2, 3, 4


def _load_all(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantWarning)
        return numpyrnn.load_all(path, variants=True, **kw)


def _perturb(module, name):
    """One weight of ``module`` changed by 0.1, in place."""
    with torch.no_grad():
        dict(module.named_parameters())[name].view(-1)[0] += 0.1
    return module


def _rows(report, ok):
    return {(r.module, r.output) for r in report.rows if r.ok is ok}


@pytest.fixture(scope="module")
def keras_file(keras3, tmp_path_factory):
    """reset_after=False GRU with hard_sigmoid -> Bidirectional(LSTM, merge_mode='sum') -> go_backwards LSTM."""
    path = tmp_path_factory.mktemp("k3v") / "model.keras"
    _keras_model(keras3).save(path)
    return path


# --------------------------------------------------------------------------------------
# Keras 3 files
# --------------------------------------------------------------------------------------

def test_keras_file_variants_against_keras(keras_file):
    with pytest.raises(LayoutError, match=r"variants=True builds ResetBeforeGRU"):
        numpyrnn.verify(keras_file)  # as load_all: refused by default, with the way out
    report = numpyrnn.verify(keras_file, variants=True)
    assert report.ok, report
    assert report.oracle.startswith("keras 3") and "backend torch" in report.oracle
    assert {r.module for r in report.rows} == {"reset_before", "summed", "backwards"}
    assert len(report.rows) == 2 + 5 + 3  # y and the final states of each direction
    text = str(report)
    assert "ResetBeforeGRU(recurrent_activation='hard_sigmoid_keras3'" in text
    assert "merge_mode='sum'" in text and "time='go_backwards'" in text
    assert report.max_error < 1e-5


def test_keras_file_variants_against_the_reference(keras_file):
    report = numpyrnn.verify(keras_file, variants=True, oracle="reference")
    assert report.ok, report
    assert report.oracle.startswith("numpyrnn.reference (numpy, float64; asked for)")


@pytest.mark.parametrize("name,weight", [("reset_before", "weight_hh_l0"), ("summed", "module.weight_ih_l0_reverse"),
                                         ("backwards", "module.bias_hh_l0")])
@pytest.mark.parametrize("oracle", [None, "reference"])
def test_keras_file_perturbed_variant_fails(keras_file, name, weight, oracle):
    mods = _load_all(keras_file)
    _perturb(mods[name], weight)
    report = numpyrnn.verify(keras_file, mods, variants=True, oracle=oracle)
    assert not report.ok
    assert {m for m, _ in _rows(report, False)} == {name}  # only the changed module is off
    assert (name, "y") in _rows(report, False)
    assert "FAILED:" in str(report)


def test_converted_file_of_variants(keras_file, tmp_path):
    from numpyrnn.cli import main

    out = tmp_path / "model.safetensors"
    assert main(["convert", str(keras_file), "-o", str(out), "--variants"]) == 0
    assert numpyrnn.verify(keras_file, out, variants=True).ok
    # a converted variant is only checked against a source read with variants=True
    with pytest.raises(LayoutError, match=r"variants=True builds"):
        numpyrnn.verify(keras_file, out)


def test_a_plain_module_for_a_variant_source_is_refused(keras_file):
    with pytest.raises(LayoutError, match=r"module for 'reset_before': a GRU cannot compute what the source does; "
                                          r"numpyrnn converts it to ResetBeforeGRU\("):
        numpyrnn.verify(keras_file, {"reset_before": torch.nn.GRU(I, H, batch_first=True)}, variants=True)
    other = ResetBeforeGRU(I, H, batch_first=True)  # sigmoid, where the source has Keras 3's hard_sigmoid
    with pytest.raises(LayoutError, match=r"does not have the source's configuration .*differs in variant"):
        numpyrnn.verify(keras_file, {"reset_before": other}, variants=True)


@pytest.mark.parametrize("merge_mode", ["ave", "mul", None])
def test_keras_layer_merge_modes(keras3, merge_mode):
    keras = keras3
    layer = keras.layers.Bidirectional(keras.layers.GRU(H, reset_after=False, return_sequences=True),
                                       merge_mode=merge_mode)
    layer.build((None, T, I))
    rng = np.random.default_rng(5)
    layer.set_weights([rng.uniform(-0.7, 0.7, w.shape).astype(np.float32) for w in layer.get_weights()])
    report = numpyrnn.verify(layer, variants=True)
    assert report.ok, report
    assert report.oracle.startswith("keras")
    assert report.rows[0].shape == (N, T, H if merge_mode else 2 * H)
    assert numpyrnn.verify(layer, variants=True, oracle="reference").ok
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantWarning)
        m = numpyrnn.NumpyGRU.from_keras(layer, variants=True)
    assert type(m) is Directions and m.merge_mode == merge_mode
    assert not numpyrnn.verify(layer, _perturb(m, "module.weight_hh_l0_reverse"), variants=True).ok


# --------------------------------------------------------------------------------------
# ONNX files, written with onnx.helper, against onnxruntime
# --------------------------------------------------------------------------------------

def _onnx_file(tmp_path, cell, *, D, L, peepholes=False, seed=0, attrs=None):
    pytest.importorskip("onnx", reason="onnx is not installed: pip install numpyrnn[interop]")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install numpyrnn[interop]")
    from .test_onnx import make_model, random_layers

    attrs = {"hidden_size": H, **(attrs or {})}
    if D == 2:
        attrs["direction"] = "bidirectional"
    model = make_model(cell, random_layers(cell, D, L, seed=seed, peepholes=peepholes), attrs)
    path = tmp_path / f"{cell.lower()}.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("D,L", [(1, 1), (2, 2)])
def test_onnx_linear_before_reset_0(tmp_path, D, L):
    path = _onnx_file(tmp_path, "GRU", D=D, L=L, seed=D + L)
    report = numpyrnn.verify(path, variants=True)
    assert report.ok, report
    assert report.oracle.startswith("onnxruntime")
    assert "ResetBeforeGRU(" in str(report)
    assert len(report.rows) == 1 + L * D
    assert numpyrnn.verify(path, variants=True, oracle="reference").ok
    m = _load_all(path)["rnn0"]
    assert type(m) is ResetBeforeGRU
    weight = f"weight_hh_l{L - 1}" + ("_reverse" if D == 2 else "")
    bad = numpyrnn.verify(path, _perturb(m, weight), variants=True)
    assert not bad.ok
    assert ("rnn0", "y") in _rows(bad, False)


@pytest.mark.parametrize("D", [1, 2])
def test_onnx_peephole_lstm(tmp_path, D):
    path = _onnx_file(tmp_path, "LSTM", D=D, L=1, peepholes=True, seed=3)
    report = numpyrnn.verify(path, variants=True)
    assert report.ok, report
    assert report.oracle.startswith("onnxruntime") and "peepholes=True" in str(report)
    assert numpyrnn.verify(path, variants=True, oracle="reference").ok
    for peephole in ("weight_ci_l0", "weight_cf_l0", "weight_co_l0"):  # each is read, in ONNX's i, o, f order
        m = _load_all(path)["rnn0"]
        assert type(m) is PeepholeLSTM and m.peepholes
        for oracle in (None, "reference"):
            assert not numpyrnn.verify(path, _perturb(m, peephole), variants=True, oracle=oracle).ok, peephole


def test_onnx_clip_and_reverse(tmp_path):
    path = _onnx_file(tmp_path, "LSTM", D=1, L=1, seed=6, attrs={"clip": 0.6, "direction": "reverse"})
    m = _load_all(path)["rnn0"]
    assert type(m) is Directions and m.time == "reverse" and m.module.preactivation_clip == pytest.approx(0.6)
    for oracle in (None, "reference"):
        report = numpyrnn.verify(path, variants=True, oracle=oracle)
        assert report.ok, report
    assert not numpyrnn.verify(path, _perturb(m, "module.weight_ih_l0"), variants=True).ok


# --------------------------------------------------------------------------------------
# TF1 GRUCell variables (.npz)
# --------------------------------------------------------------------------------------

def test_tf1_grucell(tmp_path):
    rng = np.random.default_rng(7)
    arrays = {}
    for k in range(2):
        width = (I if k == 0 else H) + H
        scope = f"encoder/rnn/multi_rnn_cell/cell_{k}/gru_cell"
        arrays.update({f"{scope}/gates/kernel": rng.uniform(-0.8, 0.8, (width, 2 * H)),
                       f"{scope}/gates/bias": rng.uniform(-0.8, 0.8, (2 * H,)),
                       f"{scope}/candidate/kernel": rng.uniform(-0.8, 0.8, (width, H)),
                       f"{scope}/candidate/bias": rng.uniform(-0.8, 0.8, (H,))})
    path = tmp_path / "ckpt.npz"
    np.savez(path, **{k: v.astype(np.float32) for k, v in arrays.items()})
    report = numpyrnn.verify(path, variants=True)
    assert report.ok, report
    try:
        from numpyrnn.verify import _tensorflow_cells

        _tensorflow_cells()
        assert report.oracle.startswith("tensorflow") and "GRUCell" in report.oracle
    except ImportError:
        assert report.oracle.startswith("numpyrnn.reference (numpy, float64; TensorFlow")
    assert "ResetBeforeGRU(" in str(report)
    m = _load_all(path)["encoder"]
    assert type(m) is ResetBeforeGRU and m.num_layers == 2
    bad = numpyrnn.verify(path, _perturb(m, "bias_ih_l1"), variants=True)
    assert not bad.ok
    assert {o for _, o in _rows(bad, False)} == {"y", "h_n[layer 1]"}  # the layer below is right
