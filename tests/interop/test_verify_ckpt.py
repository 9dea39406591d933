"""``numpyrnn.verify`` on TensorFlow checkpoints and PaddlePaddle ``.pdparams``, read without either framework.

The files are the committed fixtures the frameworks wrote (``tests/data/make_tf_checkpoints.py``,
``tests/data/make_paddle_params.py``), with the outputs the frameworks computed. Without the
frameworks the oracle is ``numpyrnn.reference`` over each entry's own arrays, or Keras for
TF2 object-graph checkpoints of Keras layers; it must reproduce the frameworks' saved outputs,
accept numpyrnn's conversions and catch a module with one weight changed.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import sys

import numpy as np
import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import LayoutError, files, verify
from numpyrnn.cli import main
from numpyrnn.variants import VariantWarning

from ..formats.paddle_cases import CASES as PADDLE_CASES
from ..formats.paddle_cases import DATA as PADDLE
from ..formats.tfckpt_cases import CASES as TF_CASES
from ..formats.tfckpt_cases import DATA as TF
from ..formats.tfckpt_cases import FOLDERS, expected

os.environ.setdefault("KERAS_BACKEND", "torch")

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


#: paddle is not in the main test environment (it cannot be hidden: einops probes sys.modules for it)
HAS_PADDLE = importlib.util.find_spec("paddle") is not None


@pytest.fixture(autouse=True)
def no_tensorflow(monkeypatch):
    """As where TensorFlow is not installed (the main test environment)."""
    import einops

    for a in (torch.zeros(1), np.zeros(1)):  # einops finds its backends by sys.modules: found before hiding it
        einops.rearrange(a, "a -> a")
    monkeypatch.setitem(sys.modules, "tensorflow", None)


def ckpt(case: str):
    return TF / (case if case in FOLDERS else f"{case}.ckpt")


def perturbed(module: nn.Module, name: str) -> nn.Module:
    other = copy.deepcopy(module)
    with torch.no_grad():
        getattr(other, name).view(-1)[0] += 1e-2
    return other


def last_weight(module: nn.Module) -> str:
    return [n for n, _ in module.named_parameters() if n.startswith("weight_ih")][-1]


def oracle_cases(path, **options):
    """verify's own cases for a path (the oracle each module is checked against)."""
    from numpyrnn.verify import _path_cases

    return _path_cases(path, None, {**options, "_reference": False})[1]


# --------------------------------------------------------------------------------------
# TensorFlow checkpoints
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(TF_CASES))
def test_checkpoint_verifies(case):
    path = ckpt(case)
    report = verify(path)
    assert report.ok, str(report)
    assert list(report.modules) == TF_CASES[case] == list(numpyrnn.load_all(path))
    assert report.dtype == "float32" and report.max_error < report.atol == 1e-5
    if case.startswith("keras"):
        assert report.oracle.startswith("keras "), report.oracle
    elif case == "cudnn_gru":
        assert "TensorFlow has no CudnnCompatibleGRUCell" in report.oracle
    else:
        assert report.oracle == ("numpyrnn.reference (numpy, float64; TensorFlow is not installed), over the "
                                 "source's arrays read with TF1's formulas"), report.oracle


@pytest.mark.parametrize("case", sorted(TF_CASES))
def test_checkpoint_oracle_reproduces_tensorflow(case):
    """The oracle over the checkpoint's arrays computes what TensorFlow computed when it wrote the file."""
    data = np.load(TF / f"{case}.npz")
    cases = oracle_cases(ckpt(case))
    for k, c in enumerate(cases):
        module = c.module
        want, inp = expected(data, case, k, c.name)
        x_bm = inp if module.batch_first else inp.transpose(1, 0, 2)
        spec = numpyrnn.spec.RNNSpec.of(module)
        rows = spec.num_layers * spec.directions
        N = x_bm.shape[0]
        h0 = np.zeros((rows, N, spec.rec))
        c0 = np.zeros((rows, N, spec.hidden_size)) if spec.mode == "LSTM" else None
        y = c.run(x_bm.astype(np.float64), h0, c0)["y"]
        y = y if module.batch_first else y.transpose(1, 0, 2)
        if c.name.endswith("/bw"):
            y = y[::-1]
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5, err_msg=f"{case}: {c.name}")


