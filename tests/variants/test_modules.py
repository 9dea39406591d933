"""The variant modules against numpyrnn.reference, torch's modules, and torch's tooling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from numpyrnn import reference
from numpyrnn.variants import ACTIVATIONS, PeepholeLSTM, ResetAfterGRU, ResetBeforeGRU

from .common import blocks, randomize

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")]

I, H, T, N = 3, 4, 6, 2
GATE_ACTS = ["sigmoid", "hard_sigmoid", "hard_sigmoid_keras3"]


def _inputs(module, seed=1, unbatched=False):
    g = torch.Generator().manual_seed(seed)
    LD = module.num_layers * (2 if module.bidirectional else 1)
    R = module.proj_size or module.hidden_size
    shape = (T, I) if unbatched else ((N, T, I) if module.batch_first else (T, N, I))
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    st = (LD, R) if unbatched else (LD, N, R)
    h0 = 0.5 * torch.randn(st, generator=g, dtype=torch.float64)
    c0 = 0.5 * torch.randn(st[:-1] + (module.hidden_size,), generator=g, dtype=torch.float64)
    return x, h0, c0


GRID = list(itertools.product([1, 2], [False, True], [False, True], [False, True]))  # layers, bidir, bias, batch_first


@pytest.mark.parametrize("layers,bidir,bias,batch_first", GRID)
@pytest.mark.parametrize("gate", GATE_ACTS)
@pytest.mark.parametrize("cls", [ResetBeforeGRU, ResetAfterGRU])
def test_gru_matches_reference(cls, gate, layers, bidir, bias, batch_first):
    m = randomize(cls(I, H, layers, bias, batch_first, bidirectional=bidir, dtype=torch.float64,
                      recurrent_activation=gate), seed=layers)
    x, h0, _ = _inputs(m)
    y, h = m(x, h0)
    a = blocks(m)
    ry, rh = reference.gru_variant(x.numpy(), a["w0"], a["w"], b0=a["b0"], b=a["b"], h0=h0.numpy(),
                                   batch_first=batch_first, reset_after=cls is ResetAfterGRU,
                                   recurrent_activation=gate)
    np.testing.assert_allclose(y.detach().numpy(), ry, rtol=0, atol=1e-12)
    np.testing.assert_allclose(h.detach().numpy(), rh, rtol=0, atol=1e-12)


LSTM_OPTIONS = [
    dict(),
    dict(peepholes=True),
    dict(peepholes=True, cell_clip=0.3),
    dict(preactivation_clip=0.4, input_forget=True),
    dict(peepholes=True, proj_size=2, proj_clip=0.1, cell_clip=0.5),
    dict(proj_size=3, recurrent_activation="hard_sigmoid"),
    dict(peepholes=True, recurrent_activation="hard_sigmoid_keras3", activation="relu"),
]


@pytest.mark.parametrize("layers,bidir,bias,batch_first", GRID)
@pytest.mark.parametrize("options", LSTM_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_lstm_matches_reference(options, layers, bidir, bias, batch_first):
    m = randomize(PeepholeLSTM(I, H, layers, bias, batch_first, bidirectional=bidir, dtype=torch.float64,
                               **options), seed=layers + 7)
    x, h0, c0 = _inputs(m)
    y, (h, c) = m(x, (h0, c0))
    a = blocks(m)
    ref_opts = {k: v for k, v in options.items() if k not in ("peepholes", "proj_size")}
    ry, (rh, rc) = reference.lstm_variant(x.numpy(), a["w0"], a["w"], b0=a["b0"], b=a["b"], proj=a["proj"],
                                          peepholes=a.get("peepholes"), h0=h0.numpy(), c0=c0.numpy(),
                                          batch_first=batch_first, **ref_opts)
    for got, want in ((y, ry), (h, rh), (c, rc)):
        np.testing.assert_allclose(got.detach().numpy(), want, rtol=0, atol=1e-12)
    if options.get("cell_clip"):
        assert c.abs().max() <= options["cell_clip"]
    if options.get("proj_clip"):
        assert y.abs().max() <= options["proj_clip"]


@pytest.mark.parametrize("cls", [ResetBeforeGRU, ResetAfterGRU])
def test_gru_preactivation_clip(cls):
    m = randomize(cls(I, H, 2, bidirectional=True, dtype=torch.float64, preactivation_clip=0.3), scale=1.5)
    x, h0, _ = _inputs(m)
    y, h = m(x, h0)
    a = blocks(m)
    ry, rh = reference.gru_variant(x.numpy(), a["w0"], a["w"], b0=a["b0"], b=a["b"], h0=h0.numpy(),
                                   reset_after=cls is ResetAfterGRU, preactivation_clip=0.3)
    np.testing.assert_allclose(y.detach().numpy(), ry, rtol=0, atol=1e-12)
    unclipped = randomize(cls(I, H, 2, bidirectional=True, dtype=torch.float64), scale=1.5)
    assert (unclipped(x, h0)[0] - y).abs().max() > 1e-3


def test_activations_differ_as_the_sources_define_them():
    x = np.linspace(-4, 4, 17)
    np.testing.assert_allclose(reference.ACTIVATIONS["hard_sigmoid"](x), np.clip(0.2 * x + 0.5, 0, 1))
    np.testing.assert_allclose(reference.ACTIVATIONS["hard_sigmoid_keras3"](x), np.clip(x / 6 + 0.5, 0, 1))
    assert set(reference.ACTIVATIONS) == set(ACTIVATIONS)
    outs = {}
    for gate in GATE_ACTS:
        m = randomize(ResetBeforeGRU(I, H, recurrent_activation=gate, dtype=torch.float64))
        outs[gate] = m(_inputs(m)[0])[0]
    assert (outs["hard_sigmoid"] - outs["hard_sigmoid_keras3"]).abs().max() > 1e-3


@pytest.mark.parametrize("layers,bidir,batch_first", [(1, False, False), (2, True, True), (2, True, False)])
def test_defaults_are_torchs_modules(layers, bidir, batch_first):
    gru = randomize(ResetAfterGRU(I, H, layers, batch_first=batch_first, bidirectional=bidir, dtype=torch.float64))
    twin = nn.GRU(I, H, layers, batch_first=batch_first, bidirectional=bidir, dtype=torch.float64)
    twin.load_state_dict(gru.state_dict())
    x, h0, c0 = _inputs(gru)
    torch.testing.assert_close(gru(x, h0), twin(x, h0), rtol=0, atol=1e-12)
    lstm = randomize(PeepholeLSTM(I, H, layers, batch_first=batch_first, bidirectional=bidir, proj_size=2,
                                  dtype=torch.float64))
    twin2 = nn.LSTM(I, H, layers, batch_first=batch_first, bidirectional=bidir, proj_size=2, dtype=torch.float64)
    twin2.load_state_dict(lstm.state_dict())
    x, h0, c0 = _inputs(lstm)
    torch.testing.assert_close(lstm(x, (h0, c0)), twin2(x, (h0, c0)), rtol=0, atol=1e-12)


def test_state_dict_names():
    m = PeepholeLSTM(I, H, 2, bidirectional=True, proj_size=2, peepholes=True)
    torch_names = set(nn.LSTM(I, H, 2, bidirectional=True, proj_size=2).state_dict())
    extra = {f"weight_c{g}_l{k}{s}" for g in "ifo" for k in range(2) for s in ("", "_reverse")}
    assert set(m.state_dict()) == torch_names | extra
    for k, v in nn.LSTM(I, H, 2, bidirectional=True, proj_size=2).state_dict().items():
        assert m.state_dict()[k].shape == v.shape
    assert m.state_dict()["weight_ci_l1_reverse"].shape == (H,)
    g = ResetBeforeGRU(I, H, 3, bias=False)
    assert list(g.state_dict()) == list(nn.GRU(I, H, 3, bias=False).state_dict())


@pytest.mark.parametrize("make", [
    lambda bf: ResetBeforeGRU(I, H, 2, batch_first=bf, bidirectional=True, dtype=torch.float64),
    lambda bf: PeepholeLSTM(I, H, 2, batch_first=bf, bidirectional=True, proj_size=2, peepholes=True,
                            cell_clip=0.5, dtype=torch.float64),
], ids=["gru", "lstm"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_packed_sequence_is_each_sequence_alone(make, batch_first, enforce_sorted):
    m = randomize(make(batch_first))
    lengths = [6, 4, 1] if enforce_sorted else [4, 6, 1]
    x, h0, c0 = _inputs(m)
    x = torch.randn((3, T, I) if batch_first else (T, 3, I), dtype=torch.float64)
    h0, c0 = h0[:, :1].expand(-1, 3, -1).clone(), c0[:, :1].expand(-1, 3, -1).clone()
    h0[:, 1] += 0.3
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first, enforce_sorted=enforce_sorted)
    hx = h0 if m.mode == "GRU" else (h0, c0)
    out, state = m(packed, hx)
    assert isinstance(out, type(packed))
    torch.testing.assert_close(out.batch_sizes, packed.batch_sizes)
    y, got_lengths = pad_packed_sequence(out, batch_first=batch_first)
    assert got_lengths.tolist() == lengths
    for n, length in enumerate(lengths):
        xs = x[n:n + 1, :length] if batch_first else x[:length, n:n + 1]
        hs = h0[:, n:n + 1] if m.mode == "GRU" else (h0[:, n:n + 1], c0[:, n:n + 1])
        ys, ss = m(xs, hs)
        want = ys[0] if batch_first else ys[:, 0]
        have = y[n, :length] if batch_first else y[:length, n]
        torch.testing.assert_close(have, want, rtol=0, atol=1e-12)
        for a, b in zip((state,) if m.mode == "GRU" else state, (ss,) if m.mode == "GRU" else ss):
            torch.testing.assert_close(a[:, n], b[:, 0], rtol=0, atol=1e-12)


def test_packed_sequence_matches_nn_lstm():
    m = randomize(PeepholeLSTM(I, H, 2, bidirectional=True, dtype=torch.float64))
    twin = nn.LSTM(I, H, 2, bidirectional=True, dtype=torch.float64)
    twin.load_state_dict(m.state_dict())
    x = torch.randn(T, 3, I, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([3, 6, 2]), enforce_sorted=False)
    (a, (ha, ca)), (b, (hb, cb)) = m(packed), twin(packed)
    torch.testing.assert_close(a.data, b.data, rtol=0, atol=1e-12)
    torch.testing.assert_close((ha, ca), (hb, cb), rtol=0, atol=1e-12)


def test_unbatched():
    for m in (randomize(ResetBeforeGRU(I, H, 2, bidirectional=True, dtype=torch.float64)),
              randomize(PeepholeLSTM(I, H, 2, proj_size=2, peepholes=True, dtype=torch.float64))):
        x, h0, c0 = _inputs(m, unbatched=True)
        hx = h0 if m.mode == "GRU" else (h0, c0)
        y, s = m(x, hx)
        hb = h0.unsqueeze(1) if m.mode == "GRU" else (h0.unsqueeze(1), c0.unsqueeze(1))
        yb, sb = m(x.unsqueeze(1), hb)
        torch.testing.assert_close(y, yb[:, 0])
        assert y.dim() == 2


def test_gradients_flow():
    m = randomize(PeepholeLSTM(I, H, 2, bidirectional=True, proj_size=2, peepholes=True, cell_clip=2.0,
                               dtype=torch.float64))
    x, h0, c0 = _inputs(m)
    x.requires_grad_(True)
    y, (h, c) = m(x, (h0, c0))
    (y.sum() + c.sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert x.grad is not None
    g = randomize(ResetBeforeGRU(I, H, 2, dtype=torch.float64))
    x = torch.randn(T, N, I, dtype=torch.float64)
    torch.autograd.gradcheck(lambda w: torch.func.functional_call(g, {"weight_hh_l0": w}, (x,))[0],
                             (g.weight_hh_l0.detach().clone().requires_grad_(True),))


def _models():
    return [
        randomize(ResetBeforeGRU(I, H, 2, bidirectional=True, batch_first=True, recurrent_activation="hard_sigmoid")),
        randomize(PeepholeLSTM(I, H, 2, bidirectional=True, proj_size=2, peepholes=True, cell_clip=0.5,
                               proj_clip=0.3, preactivation_clip=1.0, input_forget=True)),
    ]


@pytest.mark.parametrize("k", [0, 1], ids=["gru", "lstm"])
def test_torchscript(k):
    m = _models()[k]
    s = torch.jit.script(m)
    x = torch.randn((N, T, I) if m.batch_first else (T, N, I))
    torch.testing.assert_close(s(x), m(x), rtol=0, atol=0)
    y, _ = s(x)
    y.sum().backward()
    assert m.weight_ih_l0.grad is not None


@pytest.mark.parametrize("k", [0, 1], ids=["gru", "lstm"])
def test_compile_fullgraph(k):
    m = _models()[k]
    c = torch.compile(m, fullgraph=True, backend="inductor")
    x = torch.randn((N, T, I) if m.batch_first else (T, N, I))
    torch.testing.assert_close(c(x), m(x), rtol=1e-5, atol=1e-6)
    y, _ = c(x)
    y.sum().backward()
    assert m.weight_hh_l1_reverse.grad is not None


def test_to_device_and_dtype_keep_the_weights_list():
    m = ResetBeforeGRU(I, H).double()
    assert all(w.dtype == torch.float64 for w in m._flat_weights)
    x = torch.randn(T, N, I, dtype=torch.float64)
    torch.testing.assert_close(torch.jit.script(m)(x), m(x))


def test_constructor_errors():
    with pytest.raises(ValueError, match="recurrent_activation='hard_sigmoid_2' is not a known activation"):
        ResetBeforeGRU(I, H, recurrent_activation="hard_sigmoid_2")
    with pytest.raises(TypeError, match="recurrent_activation must be a string"):
        ResetBeforeGRU(I, H, recurrent_activation=torch.sigmoid)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cell_clip must be a positive finite number"):
        PeepholeLSTM(I, H, cell_clip=-1.0)
    with pytest.raises(ValueError, match="proj_clip clips the projection's output"):
        PeepholeLSTM(I, H, proj_clip=1.0)
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        PeepholeLSTM(I, H, proj_size=H)
    with pytest.raises(TypeError, match="hidden_size should be of type int"):
        ResetBeforeGRU(I, 4.0)  # type: ignore[arg-type]
    m = ResetBeforeGRU(I, H, 2)
    with pytest.raises(RuntimeError, match=r"Expected hidden size \(2, 2, 4\), got \[1, 2, 4\]"):
        m(torch.zeros(T, 2, I), torch.zeros(1, 2, H))
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size. Expected 3, got 5"):
        m(torch.zeros(T, 2, 5))


def test_repr():
    assert repr(PeepholeLSTM(I, H, peepholes=True, cell_clip=3.0)) == "PeepholeLSTM(3, 4, peepholes=True, cell_clip=3.0)"
    assert repr(ResetBeforeGRU(I, H, recurrent_activation="hard_sigmoid")) == \
        "ResetBeforeGRU(3, 4, recurrent_activation='hard_sigmoid')"
