"""``numpyrnn.verify`` on TF1 variables, with TensorFlow's own cells as the oracle.

Runs where TensorFlow with ``tf.compat.v1.nn.rnn_cell`` is installed (the TF-era
environment: TensorFlow 2 with tf_keras and ``TF_USE_LEGACY_KERAS=1``). The cells
are created by TensorFlow, their variables drawn at random there and saved under
TF1's names; verify must then run ``LSTMCell``/``BasicRNNCell`` itself.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.filterwarnings("ignore:`tf.nn.rnn_cell:UserWarning")

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

tf = pytest.importorskip("tensorflow", reason="tensorflow is not installed: pip install numpyrnn[tf-era]")
pytest.importorskip("tf_keras", reason="tf_keras is not installed: pip install numpyrnn[tf-era]")

import numpyrnn  # noqa: E402
from numpyrnn import verify  # noqa: E402

from .tf1_names import random_cell, tf1_names  # noqa: E402

I, H = 3, 4
TOPOLOGIES = {"uni": (1, False), "bi": (1, True), "stack": (2, False), "bistack": (2, True)}


def tf_cell(cell: str, width: int, rng: np.random.Generator, proj: int | None = None,
            relu: bool = False) -> dict[str, np.ndarray]:
    """A cell made by TensorFlow, its variables set to random values there; ``{leaf: value}``."""
    cells = tf.compat.v1.nn.rnn_cell
    if cell == "lstm":
        c = cells.LSTMCell(H, num_proj=proj, state_is_tuple=True)
    else:
        c = cells.BasicRNNCell(H, activation=tf.nn.relu if relu else tf.tanh)
    return _variant_cell(lambda: c, width, rng)


def tf1_file(tmp_path, cell: str, L: int, bi: bool, seed: int, proj: int | None = None, relu: bool = False):
    rng = np.random.default_rng(seed)
    layers, width = [], I
    for _ in range(L):
        if bi:
            layers.append({d: tf_cell(cell, width, rng, proj, relu) for d in ("fw", "bw")})
        else:
            layers.append(tf_cell(cell, width, rng, proj, relu))
        width = (proj or H) * (2 if bi else 1)
    path = tmp_path / "tf1.npz"
    np.savez(path, **tf1_names(layers, cell))
    return path


def perturbed(module, name: str):
    import copy

    other = copy.deepcopy(module)
    with torch.no_grad():
        getattr(other, name).view(-1)[0] += 1e-2
    return other


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("cell", ["lstm", "rnn"])
def test_tensorflow_is_the_oracle(cell, topology, tmp_path):
    L, bi = TOPOLOGIES[topology]
    D = 2 if bi else 1
    options = {"cell": "rnn"} if cell == "rnn" else {}
    path = tf1_file(tmp_path, cell, L, bi, seed=L * 3 + D)
    report = verify(path, **options)
    assert report.ok, str(report)
    assert report.oracle.startswith(f"tensorflow {tf.__version__} (tf.compat.v1.nn.rnn_cell.")
    assert ("LSTMCell" if cell == "lstm" else "BasicRNNCell") in report.oracle
    assert len(report.rows) == 1 + L * D * (2 if cell == "lstm" else 1)
    assert report.max_error < 1e-5 and report.atol == 1e-5
    # the reference over the same arrays agrees, and both catch one changed weight of the top layer
    assert verify(path, oracle="reference", **options).ok
    converted = numpyrnn.load(path, **options)
    name = f"weight_hh_l{L - 1}" + ("_reverse" if bi else "")
    wrong = verify(path, perturbed(converted, name), **options)
    assert not wrong.ok and "tensorflow" in wrong.oracle
    assert all(f"layer {k}" not in r.output for r in wrong.rows if not r.ok for k in range(L - 1))


def test_tensorflow_projection_relu_and_forget_bias(tmp_path):
    path = tf1_file(tmp_path, "lstm", 2, True, seed=11, proj=2)
    report = verify(path)
    assert report.ok and "tensorflow" in report.oracle, str(report)
    # TensorFlow runs forget_bias=0 when told so: the module converted with 1 is then wrong
    assert not verify(path, numpyrnn.load(path), forget_bias=0.0).ok
    assert verify(path, forget_bias=0.0).ok
    relu = tf1_file(tmp_path, "rnn", 1, False, seed=12, relu=True)
    assert verify(relu, cell="rnn", nonlinearity="relu").ok
    with pytest.raises(numpyrnn.LayoutError, match=r"module for 'rnn': RNN\(.*bias\) does not have the source's "
                                                   r"configuration RNN\(.*bias, relu\)"):
        verify(relu, numpyrnn.load(relu, cell="rnn"), cell="rnn", nonlinearity="relu")


def test_gru_has_no_tensorflow_cell(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "gru.npz"
    np.savez(path, **tf1_names([random_cell(rng, "gru", I, H)], "gru"))
    report = verify(path)
    assert report.ok and "no CudnnCompatibleGRUCell" in report.oracle, str(report)


def _variant_cell(make, width: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The cell ``make()`` returns, built for inputs of ``width`` and set to random values; ``{leaf: value}``."""
    c = make()
    c.build((None, width))
    out = {}
    for var in c.weights:
        var.assign(rng.uniform(-0.6, 0.6, var.shape).astype(np.float32))
        out[var.name.split(":")[0].split("/", 1)[1]] = var.numpy()
    return out