@pytest.mark.parametrize("case", ["lstm_stack", "stack_bidir", "lstm_proj", "cudnn_lstm_bidir", "cudnn_gru",
                                  "keras_object", "keras_cu_dnnlstm", "keras_cu_dnngru"])
def test_checkpoint_catches_a_changed_weight(case, tmp_path):
    path = ckpt(case)
    modules = numpyrnn.load_all(path)
    name = next(iter(modules))
    bad = perturbed(modules[name], last_weight(modules[name]))
    report = verify(path, {name: bad})
    assert not report.ok and "y" in [r.output for r in report.rows if not r.ok], str(report)
    assert list(report.modules) == [name]
    # the CLI: a converted file with the changed module exits 1, numpyrnn's own conversion 0
    files.write_state_dict(tmp_path / "bad.pt", bad.state_dict())
    assert main(["verify", str(path), str(tmp_path / "bad.pt"), "--layer", name]) == 1
    assert main(["verify", str(path)]) == 0


def test_checkpoint_cli_prints_the_table(capsys):
    assert main(["verify", str(ckpt("cudnn_lstm"))]) == 0
    out = capsys.readouterr().out
    assert "oracle: numpyrnn.reference (numpy, float64; TensorFlow is not installed)" in out
    assert "module: cudnn_lstm/rnn: LSTM(input=3, hidden=4, layers=2, unidirectional, bias)" in out
    assert "c_n[layer 1]" in out and "OK: 5 output(s) within tolerance" in out


def test_cudnn_bias_split_is_checked_by_its_sum():
    """CudnnLSTM/CudnnGRU store one summed bias: any split computes it, another sum does not."""
    path = ckpt("cudnn_lstm")
    whole = numpyrnn.load(path, split_bias=False)
    assert verify(path, whole).ok
    other = copy.deepcopy(whole)
    with torch.no_grad():
        other.bias_hh_l0.add_(0.05)
    assert not verify(path, other).ok
    with pytest.raises(LayoutError, match=r"forget_bias=1.0, but these are CudnnLSTM/CudnnCompatibleLSTMCell "
                                          r"weights, which add no forget bias \(0\)"):
        verify(path, forget_bias=1.0)


def test_checkpoint_forget_bias_is_the_readings():
    """TF1 LSTMCell's forget bias is not stored: the option, not the recorded default, is what is checked."""
    path = ckpt("lstm_stack")
    zero = numpyrnn.load(path, forget_bias=0.0)
    assert not verify(path, zero).ok
    assert verify(path, zero, forget_bias=0.0).ok
    assert verify(path, forget_bias=0.0).ok


@pytest.mark.parametrize("case, variant", [("gru_cell", "ResetBeforeGRU"), ("peephole", "PeepholeLSTM")])
def test_checkpoint_variants(case, variant):
    path = ckpt(case)
    report = verify(path, variants=True)
    assert report.ok, str(report)
    assert report.modules["rnn"].startswith(variant), report.modules
    assert "TF1's formulas" in report.oracle
    with pytest.warns(VariantWarning, match=f"{case}.ckpt: module 'rnn': built {variant}"):
        bad = copy.deepcopy(numpyrnn.load(path, variants=True))
    with torch.no_grad():
        next(p for n, p in bad.named_parameters() if "weight" in n).view(-1)[0] += 1e-2
    caught = verify(path, bad, variants=True)
    assert not caught.ok and not caught.rows[0].ok, str(caught)
    # without variants=True the refusal says what would build it
    with pytest.raises(LayoutError, match=rf"cannot be loaded into torch: .*variants=True builds {variant}"):
        verify(path)


def test_checkpoint_refusals(tmp_path):
    with pytest.raises(LayoutError, match=r"keras_gru_v1.ckpt: .*reset_after=False"):
        verify(ckpt("keras_gru_v1"))
    with pytest.raises(FileNotFoundError, match=r"nothing.ckpt: no such file or folder"):
        verify(tmp_path / "nothing.ckpt")
    with pytest.raises(LayoutError, match=r"lstm_stack.ckpt: holds 1 recurrent module|module for 'rnn': "
                                          r"GRU\(input=3, hidden=4.*does not have the source's configuration LSTM"):
        verify(ckpt("lstm_stack"), nn.GRU(3, 4, 2))


# --------------------------------------------------------------------------------------
# PaddlePaddle
# --------------------------------------------------------------------------------------

