"""TF1 cell variables against a numpy transcription of TF1's cell equations.

TF1 is not installable next to torch, so :mod:`tests.interop.tf1_lstm_reference`
(written from ``rnn_cell_impl.py``, independent of numpyrnn) is the oracle.
Every bias is random and non-zero, and ``forget_bias`` takes several values, so
a bias or forget-bias bug cannot hide.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, NumpyRNN

from . import tf1_lstm_reference as ref

ATOL = 1e-5
T, N, I, H, P = 5, 2, 3, 4, 2

#: case -> (numpyrnn class, reference cell, projection size)
CELLS = {
    "LSTM": (NumpyLSTM, "LSTM", 0),
    "LSTM-proj": (NumpyLSTM, "LSTM", P),
    "BasicRNN": (NumpyRNN, "RNN", 0),
    "CudnnGRU": (NumpyGRU, "GRU", 0),
}
TOPOLOGIES = {"uni": (1, False), "bi": (1, True), "stack": (2, False), "bistack": (2, True)}


def cell_variables(rng, cell: str, width: int, proj: int = 0) -> dict:
    """Random variables of one TF1 cell reading ``width`` features; biases non-zero."""
    def r(*shape):
        return rng.uniform(-0.6, 0.6, shape).astype(np.float32)

    R = proj or H
    if cell == "LSTM":
        v = {"kernel": r(width + R, 4 * H), "bias": r(4 * H)}
        if proj:
            v["projection/kernel"] = r(H, proj)
        return v
    if cell == "RNN":
        return {"kernel": r(width + H, H), "bias": r(H)}
    return {
        "gates/kernel": r(width + H, 2 * H), "gates/bias": r(2 * H),
        "candidate/input_projection/kernel": r(width, H), "candidate/input_projection/bias": r(H),
        "candidate/hidden_projection/kernel": r(H, H), "candidate/hidden_projection/bias": r(H),
    }


def make_source(rng, cell: str, layers: int, bidirectional: bool, proj: int = 0) -> list:
    out, width = [], I
    for _ in range(layers):
        if bidirectional:
            out.append({"fw": cell_variables(rng, cell, width, proj), "bw": cell_variables(rng, cell, width, proj)})
        else:
            out.append(cell_variables(rng, cell, width, proj))
        width = (proj or H) * (2 if bidirectional else 1)
    return out


def run_torch(module, x):
    with torch.no_grad():
        y, hn = module(torch.from_numpy(x))
    return y.numpy(), hn


def assert_matches_reference(module, cell, layers, x, forget_bias, bidirectional):
    """Outputs and every final state of the module equal the reference's."""
    y_ref, states = ref.stack(cell, x, layers, forget_bias=forget_bias)
    y, hn = run_torch(module, x)
    np.testing.assert_allclose(y, y_ref, atol=ATOL, rtol=0)
    D = 2 if bidirectional else 1
    for k, s in enumerate(states):
        for d, sd in enumerate(s if bidirectional else (s,)):
            if cell == "LSTM":  # TF1 LSTMStateTuple(c, h); torch (h_n, c_n)
                c, m = sd
                np.testing.assert_allclose(hn[0][k * D + d].numpy(), m, atol=ATOL, rtol=0)
                np.testing.assert_allclose(hn[1][k * D + d].numpy(), c, atol=ATOL, rtol=0)
            else:
                np.testing.assert_allclose(hn[k * D + d].numpy(), sd, atol=ATOL, rtol=0)


def flat(source: list) -> list[tuple[str, dict]]:
    """(path, variables) for every layer and direction."""
    out = []
    for k, layer in enumerate(source):
        for d in ("fw", "bw") if "fw" in layer else (None,):
            out.append((f"[{k}]" + (f"[{d}]" if d else ""), layer[d] if d else layer))
    return out


@pytest.fixture(params=[(c, t) for c in CELLS for t in TOPOLOGIES], ids=lambda p: f"{p[0]}-{p[1]}")
def case(request):
    name, topology = request.param
    cls, cell, proj = CELLS[name]
    L, bidirectional = TOPOLOGIES[topology]
    rng = np.random.default_rng(sum(map(ord, name + topology)))
    layers = make_source(rng, cell, L, bidirectional, proj)
    x = rng.uniform(-1, 1, (T, N, I)).astype(np.float32)
    return dict(cls=cls, cell=cell, proj=proj, L=L, bidirectional=bidirectional, layers=layers, x=x,
                source=layers if L > 1 else layers[0])


