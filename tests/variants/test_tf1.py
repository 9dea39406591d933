"""TF1 GRUCell and peephole/clipped LSTMCell, loaded with variants=True, against TensorFlow's own cells.

TensorFlow and torch live in separate environments here; this module runs only
where TensorFlow (with tf_keras for the legacy ``tf.compat.v1.nn.rnn_cell`` cells)
is installed, and is skipped elsewhere.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, variants
from numpyrnn.variants import PeepholeLSTM, ResetBeforeGRU, VariantWarning

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.compat.v1.nn.rnn_cell lives in tf_keras
tf = pytest.importorskip("tensorflow", reason="needs TensorFlow with tf_keras (the TF1 cells)")
pytest.importorskip("tf_keras", reason="needs tf_keras (the TF1 cells)")

T, N, I, H = 5, 2, 3, 4


def _bare(var) -> str:
    """``rnn/gru_cell/gates/kernel:0`` -> ``gates/kernel``."""
    name = var.name.split(":")[0]
    for tail in ("gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias", "projection/kernel",
                 "w_i_diag", "w_f_diag", "w_o_diag", "kernel", "bias"):
        if name.endswith(tail):
            return tail
    raise AssertionError(name)


def _run(cell, x, rng):
    """Run one cell over ``x`` ``[T, N, in]``; randomise its variables first; return outputs and variables."""
    state = cell.get_initial_state(batch_size=x.shape[1], dtype=tf.float32)
    cell(tf.constant(x[0]), state)  # builds the variables
    for v in cell.variables:
        v.assign(rng.uniform(-0.8, 0.8, v.shape).astype(np.float32))
    ys = []
    for t in range(x.shape[0]):
        y, state = cell(tf.constant(x[t]), state)
        ys.append(y.numpy())
    return np.stack(ys), {_bare(v): v.numpy() for v in cell.variables}


def _stack(make, x, layers, bidirectional, seed):
    """``stack_bidirectional_rnn``: each layer reads both directions of the layer below."""
    rng = np.random.default_rng(seed)
    source = []
    for _ in range(layers):
        y, fw = _run(make(), x, rng)
        if bidirectional:
            yb, bw = _run(make(), x[::-1].copy(), rng)
            y = np.concatenate([y, yb[::-1]], axis=-1)
            source.append({"fw": fw, "bw": bw})
        else:
            source.append(fw)
        x = y
    return x, source if layers > 1 else source[0]


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(5).standard_normal((T, N, I)).astype(np.float32)


CELLS = tf.compat.v1.nn.rnn_cell


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (1, True), (2, False), (2, True)])
def test_grucell(layers, bidirectional, x):
    want, source = _stack(lambda: CELLS.GRUCell(H), x, layers, bidirectional, seed=layers)
    with pytest.raises(LayoutError, match="GRUCell"):
        NumpyGRU.from_tf1(source)
    with pytest.warns(VariantWarning, match="from_tf1: built ResetBeforeGRU"):
        m = NumpyGRU.from_tf1(source, variants=True, batch_first=False)  # x is time-major
    assert type(m) is ResetBeforeGRU
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(x))[0].numpy(), want, rtol=0, atol=1e-5)
    back, config = variants.to_tf1(m)
    assert config == {}
    flat = back  # one entry per layer, bottom first
    orig = [source] if layers == 1 else source
    for a, b in zip(flat, orig):
        for d in (("fw", "bw") if bidirectional else (None,)):
            u, v = (a[d], b[d]) if d else (a, b)
            assert u.keys() == v.keys()
            for n in u:
                np.testing.assert_allclose(u[n], v[n], rtol=0, atol=1e-6)


LSTM_CASES = [
    dict(use_peepholes=True),
    dict(use_peepholes=True, cell_clip=0.4),
    dict(cell_clip=0.3),
    dict(use_peepholes=True, num_proj=2, proj_clip=0.2, cell_clip=0.8),
    dict(num_proj=3, proj_clip=0.25),
]


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (1, True), (2, True)])
@pytest.mark.parametrize("kw", LSTM_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
@pytest.mark.parametrize("forget_bias", [1.0, 0.0])
def test_lstmcell_peepholes_and_clipping(kw, forget_bias, layers, bidirectional, x):
    want, source = _stack(lambda: CELLS.LSTMCell(H, forget_bias=forget_bias, **kw), x, layers, bidirectional,
                          seed=len(kw) + layers)
    clips = {k: kw[k] for k in ("cell_clip", "proj_clip") if k in kw}
    with pytest.warns(VariantWarning, match="from_tf1: built PeepholeLSTM"):
        m = NumpyLSTM.from_tf1(source, variants=True, batch_first=False, forget_bias=forget_bias, **clips)
    assert type(m) is PeepholeLSTM and m.peepholes == kw.get("use_peepholes", False)
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(x))[0].numpy(), want, rtol=0, atol=1e-5)
    back, config = variants.to_tf1(m, forget_bias=forget_bias)
    assert config["use_peepholes"] == kw.get("use_peepholes", False)
    assert config["cell_clip"] == kw.get("cell_clip") and config["proj_clip"] == kw.get("proj_clip")
    again, _ = _stack(lambda: CELLS.LSTMCell(H, forget_bias=forget_bias, **kw), x, layers, bidirectional,
                      seed=len(kw) + layers)
    np.testing.assert_allclose(again, want, rtol=0, atol=0)  # the oracle is deterministic
    flat = back  # one entry per layer, bottom first
    orig = [source] if layers == 1 else source
    for a, b in zip(flat, orig):
        for d in (("fw", "bw") if bidirectional else (None,)):
            u, v = (a[d], b[d]) if d else (a, b)
            assert u.keys() == v.keys()
            for n in u:
                np.testing.assert_allclose(u[n], v[n], rtol=0, atol=1e-6)


def test_peepholes_refused_by_default(x):
    _, source = _stack(lambda: CELLS.LSTMCell(H, use_peepholes=True), x, 1, False, seed=0)
    with pytest.raises(LayoutError, match=r"\['w_f_diag', 'w_i_diag', 'w_o_diag'\] cannot be loaded into torch"):
        NumpyLSTM.from_tf1(source)
    with pytest.raises(TypeError, match="pass variants=True"):
        NumpyLSTM.from_tf1(source, cell_clip=1.0)


@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (1, True)])
def test_grucell_file_through_load_all_and_convert(layers, bidirectional, x, tmp_path):
    """GRUCell variables saved under TF1's scope names, read by numpyrnn.load_all(variants=True) and converted."""
    import warnings

    import numpyrnn
    from numpyrnn.cli import main
    from numpyrnn.formats.tf1 import tf1_arrays

    want, source = _stack(lambda: CELLS.GRUCell(H), x, layers, bidirectional, seed=10 + layers)
    per_layer = [source] if layers == 1 else source
    arrays = {k.replace("cudnn_compatible_gru_cell", "gru_cell"): v for k, v in tf1_arrays(per_layer, "GRU").items()}
    np.savez(tmp_path / "gru.npz", **arrays)
    with pytest.raises(LayoutError, match=r"GRUCell.*variants=True builds ResetBeforeGRU"):
        numpyrnn.load(tmp_path / "gru.npz")
    with pytest.warns(VariantWarning, match=r"gru\.npz: module '.*': built ResetBeforeGRU"):
        (m,) = numpyrnn.load_all(tmp_path / "gru.npz", variants=True).values()
    assert type(m) is ResetBeforeGRU and not m.batch_first  # the file's TF1 arrays are read time-major
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(x))[0].numpy(), want, rtol=0, atol=1e-5)
    assert main(["convert", str(tmp_path / "gru.npz"), "-o", str(tmp_path / "gru.pt"), "--variants"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantWarning)
        back = numpyrnn.load(tmp_path / "gru.pt")
    with torch.no_grad():
        np.testing.assert_array_equal(back(torch.from_numpy(x))[0].numpy(), m(torch.from_numpy(x))[0].numpy())
