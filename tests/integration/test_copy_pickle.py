"""copy.deepcopy, pickling and torch.load(weights_only=True) of whole numpyrnn modules."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import NumpyGRU

from ..conftest import assert_state_equal, state
from .common import CLASSES, build, class_id, inputs


def _distinct_storage(a: nn.Module, b: nn.Module) -> None:
    mine = {p.untyped_storage().data_ptr() for p in a.parameters()}
    theirs = {p.untyped_storage().data_ptr() for p in b.parameters()}
    assert not mine & theirs


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_deepcopy_keeps_values_and_owns_its_weights(cls):
    rnn = build(cls, layers=2, bidirectional=True)
    rnn.train(False)
    clone = copy.deepcopy(rnn)
    assert type(clone) is cls and clone.training is False
    assert_state_equal(state(clone), state(rnn))
    _distinct_storage(clone, rnn)
    # cuDNN's list points at the copy's own parameters
    assert [id(w) for w in clone._flat_weights] == [id(getattr(clone, n)) for n in clone._flat_weights_names]
    x = inputs()
    torch.testing.assert_close(clone(x)[0], rnn(x)[0], rtol=0, atol=0)
    with torch.no_grad():
        clone.weight_hh_l0.add_(1.0)
    assert (clone(x)[0] - rnn(x)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_pickle_round_trip(cls):
    rnn = build(cls)
    back = pickle.loads(pickle.dumps(rnn))
    assert type(back) is cls
    assert_state_equal(state(back), state(rnn))
    x = inputs()
    torch.testing.assert_close(back(x)[0], rnn(x)[0], rtol=0, atol=0)


@pytest.mark.parametrize("cls", CLASSES, ids=class_id)
def test_weights_only_load_needs_the_classes(cls):
    rnn = build(cls)
    buf = io.BytesIO()
    torch.save(rnn, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match=f"numpyrnn.modules.{cls.__name__}"):
        torch.load(buf, weights_only=True)
    buf.seek(0)
    with torch.serialization.safe_globals(numpyrnn.safe_globals()):
        back = torch.load(buf, weights_only=True)
    assert type(back) is cls
    assert_state_equal(state(back), state(rnn))
    x = inputs()
    torch.testing.assert_close(back(x)[0], rnn(x)[0], rtol=0, atol=0)


def test_weights_only_load_of_a_model_also_needs_its_own_classes():
    model = nn.Sequential(nn.Linear(3, 3), build(NumpyGRU))
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(buf)) == {
        "torch.nn.modules.container.Sequential", "torch.nn.modules.linear.Linear", "numpyrnn.modules.NumpyGRU"}
    buf.seek(0)
    with torch.serialization.safe_globals([*numpyrnn.safe_globals(), nn.Sequential, nn.Linear]):
        back = torch.load(buf, weights_only=True)
    x = inputs()
    torch.testing.assert_close(back(x)[0], model(x)[0], rtol=0, atol=0)


def test_safe_globals_lists_exactly_the_three_classes():
    assert numpyrnn.safe_globals() == [numpyrnn.NumpyGRU, numpyrnn.NumpyLSTM, numpyrnn.NumpyRNN]
