"""``numpyrnn.detect``: the reading of block arrays that reproduces a recorded output.

The "original system" in each test is computed independently of numpyrnn where it
matters: the question's own row loop, and ``numpyrnn.reference`` (numpy, from the
formulas) for gate orders and bias conventions.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from numpyrnn import Detection, LayoutError, NumpyGRU, NumpyLSTM, NumpyRNN, detect, reference
from tests.test_seed_loop import original_loop, question_arrays

I, H, T, N = 3, 4, 6, 2
GRU_ORDERS = ["".join(p) for p in itertools.permutations("rzn")]
LSTM_ORDERS = ["".join(p) for p in itertools.permutations("ifgo")]


def arrays(G: int, *, L: int = 1, D: int = 2, bias: int | None = None, seed: int = 0, R: int = H) -> dict:
    rng = np.random.default_rng(seed)

    def r(*shape):
        return rng.uniform(-0.8, 0.8, shape).astype(np.float32)

    out = {"w0": r(D, H, G * (I + R)), "w": r(L - 1, D, H, G * (D * R + R)) if L > 1 else None}
    if bias:
        out["b0"] = r(D, H, bias)
        out["b"] = r(L - 1, D, H, bias) if L > 1 else None
    return out


def x_of(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (T, N, I)).astype(np.float32)


def run(cls, a: dict, x: np.ndarray, **kw) -> np.ndarray:
    with torch.no_grad():
        return cls.from_numpy(**{k: v for k, v in a.items() if v is not None}, **kw)(torch.from_numpy(x))[0].numpy()


def reproduces(cls, a: dict, found: Detection, x: np.ndarray, y: np.ndarray) -> None:
    a = {k: v for k, v in a.items() if v is not None and k not in found}
    with torch.no_grad():
        out = cls.from_numpy(**a, **found)(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(out, y, atol=1e-5, rtol=0)
    assert found.error <= found.atol


@pytest.mark.parametrize("rowwise", [False, True], ids=["blocks", "rowwise"])
@pytest.mark.parametrize("gates", GRU_ORDERS)
def test_every_gru_gate_order(gates, rowwise):
    a = arrays(3, bias=6, seed=len(gates) + rowwise)
    x = x_of()
    y, _ = reference.gru(x, a["w0"], b0=a["b0"], gates=gates, rowwise=rowwise)
    found = detect(**a, x=x, y=y.astype(np.float32), cell="gru")
    assert dict(found) == {"gates": gates, "rowwise": rowwise}
    assert found.bias == "split" and found.tried == 12 and found.error < 1e-5
    reproduces(NumpyGRU, a, found, x, y)


@pytest.mark.parametrize("rowwise", [False, True], ids=["blocks", "rowwise"])
@pytest.mark.parametrize("gates", LSTM_ORDERS)
def test_every_lstm_gate_order(gates, rowwise):
    a = arrays(4, D=1, bias=8, seed=3)
    x = x_of(2)
    y, _ = reference.lstm(x, a["w0"], b0=a["b0"], gates=gates, rowwise=rowwise)
    found = detect(**a, x=x, y=y.astype(np.float32), cell="lstm")
    assert dict(found) == {"gates": gates, "rowwise": rowwise}
    assert found.forget_bias == 0 and found.tried == 96
    reproduces(NumpyLSTM, a, found, x, y)


def test_stacks():
    a = arrays(3, L=2, D=2, bias=6, seed=5)
    x = x_of(3)
    y = run(NumpyGRU, a, x, gates="nrz", rowwise=True)
    found = detect(**a, x=x, y=y, cell="gru")
    assert (found["gates"], found["rowwise"]) == ("nrz", True)
    a = arrays(4, L=3, D=1, bias=8, seed=6)
    y = run(NumpyLSTM, a, x, gates="ogfi")
    found = detect(**a, x=x, y=y, cell="lstm")
    assert (found["gates"], found["rowwise"]) == ("ogfi", False)


def test_recognises_the_row_loop():
    I_, H_, L, D = 10, 20, 2, 2
    w0, w = question_arrays(I_, H_, L, D)
    loop = original_loop(I_, H_, L, D, True, 0.0, w0, w)
    with torch.no_grad():  # the loop leaves torch's random biases; the question's arrays have none
        for name, p in loop.named_parameters():
            if name.startswith("bias"):
                p.zero_()
        x = np.random.default_rng(0).standard_normal((5, 3, I_)).astype(np.float32)
        y = loop(torch.from_numpy(x))[0].numpy()
    found = detect(w0, w, x=x, y=y, cell="gru")
    assert dict(found) == {"gates": "rzn", "rowwise": True} and found.bias == "none"
    assert found.reading == "gates='rzn' rowwise=True"
    reproduces(NumpyGRU, {"w0": w0, "w": w}, found, x, y)


def test_summed_gru_bias():
    a = arrays(3, D=1, bias=3, seed=7)  # one bias per gate, all on the input side
    x = x_of(4)
    b0 = np.concatenate([a["b0"], np.zeros_like(a["b0"])], axis=-1)
    y, _ = reference.gru(x, a["w0"], b0=b0, gates="zrn")
    found = detect(**a, x=x, y=y.astype(np.float32), cell="gru")
    assert found.bias == "summed" and found.rewrites_biases and found["gates"] == "zrn"
    np.testing.assert_array_equal(found["b0"], b0)
    reproduces(NumpyGRU, a, found, x, y)
    # the n gate's bias inside the reset product is the other single-bias reading
    y2, _ = reference.gru(x, a["w0"], b0=np.concatenate([np.zeros_like(a["b0"]), a["b0"]], axis=-1))
    assert detect(**a, x=x, y=y2.astype(np.float32), cell="gru").bias == "summed-recurrent"


def test_summed_lstm_bias_with_tf1s_forget_bias():
    """TF1's LSTMCell: gates i, j, f, o, one summed bias, and 1.0 added to f at run time."""
    a = arrays(4, D=2, L=2, bias=4, seed=8)
    x = x_of(5)

    def full(b):
        b = np.concatenate([b, np.zeros_like(b)], axis=-1).astype(np.float64)
        b[..., 2] += 1.0  # slot 2 of i, j, f, o
        return b

    y, _ = reference.lstm(x, a["w0"], a["w"], b0=full(a["b0"]), b=full(a["b"]), gates="ijfo")
    found = detect(**a, x=x, y=y.astype(np.float32), cell="lstm")
    assert found["gates"] == "igfo" and found.forget_bias == 1 and found.bias == "summed"
    assert found.reading == "gates='igfo' rowwise=False bias=summed forget_bias=1"
    np.testing.assert_allclose(found["b0"], full(a["b0"]), atol=1e-7)
    reproduces(NumpyLSTM, a, found, x, y)


