"""Every refusal of the block layout, pinned by its message, and atomicity of failed loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, NumpyRNN
from numpyrnn.spec import RNNSpec

from .conftest import assert_state_equal, make_blocks, state

SPEC = RNNSpec("GRU", input_size=5, hidden_size=4, num_layers=3, bidirectional=True, bias=True)


@pytest.fixture
def arrays():
    return {k: v for k, v in make_blocks(SPEC).items() if k != "proj"}


@pytest.fixture
def gru(arrays):
    return NumpyGRU.from_numpy(**arrays)


def test_layout_error_is_a_value_error():
    assert issubclass(LayoutError, ValueError)


# --- shapes ---------------------------------------------------------------------------

def test_w0_wrong_last_axis_names_expected_and_got(gru, arrays):
    bad = arrays["w0"][:, :, :-3]
    with pytest.raises(LayoutError, match=r"w0 \(block layout\): expected \(directions=2, hidden=4, "
                                          r"3\*\(input\+hidden\)=27\), got \(2, 4, 24\): axis 2 .* is 24, expected 27"):
        gru.load_numpy(bad, arrays["w"], b0=arrays["b0"], b=arrays["b"])


def test_w0_input_size_hint(gru, arrays):
    bad = np.zeros((2, 4, 3 * (6 + 4)), np.float32)
    with pytest.raises(LayoutError, match=r"that is input_size=6, the module has input_size=5"):
        gru.load_numpy(bad, arrays["w"], b0=arrays["b0"], b=arrays["b"])


def test_unidirectional_stack_into_bidirectional_module_hint(gru, arrays):
    uni = make_blocks(SPEC.replace(bidirectional=False))
    w = np.concatenate([uni["w"], uni["w"]], axis=1)  # right number of directions, width of a uni stack
    with pytest.raises(LayoutError, match=r"w \(block layout\): .*axis 3 .* is 24, expected 36.*"
                                          r"did you pass a unidirectional stack to a bidirectional module"):
        gru.load_numpy(arrays["w0"], w, b0=arrays["b0"], b=arrays["b"])


def test_w0_wrong_number_of_axes():
    with pytest.raises(LayoutError, match=r"w0: expected 3 axes .* got 2 axes \(4, 27\); add the directions axis"):
        NumpyGRU.from_numpy(np.zeros((4, 27), np.float32))


def test_w0_bad_direction_count():
    with pytest.raises(LayoutError, match=r"w0: axis 0 \(directions\) must be 1 or 2, got 3"):
        NumpyGRU.from_numpy(np.zeros((3, 4, 27), np.float32))


def test_w0_width_not_divisible():
    with pytest.raises(LayoutError, match=r"w0: axis 2 should be 3\*\(input\+hidden\) = 3\*input \+ 12 for hidden=4, "
                                          r"got 28, which leaves 16 for 3\*input \(not a multiple of 3\)"):
        NumpyGRU.from_numpy(np.zeros((1, 4, 28), np.float32))


def test_lstm_weights_given_to_gru_are_refused():
    lstm_w0 = np.zeros((1, 4, 4 * (3 + 4)), np.float32)   # 28 wide: not 3*(I+4) for any I
    with pytest.raises(LayoutError, match="is this a different cell type"):
        NumpyGRU.from_numpy(lstm_w0)


def test_w_wrong_axes_count():
    with pytest.raises(LayoutError, match=r"w: expected 4 axes .* got 3 axes .* use w\[None\]"):
        NumpyGRU.from_numpy(np.zeros((1, 4, 27), np.float32), np.zeros((1, 4, 24), np.float32))


def test_num_layers_disagrees_with_w(arrays):
    with pytest.raises(LayoutError, match=r"w: axis 0 \(layers-1\) is 2, but num_layers=2 needs 1"):
        NumpyGRU.from_numpy(**arrays, num_layers=2)


def test_num_layers_without_w(arrays):
    with pytest.raises(LayoutError, match=r"w: missing; num_layers=3 needs w of shape \(layers-1=2, directions=2, hidden=4, 36\)"):
        NumpyGRU.from_numpy(arrays["w0"], num_layers=3)


@pytest.mark.parametrize("n", [0, -1, 1.5, True])
def test_num_layers_must_be_positive_int(arrays, n):
    with pytest.raises(LayoutError, match="num_layers must be a positive integer"):
        NumpyGRU.from_numpy(arrays["w0"], num_layers=n)


def test_bias_false_with_b0(arrays):
    with pytest.raises(LayoutError, match=r"bias=False, but b0/b were given"):
        NumpyGRU.from_numpy(**arrays, bias=False)


def test_b_without_b0(arrays):
    with pytest.raises(LayoutError, match=r"b: given without b0"):
        NumpyGRU.from_numpy(arrays["w0"], arrays["w"], b=arrays["b"])


def test_b0_missing_for_module_with_bias(gru, arrays):
    with pytest.raises(LayoutError, match=r"b0: missing; the module has biases \(bias=True\).*directions=2, hidden=4, 2\*3=6"):
        gru.load_numpy(arrays["w0"], arrays["w"])


def test_b0_for_module_without_bias(arrays):
    plain = nn.GRU(5, 4, 3, bias=False, bidirectional=True)
    with pytest.raises(LayoutError, match=r"b0: the module was built with bias=False"):
        numpyrnn.load_numpy(plain, arrays["w0"], arrays["w"], b0=arrays["b0"], b=arrays["b"])


def test_b0_single_bias_hint(gru, arrays):
    with pytest.raises(LayoutError, match=r"b0 .*axis 2 \(2\*3\) is 3, expected 6.*pad with zeros for a single-bias source"):
        gru.load_numpy(arrays["w0"], arrays["w"], b0=arrays["b0"][..., :3], b=arrays["b"])


def test_proj_for_gru():
    with pytest.raises(LayoutError, match="proj: only an LSTM has a projection"):
        NumpyLSTM._from_blocks("GRU", dict(w0=np.zeros((1, 4, 27)), proj=np.zeros((1, 1, 2, 4))), num_layers=None,
                               gates=None, rowwise=False, bias=None, batch_first=False, dropout=0.0,
                               device=None, dtype=None, freeze=False)


def test_proj_too_large():
    with pytest.raises(LayoutError, match=r"proj: axis 2 \(proj\) must be between 1 and hidden-1=3 .* got 4"):
        NumpyLSTM.from_numpy(np.zeros((1, 4, 4 * (3 + 4)), np.float32), proj=np.zeros((1, 1, 4, 4), np.float32))


def test_proj_into_module_without_projection():
    lstm = NumpyLSTM(3, 4)
    with pytest.raises(LayoutError, match=r"proj: the module has no projection \(proj_size=0\)"):
        lstm.load_numpy(np.zeros((1, 4, 28), np.float32), b0=np.zeros((1, 4, 8)), proj=np.zeros((1, 1, 2, 4)))


# --- gates ----------------------------------------------------------------------------

@pytest.mark.parametrize("gates", ["rz", "rzz", "rzx", "ifgo", ""])
def test_gates_not_a_permutation(arrays, gates):
    with pytest.raises(LayoutError, match=rf"gates={gates!r} is not a permutation of the GRU gates 'rzn'"):
        NumpyGRU.from_numpy(**arrays, gates=gates)


def test_gates_wrong_type(arrays):
    with pytest.raises(TypeError, match="gates must be a string"):
        NumpyGRU.from_numpy(**arrays, gates=["r", "z", "n"])


# --- values ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype,what", [(np.int64, "integer"), (np.bool_, "bool"), (np.complex64, "complex"),
                                        (object, "object"), (np.uint8, "unsigned integer")])
def test_non_float_dtypes_are_type_errors(gru, arrays, dtype, what):
    bad = arrays["b"].astype(dtype)
    with pytest.raises(TypeError, match=rf"b: dtype {np.dtype(dtype)} \({what}\) cannot hold weights"):
        gru.load_numpy(arrays["w0"], arrays["w"], b0=arrays["b0"], b=bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_name_the_first_bad_index(gru, arrays, value):
    bad = arrays["w"].copy()
    bad[1, 0, 2, 7] = value
    bad[1, 1, 3, 0] = value
    with pytest.raises(LayoutError, match=rf"w: holds {value} at index \[1, 0, 2, 7\]; weights must be finite"):
        gru.load_numpy(arrays["w0"], bad, b0=arrays["b0"], b=arrays["b"])


def test_huge_finite_values_are_accepted(arrays):
    big = arrays["w0"].astype(np.float64)
    big[0, 0, :] = 1e308  # the sum overflows, the values are fine
    m = NumpyGRU.from_numpy(big, arrays["w"], b0=arrays["b0"], b=arrays["b"], dtype=torch.float64)
    assert float(m.weight_ih_l0.detach().max()) == 1e308


def test_none_for_w0():
    with pytest.raises(TypeError, match="w0: expected an array"):
        NumpyGRU.from_numpy(None)


def test_not_an_array():
    with pytest.raises(TypeError, match="w0: expected an array, got str"):
        NumpyGRU.from_numpy("weights.npy")


def test_plain_module_type_checked(arrays):
    with pytest.raises(TypeError, match="expected a torch.nn.GRU, nn.LSTM or nn.RNN"):
        numpyrnn.load_numpy(nn.Linear(2, 2), arrays["w0"])


def test_bad_nonlinearity(arrays):
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        NumpyRNN.from_numpy(np.zeros((1, 4, 9), np.float32), nonlinearity="sigmoid")


def test_bad_dtype_argument(arrays):
    with pytest.raises(TypeError, match="dtype must be a floating torch dtype"):
        NumpyGRU.from_numpy(**arrays, dtype=torch.int32)


# --- atomicity ------------------------------------------------------------------------

BAD_LAST = {
    "shape": lambda a: a[..., :-1],
    "nan": lambda a: np.where(np.arange(a.size).reshape(a.shape) == a.size - 1, np.nan, a),
    "dtype": lambda a: a.astype(np.int32),
    "none": lambda a: None,
}


@pytest.mark.parametrize("corrupt", BAD_LAST)
def test_failed_load_changes_nothing(gru, arrays, corrupt):
    """Only the last array is bad: nothing may have been written before the error."""
    fresh = make_blocks(SPEC, seed=99)
    before = state(gru)
    with pytest.raises((LayoutError, TypeError), match=r"\bb\b"):
        gru.load_numpy(fresh["w0"], fresh["w"], b0=fresh["b0"], b=BAD_LAST[corrupt](fresh["b"]))
    assert_state_equal(before, state(gru))


def test_failed_load_on_plain_module_changes_nothing(arrays):
    plain = nn.LSTM(5, 4, 2, proj_size=2)
    spec = RNNSpec.of(plain)
    good = make_blocks(spec)
    before = state(plain)
    bad_proj = good["proj"].copy()
    bad_proj[-1, -1, -1, -1] = np.inf
    with pytest.raises(LayoutError, match="proj: holds inf"):
        numpyrnn.load_numpy(plain, good["w0"], good["w"], b0=good["b0"], b=good["b"], proj=bad_proj)
    assert_state_equal(before, state(plain))