FORGET = [1.0, 0.0, 0.7]


@pytest.mark.parametrize("forget_bias", FORGET)
def test_import_matches_reference(case, forget_bias):
    assert case["cls"].from_tf1(case["source"]).batch_first  # like dynamic_rnn: batch-major
    module = case["cls"].from_tf1(case["source"], forget_bias=forget_bias, batch_first=False)
    assert module.num_layers == case["L"] and module.bidirectional == case["bidirectional"]
    assert not module.batch_first and module.bias
    assert getattr(module, "proj_size", 0) == case["proj"]
    fb = forget_bias if case["cell"] == "LSTM" else 0.0  # only LSTMCell has a forget bias
    assert_matches_reference(module, case["cell"], case["layers"], case["x"], fb, case["bidirectional"])


@pytest.mark.parametrize("forget_bias", FORGET)
def test_export_round_trip(case, forget_bias):
    """Export gives back the variables: exactly, except that adding and subtracting forget_bias
    rounds the LSTM f-gate bias once in float32 (so it is exact for forget_bias=0)."""
    module = case["cls"].from_tf1(case["source"], forget_bias=forget_bias)
    exported = module.to_tf1(forget_bias=forget_bias)
    assert len(exported) == case["L"]
    for (path, got), (_, want) in zip(flat(exported), flat(case["layers"])):
        assert sorted(got) == sorted(want), path
        for name in want:
            if name == "bias" and case["cell"] == "LSTM":
                fb = np.float32(forget_bias)
                expect = want[name].copy()
                expect[2 * H:3 * H] = (want[name][2 * H:3 * H] + fb) - fb  # what float32 arithmetic gives
                np.testing.assert_array_equal(got[name], expect, err_msg=f"{path}[{name!r}]")
                np.testing.assert_allclose(got[name], want[name], rtol=0, atol=float(np.spacing(np.float32(1 + abs(fb)))))
                if forget_bias == 0.0:
                    np.testing.assert_array_equal(got[name], want[name])
            else:
                np.testing.assert_array_equal(got[name], want[name], err_msg=f"{path}[{name!r}]")
    again = case["cls"].from_tf1(exported, forget_bias=forget_bias)
    for k, v in module.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v, rtol=0, atol=float(np.spacing(np.float32(2))))


@pytest.mark.parametrize("forget_bias", [1.0, 0.0])
def test_exported_variables_run_in_reference(case, forget_bias):
    """Import with TF1's default, export for a cell run with another forget_bias: same outputs."""
    module = case["cls"].from_tf1(case["source"], batch_first=False)
    exported = module.to_tf1(forget_bias=forget_bias)
    fb = forget_bias if case["cell"] == "LSTM" else 0.0
    assert_matches_reference(module, case["cell"], exported, case["x"], fb, case["bidirectional"])


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("bias", [True, False])
def test_torch_module_to_tf1(name, bias):
    """A torch module (both biases random, or none) exports to variables the TF1 equations run."""
    cls, cell, proj = CELLS[name]
    torch.manual_seed(0)
    kwargs = dict(proj_size=proj) if proj else {}
    module = cls(I, H, num_layers=2, bidirectional=True, bias=bias, **kwargs)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.6, 0.6)
    x = np.random.default_rng(3).uniform(-1, 1, (T, N, I)).astype(np.float32)
    exported = module.to_tf1()
    fb = 1.0 if cell == "LSTM" else 0.0
    assert_matches_reference(module, cell, exported, x, fb, True)


def test_lstm_mapping_gate_by_gate(rng):
    """The mapping itself, written out: TF1 i, j, f, o -> torch i, f, g, o; kernel rows x then h."""
    v = cell_variables(rng, "LSTM", I)
    m = NumpyLSTM.from_tf1(v, forget_bias=0.5)
    for torch_gate, tf_gate in enumerate([0, 2, 1, 3]):
        rows, cols = slice(torch_gate * H, (torch_gate + 1) * H), slice(tf_gate * H, (tf_gate + 1) * H)
        np.testing.assert_array_equal(m.weight_ih_l0.detach().numpy()[rows], v["kernel"][:I, cols].T)
        np.testing.assert_array_equal(m.weight_hh_l0.detach().numpy()[rows], v["kernel"][I:, cols].T)
        np.testing.assert_array_equal(m.bias_ih_l0.detach().numpy()[rows], v["bias"][cols] + np.float32(0.5 if tf_gate == 2 else 0))
    np.testing.assert_array_equal(m.bias_hh_l0.detach().numpy(), np.zeros(4 * H, np.float32))


