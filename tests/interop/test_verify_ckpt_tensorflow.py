"""``numpyrnn.verify`` on TensorFlow checkpoints with TensorFlow's own cells as the oracle.

Runs where TensorFlow with ``tf.compat.v1.nn.rnn_cell`` is installed (the TF-era
environment: TensorFlow 2 with tf_keras and ``TF_USE_LEGACY_KERAS=1``). The
checkpoints are the committed ones TensorFlow wrote; verify reads them without
TensorFlow and then runs TensorFlow's ``LSTMCell``/``BasicRNNCell``/``GRUCell``
over the variables of each entry.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "torch")

tf = pytest.importorskip("tensorflow", reason="tensorflow is not installed: pip install numpyrnn[tf-era]")
pytest.importorskip("tf_keras", reason="tf_keras is not installed: pip install numpyrnn[tf-era]")

import numpyrnn  # noqa: E402
from numpyrnn import verify  # noqa: E402
from numpyrnn.variants import VariantWarning  # noqa: E402

from ..formats.tfckpt_cases import CASES, DATA, FOLDERS  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:`tf.nn.rnn_cell:UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

TF1 = sorted(c for c in CASES if not c.startswith("keras") and c != "cudnn_gru")


def ckpt(case: str):
    return DATA / (case if case in FOLDERS else f"{case}.ckpt")


@pytest.mark.parametrize("case", TF1)
def test_tf1_checkpoint_against_tensorflow(case):
    path = ckpt(case)
    report = verify(path)
    assert report.ok, str(report)
    assert list(report.modules) == CASES[case]
    for part in report.oracle.split("; "):
        assert part.startswith(f"tensorflow {tf.__version__} (tf.compat.v1.nn.rnn_cell."), report.oracle
    kinds = {"basic": "BasicRNNCell"}.get(case, "LSTMCell")
    assert kinds in report.oracle
    # one weight changed in the last module: TensorFlow's numbers catch it
    modules = numpyrnn.load_all(path)
    name = list(modules)[-1]
    bad = copy.deepcopy(modules[name])
    with torch.no_grad():
        next(p for n, p in reversed(list(bad.named_parameters())) if n.startswith("weight_ih")).view(-1)[0] += 1e-2
    caught = verify(path, {name: bad})
    assert not caught.ok and "tensorflow" in caught.oracle, str(caught)


@pytest.mark.parametrize("case, cell", [("gru_cell", "GRUCell"), ("peephole", "LSTMCell")])
def test_variant_checkpoint_against_tensorflow(case, cell):
    report = verify(ckpt(case), variants=True)
    assert report.ok, str(report)
    assert report.oracle == f"tensorflow {tf.__version__} (tf.compat.v1.nn.rnn_cell.{cell}, eager)"
    with pytest.warns(VariantWarning, match=f"{case}.ckpt: module 'rnn': built"):
        bad = copy.deepcopy(numpyrnn.load(ckpt(case), variants=True))
    with torch.no_grad():
        next(p for n, p in bad.named_parameters() if "weight" in n).view(-1)[0] += 1e-2
    assert not verify(ckpt(case), bad, variants=True).ok


def test_cudnn_gru_says_why_the_reference():
    report = verify(ckpt("cudnn_gru"))
    assert report.ok, str(report)
    assert "TensorFlow has no CudnnCompatibleGRUCell" in report.oracle


@pytest.mark.parametrize("case", sorted(c for c in CASES if c.startswith("keras")))
def test_keras_checkpoint_against_keras(case):
    report = verify(ckpt(case))
    assert report.ok, str(report)
    assert report.oracle.startswith("keras "), report.oracle


def test_oracle_reproduces_the_saved_outputs():
    """TensorFlow's cells over the checkpoint's arrays compute what TensorFlow saved with it."""
    from numpyrnn.verify import _path_cases

    data = np.load(DATA / "stack_bidir.npz")
    (case,) = _path_cases(ckpt("stack_bidir"), None, {"_reference": False})[1]
    assert case.oracle.startswith("tensorflow ")
    x = data["x"].transpose(1, 0, 2)  # time-major in the file
    L = case.module.num_layers * 2
    out = case.run(x.astype(np.float32), np.zeros((L, x.shape[0], 4)), np.zeros((L, x.shape[0], 4)))
    np.testing.assert_allclose(out["y"].transpose(1, 0, 2), data["y"], rtol=1e-5, atol=1e-5)
