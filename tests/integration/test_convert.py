"""numpyrnn.convert: existing models get numpyrnn modules, in place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN

from ..conftest import assert_state_equal, state
from .common import CLASSES, MODE, TORCH_CLASS, arrays_for, class_id, inputs, spec_for


class Encoder(nn.Module):
    def __init__(self, rnn_cls):
        super().__init__()
        self.rnn = rnn_cls(3, 4, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]


class Model(nn.Module):
    def __init__(self, rnn_cls):
        super().__init__()
        self.encoder = Encoder(rnn_cls)
        self.stack = nn.ModuleList([nn.GRU(4, 4), nn.LSTM(4, 4)])
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_convert_in_place_keeps_parameters_and_outputs(cls):
    torch.manual_seed(0)
    model = Model(TORCH_CLASS[cls])
    params = {k: p for k, p in model.named_parameters()}
    inner = model.encoder.rnn
    x = inputs()
    before_out, before_state = model(x), state(model)

    assert numpyrnn.convert(model) is model
    assert type(model.encoder.rnn) is cls and model.encoder.rnn is inner
    assert type(model.stack[0]) is NumpyGRU and type(model.stack[1]) is NumpyLSTM
    assert type(model.head) is nn.Linear
    assert all(p is params[k] for k, p in model.named_parameters())
    assert_state_equal(state(model), before_state)
    torch.testing.assert_close(model(x), before_out, rtol=0, atol=0)


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_optimizer_built_before_keeps_training_the_twin(cls):
    torch.manual_seed(0)
    model = Model(TORCH_CLASS[cls])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    numpyrnn.convert(model)
    before = model.encoder.rnn.weight_hh_l0.detach().clone()
    model(inputs()).square().mean().backward()
    opt.step()
    assert (model.encoder.rnn.weight_hh_l0 - before).abs().max() > 0


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_load_numpy_after_convert(cls):
    model = numpyrnn.convert(Model(TORCH_CLASS[cls]))
    arrays = arrays_for(cls, spec_for(cls), seed=3)
    model.encoder.rnn.load_numpy(**arrays)
    reference = cls.from_numpy(**arrays, batch_first=True)
    assert_state_equal(state(model.encoder.rnn), state(reference))
    np.testing.assert_array_equal(model.encoder.rnn.to_numpy()["w0"], arrays["w0"])


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_convert_a_bare_recurrent_module_returns_the_twin(cls):
    rnn = TORCH_CLASS[cls](3, 4, num_layers=2, bidirectional=True).eval()
    weights = list(rnn.parameters())
    twin = numpyrnn.convert(rnn)
    assert type(twin) is cls and twin.spec.mode == MODE[cls]
    assert twin.training is False
    assert all(a is b for a, b in zip(twin.parameters(), weights))


def test_relu_rnn_keeps_its_nonlinearity():
    rnn = numpyrnn.convert(nn.RNN(3, 4, nonlinearity="relu"))
    assert type(rnn) is NumpyRNN and rnn.mode == "RNN_RELU" and rnn.spec.mode == "RNN_RELU"


def test_modes_hooks_and_shared_modules_survive():
    torch.manual_seed(0)
    shared = nn.GRU(3, 4, batch_first=True)
    model = nn.ModuleDict({"a": shared, "b": shared, "c": nn.LSTM(3, 4)})
    model.train()
    model["c"].eval()
    calls = []
    handle = shared.register_forward_hook(lambda m, inp, out: calls.append(type(m).__name__))
    numpyrnn.convert(model)
    assert model["a"] is model["b"] and type(model["a"]) is NumpyGRU
    assert model["a"].training is True and model["c"].training is False
    model["a"](inputs())
    assert calls == ["NumpyGRU"]
    handle.remove()
    model["a"](inputs())
    assert calls == ["NumpyGRU"]


def test_subclasses_and_numpyrnn_modules_are_left_alone():
    class MyGRU(nn.GRU):
        def forward(self, x, hx=None):
            return super().forward(x * 2, hx)

    model = nn.Sequential(MyGRU(3, 4), NumpyLSTM(3, 4))
    numpyrnn.convert(model)
    assert type(model[0]) is MyGRU and type(model[1]) is NumpyLSTM


def test_parametrized_module_is_refused_with_the_fix():
    model = nn.Sequential(nn.Linear(3, 3), nn.GRU(3, 4))
    torch.nn.utils.parametrizations.weight_norm(model[1], "weight_hh_l0")
    model.add_module("later", nn.LSTM(3, 4))
    with pytest.raises(TypeError, match=r"^1 \(ParametrizedGRU\) is parametrized .*call numpyrnn.convert before"):
        numpyrnn.convert(model)
    assert type(model.later) is nn.LSTM  # all or nothing


def test_convert_rejects_non_modules():
    with pytest.raises(TypeError, match="convert expects an nn.Module, got dict"):
        numpyrnn.convert({})
