"""Directions: merge modes and time direction around any recurrent module."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from numpyrnn.variants import Directions, PeepholeLSTM, ResetBeforeGRU

T, N, I, H = 6, 3, 3, 4


@pytest.mark.parametrize("merge_mode,op", [("sum", lambda a, b: a + b), ("mul", lambda a, b: a * b),
                                           ("ave", lambda a, b: (a + b) / 2)])
@pytest.mark.parametrize("make", [lambda: nn.GRU(I, H, bidirectional=True),
                                  lambda: ResetBeforeGRU(I, H, 2, bidirectional=True),
                                  lambda: PeepholeLSTM(I, H, bidirectional=True, proj_size=2, peepholes=True)])
def test_merge_modes(make, merge_mode, op):
    torch.manual_seed(0)
    m = make()
    w = Directions(m, merge_mode=merge_mode)
    x = torch.randn(T, N, I)
    y, state = m(x)
    R = y.shape[-1] // 2
    got, got_state = w(x)
    torch.testing.assert_close(got, op(y[..., :R], y[..., R:]), rtol=0, atol=0)
    torch.testing.assert_close(got_state, state, rtol=0, atol=0)
    assert list(w.state_dict()) == [f"module.{k}" for k in m.state_dict()]


def test_merge_none_and_packed():
    torch.manual_seed(0)
    m = nn.LSTM(I, H, bidirectional=True, batch_first=True)
    x = torch.randn(N, T, I)
    packed = pack_padded_sequence(x, torch.tensor([6, 2, 4]), batch_first=True, enforce_sorted=False)
    (fwd, bwd), _ = Directions(m, merge_mode=None)(packed)
    y, _ = m(packed)
    torch.testing.assert_close(fwd.data, y.data[:, :H])
    torch.testing.assert_close(bwd.data, y.data[:, H:])
    summed, _ = Directions(m, merge_mode="sum")(packed)
    padded, lengths = pad_packed_sequence(summed, batch_first=True)
    assert lengths.tolist() == [6, 2, 4] and padded.shape == (N, T, H)


@pytest.mark.parametrize("batch_first", [False, True])
def test_time_directions(batch_first):
    torch.manual_seed(0)
    m = ResetBeforeGRU(I, H, batch_first=batch_first)
    axis = 1 if batch_first else 0
    x = torch.randn((N, T, I) if batch_first else (T, N, I))
    h0 = torch.randn(1, N, H)
    y, h = m(torch.flip(x, [axis]), h0)
    got, gh = Directions(m, time="go_backwards")(x, h0)
    torch.testing.assert_close(got, y, rtol=0, atol=0)  # processing order: output[0] is the last step's
    got, gh = Directions(m, time="reverse")(x, h0)
    torch.testing.assert_close(got, torch.flip(y, [axis]), rtol=0, atol=0)  # input order
    torch.testing.assert_close(gh, h, rtol=0, atol=0)
    # unbatched input reverses its only (time) axis
    got, _ = Directions(m, time="reverse")(x[0] if batch_first else x[:, 0])
    want, _ = m(torch.flip(x[0] if batch_first else x[:, 0], [0]))
    torch.testing.assert_close(got, torch.flip(want, [0]))


def test_errors():
    with pytest.raises(ValueError, match="merge_mode='sum' merges two directions; the module is unidirectional"):
        Directions(nn.GRU(I, H), merge_mode="sum")
    with pytest.raises(ValueError, match="time='reverse' runs one direction backwards; the module is bidirectional"):
        Directions(nn.GRU(I, H, bidirectional=True), time="reverse")
    with pytest.raises(ValueError, match="merge_mode='max': expected one of"):
        Directions(nn.GRU(I, H, bidirectional=True), merge_mode="max")
    packed = pack_padded_sequence(torch.randn(T, N, I), torch.tensor([6, 5, 4]))
    with pytest.raises(TypeError, match="takes a padded Tensor, not a PackedSequence"):
        Directions(nn.GRU(I, H), time="go_backwards")(packed)