# --------------------------------------------------------------------------------------
# refusals and bad structures
# --------------------------------------------------------------------------------------

def gru_cell_variables(rng):
    """TF1 GRUCell (reset before the matmul): gates + candidate kernels over [x, h]."""
    return {"gates/kernel": rng.standard_normal((I + H, 2 * H)).astype(np.float32),
            "gates/bias": np.ones(2 * H, np.float32),
            "candidate/kernel": rng.standard_normal((I + H, H)).astype(np.float32),
            "candidate/bias": np.zeros(H, np.float32)}


def test_refuses_gru_cell(rng):
    with pytest.raises(LayoutError, match=r"source: cannot be loaded into torch: TF1's GRUCell .* applies the reset gate "
                                          r"before the candidate matmul"):
        NumpyGRU.from_tf1(gru_cell_variables(rng))
    with pytest.raises(LayoutError, match=r"source\[1\]: cannot be loaded.*GRUCell"):
        NumpyGRU.from_tf1([cell_variables(rng, "GRU", I), gru_cell_variables(rng)])


def test_refuses_lstm_variables_for_a_gru(rng):
    with pytest.raises(LayoutError, match=r"source: these are LSTMCell or BasicRNNCell variables \(kernel, bias\); "
                                          r"use NumpyLSTM.from_tf1 or NumpyRNN.from_tf1.*reset gate before"):
        NumpyGRU.from_tf1(cell_variables(rng, "LSTM", I))


def test_refuses_gru_variables_for_an_lstm(rng):
    with pytest.raises(LayoutError, match=r"CudnnCompatibleGRUCell variables.*use NumpyGRU.from_tf1"):
        NumpyLSTM.from_tf1(cell_variables(rng, "GRU", I))


@pytest.mark.parametrize("peephole", ["w_i_diag", "w_f_diag", "w_o_diag"])
def test_refuses_peepholes(rng, peephole):
    v = cell_variables(rng, "LSTM", I) | {peephole: np.ones(H, np.float32)}
    with pytest.raises(LayoutError, match=rf"\['{peephole}'\] cannot be loaded into torch: LSTMCell\(use_peepholes=True\)"):
        NumpyLSTM.from_tf1(v)


def test_refuses_independent_stacks(rng):
    source = {"fw": make_source(rng, "LSTM", 2, False), "bw": make_source(rng, "LSTM", 2, False)}
    with pytest.raises(LayoutError, match=r"two independent stacks \(bidirectional_dynamic_rnn over MultiRNNCell\)"):
        NumpyLSTM.from_tf1(source)


def test_unknown_keys_named_with_prefix_hint(rng):
    v = cell_variables(rng, "LSTM", I)
    prefixed = {f"rnn/multi_rnn_cell/cell_0/lstm_cell/{k}": a for k, a in v.items()}
    with pytest.raises(LayoutError, match=r"source: unknown keys \['rnn/multi_rnn_cell/cell_0/lstm_cell/bias', .*"
                                          r"strip the scope prefix, e.g. 'rnn/multi_rnn_cell/cell_0/lstm_cell/'"):
        NumpyLSTM.from_tf1(prefixed)
    with pytest.raises(LayoutError, match=r"source\['bw'\]: unknown keys \['weights'\] for a TF1 LSTMCell/BasicLSTMCell"):
        NumpyLSTM.from_tf1({"fw": v, "bw": v | {"weights": v["kernel"]}})