def pd(case: str):
    return PADDLE / f"{case}.pdparams"


@pytest.mark.parametrize("case", sorted(PADDLE_CASES))
def test_pdparams_verify(case):
    name, options, _, _, _, _ = PADDLE_CASES[case]
    report = verify(pd(case), **options)
    assert report.ok, str(report)
    assert list(report.modules) == [name]
    if not HAS_PADDLE:
        assert report.oracle == ("numpyrnn.reference (numpy, float64; paddle is not installed), over the source's "
                                 "arrays read with Paddle's layout (torch's gate order and formulas)"), report.oracle
    reference = verify(pd(case), oracle="reference", **options)
    assert reference.ok and "numpyrnn.reference (numpy, float64; asked for)" in reference.oracle


@pytest.mark.parametrize("case", sorted(PADDLE_CASES))
def test_pdparams_oracle_reproduces_paddle(case):
    """The reference over the file's arrays computes what paddle computed when it wrote the file."""
    _, options, _, _, _, _ = PADDLE_CASES[case]
    data = np.load(PADDLE / f"{case}.npz")
    (c,) = oracle_cases(pd(case), **options)
    spec = numpyrnn.spec.RNNSpec.of(c.module)
    x_bm = data["x"] if c.module.batch_first else data["x"].transpose(1, 0, 2)
    rows, N = spec.num_layers * spec.directions, x_bm.shape[0]
    c0 = np.zeros((rows, N, spec.hidden_size)) if spec.mode == "LSTM" else None
    y = c.run(x_bm.astype(np.float64), np.zeros((rows, N, spec.rec)), c0)["y"]
    y = y if c.module.batch_first else y.transpose(1, 0, 2)
    np.testing.assert_allclose(y, data["y"], rtol=1e-5, atol=1e-5, err_msg=case)


@pytest.mark.parametrize("case", ["lstm2", "gru_bidirect", "lstm_proj_bidirect", "rnn_tanh_bidirect", "model"])
def test_pdparams_catch_a_changed_weight(case, tmp_path):
    name, options, _, _, _, _ = PADDLE_CASES[case]
    module = numpyrnn.load(pd(case), **options)
    bad = perturbed(module, last_weight(module))
    report = verify(pd(case), bad, **options)
    assert not report.ok and "y" in [r.output for r in report.rows if not r.ok], str(report)
    files.write_state_dict(tmp_path / "bad.pt", bad.state_dict())
    assert main(["verify", str(pd(case)), str(tmp_path / "bad.pt")]) == 1
    assert main(["verify", str(pd(case))]) == 0


def test_pdparams_nonlinearity_is_the_readings():
    """A SimpleRNN's activation is not stored: the option says it, and a module of the other one is refused."""
    relu = numpyrnn.load(pd("rnn_relu"), nonlinearity="relu")
    report = verify(pd("rnn_relu"), relu, nonlinearity="relu")
    assert report.ok and "RNN(input=3, hidden=4, layers=1, unidirectional, bias, relu)" in str(report)
    with pytest.raises(LayoutError, match=r"module for 'rnn': RNN\(.*relu\) does not have the source's "
                                          r"configuration RNN\(input=3, hidden=4, layers=1, unidirectional, bias\)$"):
        verify(pd("rnn_relu"), relu)
    with pytest.raises(LayoutError, match=r"module for 'rnn': RNN\(.*bias\) does not have the source's "
                                          r"configuration RNN\(.*relu\)"):
        verify(pd("rnn_relu"), numpyrnn.load(pd("rnn_relu")), nonlinearity="relu")
    # without the option, module and oracle both compute Paddle's default tanh
    tanh = verify(pd("rnn_relu"))
    assert tanh.ok and tanh.rows[0].max_error < 1e-5


def test_pdparams_refusals(tmp_path):
    with pytest.raises(LayoutError, match=r"module for 'rnn': LSTM\(input=3, hidden=4, layers=1.*does not have "
                                          r"the source's configuration LSTM\(input=3, hidden=4, layers=2"):
        verify(pd("lstm2"), nn.LSTM(3, 4, 1))
    with pytest.raises(LayoutError, match=r"lstm2.pdparams: time_major=True and batch_first=True contradict"):
        verify(pd("lstm2"), time_major=True, batch_first=True)