def test_forget_bias_without_stored_biases():
    a = arrays(4, D=1, seed=9)
    x = x_of(6)
    y, _ = reference.lstm(x, a["w0"], b0=np.tile(np.array([0, 1, 0, 0, 0, 0, 0, 0.0]), (1, H, 1)))
    found = detect(**a, x=x, y=y.astype(np.float32), cell="lstm")
    assert found.forget_bias == 1 and found["b0"].shape == (1, H, 8)
    reproduces(NumpyLSTM, a, found, x, y)


def test_rnn_nonlinearity_and_given_state():
    a = arrays(1, D=2, bias=2, seed=10)
    x = x_of(7)
    h0 = np.random.default_rng(1).uniform(-1, 1, (2, N, H)).astype(np.float32)
    y, _ = reference.rnn(x, a["w0"], b0=a["b0"], h0=h0, nonlinearity="relu")
    found = detect(**a, x=x, y=y.astype(np.float32), h0=h0, cell="rnn")
    assert dict(found) == {"gates": "h", "rowwise": False, "nonlinearity": "relu"}
    with torch.no_grad():
        out = NumpyRNN.from_numpy(**a, **found)(torch.from_numpy(x), torch.from_numpy(h0))[0].numpy()
    np.testing.assert_allclose(out, y, atol=1e-5)


def test_batch_first_and_unbatched():
    a = arrays(3, D=1, bias=6, seed=11)
    x = x_of(8)
    y, _ = reference.gru(x, a["w0"], b0=a["b0"], gates="zrn")
    y = y.astype(np.float32)
    assert detect(**a, x=x.transpose(1, 0, 2), y=y.transpose(1, 0, 2), batch_first=True, cell="gru")["gates"] == "zrn"
    assert detect(**a, x=x[:, 0], y=y[:, 0], cell="gru")["gates"] == "zrn"


def test_refuses_random_outputs():
    a = arrays(3, L=2, D=2, bias=6, seed=12)
    x = x_of(9)
    y = np.random.default_rng(0).uniform(-1, 1, (T, N, 2 * H)).astype(np.float32)
    with pytest.raises(LayoutError, match=r"no reading of the arrays reproduces y within atol=0\.0001") as info:
        detect(**a, x=x, y=y, cell="gru")
    message = str(info.value)
    assert message.count("max |y - y'| = ") == 3 and "closest: gates=" in message


def test_refuses_outputs_of_another_cell_state():
    a = arrays(4, D=1, bias=8, seed=13)
    x = x_of(10)
    y, _ = reference.lstm(x, a["w0"], b0=a["b0"], h0=np.ones((1, N, H)))
    with pytest.raises(LayoutError, match="Are cell, x, y, h0 the ones"):
        detect(**a, x=x, y=y.astype(np.float32), cell="lstm")  # recorded from another h0


def test_ambiguous_inputs_are_refused():
    a = arrays(3, D=1, seed=14)
    x = np.zeros((T, N, I), np.float32)  # no bias, zero input, zero state: every reading gives 0
    with pytest.raises(LayoutError, match="x does not tell these readings apart"):
        detect(**a, x=x, y=np.zeros((T, N, H), np.float32), cell="gru")


@pytest.mark.parametrize("change,match", [
    (dict(x=np.zeros((T, N, I + 1), np.float32)), r"x: expected \(time, batch, input=3\)"),
    (dict(y=np.zeros((T, N, H), np.float32)), r"y: expected \(6, 2, 8\)"),
    (dict(cell="mgu"), "cell='mgu'"),
    (dict(b0=np.zeros((2, H, 5), np.float32)), r"b0: expected \(directions, hidden, 6\) split"),
    (dict(h0=np.zeros((1, N, H), np.float32)), r"h0: expected \(layers\*directions=2, batch=2, 4\)"),
    (dict(c0=np.zeros((2, N, H), np.float32)), "c0: only an LSTM"),
    (dict(w0=np.zeros((2, H, 7), np.float32)), "w0: axis 2"),
])
def test_bad_arguments(change, match):
    a = arrays(3, D=2, bias=6, seed=15)
    kw = dict(**a, x=x_of(), y=np.zeros((T, N, 2 * H), np.float32), cell="gru")
    kw.update(change)
    with pytest.raises(LayoutError, match=match):
        detect(**kw)