@pytest.mark.parametrize("make, error, match", [
    (lambda v: {"kernel": v["kernel"]}, LayoutError, r"source: missing \['bias'\]"),
    (lambda v: {"fw": v}, LayoutError, r"source: a bidirectional layer is exactly \{'fw': ..., 'bw': ...\}; missing \['bw'\]"),
    (lambda v: {"fw": v, "bw": v, "extra": v}, LayoutError, r"unexpected keys \['extra'\]"),
    (lambda v: {"fw": v, "bw": [v["kernel"]]}, LayoutError, r"two independent stacks"),
    (lambda v: {"fw": v, "bw": 3}, LayoutError, r"source\['bw'\]: expected a mapping of TF1 variables, got int"),
    (lambda v: [v, {"fw": v, "bw": v}], LayoutError, r"source\[1\]: bidirectional, but source\[0\] is unidirectional"),
    (lambda v: [v, [v]], LayoutError, r"source\[1\]: expected a mapping.*got list; a stack is one flat list"),
    (lambda v: [], LayoutError, r"source: empty list"),
    (lambda v: v["kernel"], TypeError, r"from_tf1 takes a mapping of TF1 variables.*got ndarray"),
    (lambda v: v | {"kernel": v["kernel"][:, :15]}, LayoutError, r"source\['kernel'\]: expected \[input\+units, 4\*units\].*got shape \(7, 15\)"),
    (lambda v: v | {"kernel": v["kernel"][:4]}, LayoutError, r"4 rows leave no input features after the 4 recurrent ones"),
    (lambda v: v | {"bias": v["bias"][:12]}, LayoutError, r"source\['bias'\] \(tf1 layout\): expected \(4\*units=16,\), got \(12,\)"),
    (lambda v: v | {"bias": v["bias"].astype(np.int64)}, TypeError, r"source\['bias'\]: dtype int64"),
    (lambda v: v | {"projection/kernel": np.ones((H, H), np.float32)}, LayoutError, r"0 < proj < units"),
])
def test_bad_structures(rng, make, error, match):
    with pytest.raises(error, match=match):
        NumpyLSTM.from_tf1(make(cell_variables(rng, "LSTM", I)))


def test_bad_stacks(rng):
    v0 = cell_variables(rng, "LSTM", I)
    with pytest.raises(LayoutError, match=r"source\[1\]\['kernel'\] \(tf1 layout\): expected \(units\+units=8, 4\*units=16\), "
                                          r"got \(8, 20\).*a layer of 5 units, layer 0 has 4"):
        NumpyLSTM.from_tf1([v0, {"kernel": np.ones((8, 20), np.float32), "bias": np.ones(20, np.float32)}])
    with pytest.raises(LayoutError, match=r"got \(12, 16\).*output of a bidirectional layer"):
        NumpyLSTM.from_tf1([v0, cell_variables(rng, "LSTM", 2 * H)])
    bi = {"fw": v0, "bw": v0}
    with pytest.raises(LayoutError, match=r"source\[1\]\['fw'\]\['kernel'\].*got \(8, 16\).*is this layer's input from a unidirectional layer"):
        NumpyLSTM.from_tf1([bi, {"fw": cell_variables(rng, "LSTM", H), "bw": cell_variables(rng, "LSTM", H)}])
    proj = cell_variables(rng, "LSTM", I, P)
    with pytest.raises(LayoutError, match=r"source\[1\]: lacks projection/kernel, unlike source\[0\]"):
        NumpyLSTM.from_tf1([proj, cell_variables(rng, "LSTM", P)])


def test_non_finite_and_forget_bias_checks(rng):
    v = cell_variables(rng, "LSTM", I)
    v["kernel"][5, 1] = np.inf
    with pytest.raises(LayoutError, match=r"source\['kernel'\]: holds inf at index \[5, 1\]"):
        NumpyLSTM.from_tf1(v)
    v = cell_variables(rng, "LSTM", I)
    with pytest.raises(TypeError, match=r"forget_bias must be a number.*got str"):
        NumpyLSTM.from_tf1(v, forget_bias="1.0")
    with pytest.raises(LayoutError, match=r"forget_bias must be finite, got nan"):
        NumpyLSTM.from_tf1(v, forget_bias=float("nan"))
    with pytest.raises(TypeError, match=r"forget_bias must be a number"):
        NumpyLSTM(I, H).to_tf1(forget_bias=None)


def test_no_framework_import():
    """TF1 variables are plain arrays: nothing beyond numpy and torch is imported."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, numpy as np\n"
        "from numpyrnn import NumpyLSTM\n"
        "m = NumpyLSTM.from_tf1({'kernel': np.ones((7, 16), 'f'), 'bias': np.ones(16, 'f')})\n"
        "m.to_tf1()\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('keras', 'tensorflow', 'jax', 'flax', 'onnx'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(root)), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_docs_example_runs():
    """The example on the TF1 documentation page runs and its assertions hold."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "frameworks" / "tf1.md").read_text()
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    exec(compile(code, "docs/frameworks/tf1.md", "exec"), {})