def _variant_source(make, L: int, bi: bool, seed: int, out_width: int = H):
    rng = np.random.default_rng(seed)
    layers, width = [], I
    for _ in range(L):
        layers.append({d: _variant_cell(make, width, rng) for d in ("fw", "bw")} if bi else _variant_cell(make, width, rng))
        width = out_width * (2 if bi else 1)
    return layers if L > 1 else layers[0]


@pytest.mark.parametrize("topology", list(TOPOLOGIES))
def test_variants_grucell_against_tensorflow(topology):
    """TF1's GRUCell (reset before the candidate's matmul): ResetBeforeGRU, run next to TensorFlow's GRUCell."""
    from numpyrnn.variants import ResetBeforeGRU, VariantWarning

    L, bi = TOPOLOGIES[topology]
    source = _variant_source(lambda: tf.compat.v1.nn.rnn_cell.GRUCell(H), L, bi, seed=L + bi)
    report = verify(source, variants=True)
    assert report.ok, report
    assert report.oracle.startswith("tensorflow") and "GRUCell" in report.oracle
    with pytest.warns(VariantWarning):
        m = numpyrnn.NumpyGRU.from_tf1(source, variants=True)
    assert type(m) is ResetBeforeGRU
    with torch.no_grad():
        m.weight_hh_l0[0, 0] += 0.1
    assert not verify(source, m, variants=True).ok


@pytest.mark.parametrize("kw", [dict(use_peepholes=True), dict(use_peepholes=True, cell_clip=0.4),
                                dict(use_peepholes=True, num_proj=2, proj_clip=0.2, cell_clip=0.8)],
                         ids=["peepholes", "cell_clip", "proj_clip"])
def test_variants_lstmcell_against_tensorflow(kw):
    from numpyrnn.variants import PeepholeLSTM, VariantWarning

    source = _variant_source(lambda: tf.compat.v1.nn.rnn_cell.LSTMCell(H, **kw), 2, True, seed=len(kw),
                             out_width=kw.get("num_proj", H))
    clips = {k: kw[k] for k in ("cell_clip", "proj_clip") if k in kw}
    report = verify(source, variants=True, **clips)
    assert report.ok, report
    assert report.oracle.startswith("tensorflow") and "LSTMCell" in report.oracle
    assert verify(source, variants=True, oracle="reference", **clips).ok
    with pytest.warns(VariantWarning):
        m = numpyrnn.NumpyLSTM.from_tf1(source, variants=True, **clips)
    assert type(m) is PeepholeLSTM and m.peepholes
    with torch.no_grad():
        m.weight_cf_l1_reverse[0] += 0.1
    assert not verify(source, m, variants=True, **clips).ok
