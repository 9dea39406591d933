"""Flax linen layout against flax itself: nn.RNN and nn.Bidirectional on the CPU are the oracle."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from numpyrnn.errors import LayoutError
from numpyrnn.modules import NumpyGRU, NumpyLSTM, NumpyRNN

os.environ.setdefault("JAX_PLATFORMS", "cpu")
jax = pytest.importorskip("jax", reason="jax is not installed: pip install \"numpyrnn[interop]\"")
nn = pytest.importorskip("flax.linen", reason="flax is not installed: pip install \"numpyrnn[interop]\"")
jnp = jax.numpy

ROOT = Path(__file__).resolve().parents[2]
N, T, I, H = 2, 4, 3, 5
CELLS = {
    "GRUCell": (nn.GRUCell, NumpyGRU),
    "LSTMCell": (nn.LSTMCell, NumpyLSTM),
    "OptimizedLSTMCell": (nn.OptimizedLSTMCell, NumpyLSTM),
    "SimpleCell": (nn.SimpleCell, NumpyRNN),
}


def random_init(layer, x, seed: int):
    """The layer's variables with every kernel and bias random (flax initialises biases to
    zero, which hides bias bugs). Only shapes are traced: nothing is compiled for init."""
    shapes = jax.eval_shape(layer.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda a: jnp.asarray(rng.uniform(-0.7, 0.7, a.shape).astype(np.float32)), shapes)


_JITTED: dict[int, tuple] = {}


def apply(layer, params, x):
    """``layer.apply``, compiled once per layer object and input shape."""
    if id(layer) not in _JITTED:
        _JITTED[id(layer)] = (layer, jax.jit(layer.apply))
    return _JITTED[id(layer)][1]({"params": params}, x)


def layer_module(cell_name: str, bidirectional: bool, **kw):
    make = CELLS[cell_name][0]
    if bidirectional:
        return nn.Bidirectional(nn.RNN(make(H)), nn.RNN(make(H)), **kw)
    return nn.RNN(make(H), **kw)


def run_torch(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(np.asarray(x)))


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(3).standard_normal((N, T, I)).astype(np.float32)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell_name", list(CELLS))
def test_matches_flax_and_round_trips(cell_name, bidirectional, x):
    flax_layer = layer_module(cell_name, bidirectional)
    variables = random_init(flax_layer, x, seed=len(cell_name) + bidirectional)
    expected = np.asarray(apply(flax_layer, variables["params"], x))

    cls = CELLS[cell_name][1]
    module = cls.from_flax(variables)  # jax arrays, wrapped in {"params": ...}
    assert module.batch_first is True and module.bias is True
    assert module.bidirectional == bidirectional and module.num_layers == 1
    np.testing.assert_allclose(run_torch(module, x)[0].numpy(), expected, atol=1e-5, rtol=0)

    (exported,) = module.to_flax()
    # export after import is exact, bias folds included (the recurrent r/z biases are zero)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), variables["params"], exported)
    assert jax.tree_util.tree_structure(variables["params"]) == jax.tree_util.tree_structure(exported)
    np.testing.assert_allclose(np.asarray(apply(flax_layer, exported, x)), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell_name", ["GRUCell", "LSTMCell", "SimpleCell"])
def test_final_state_matches_flax_carry(cell_name, x):
    flax_layer = layer_module(cell_name, False, return_carry=True)
    variables = random_init(flax_layer, x, seed=11)
    carry, _ = apply(flax_layer, variables["params"], x)
    _, state = run_torch(CELLS[cell_name][1].from_flax(variables["params"]), x)
    if cell_name == "LSTMCell":  # flax carries (c, h), torch returns (h, c)
        c, h = carry
        np.testing.assert_allclose(state[1][0].numpy(), np.asarray(c), atol=1e-5, rtol=0)
        np.testing.assert_allclose(state[0][0].numpy(), np.asarray(h), atol=1e-5, rtol=0)
    else:
        np.testing.assert_allclose(state[0].numpy(), np.asarray(carry), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell_name,bidirectional", [("GRUCell", True), ("LSTMCell", True), ("SimpleCell", False)])
def test_two_layer_stack(cell_name, bidirectional, x):
    layers = [layer_module(cell_name, bidirectional) for _ in range(2)]
    params, inputs = [], x
    for k, layer in enumerate(layers):
        variables = random_init(layer, inputs, seed=20 + k)
        params.append(variables["params"])
        inputs = apply(layer, variables["params"], inputs)
    expected = np.asarray(inputs)

    module = CELLS[cell_name][1].from_flax({"params": params})
    assert module.num_layers == 2 and module.bidirectional == bidirectional
    np.testing.assert_allclose(run_torch(module, x)[0].numpy(), expected, atol=1e-5, rtol=0)

    exported = module.to_flax()
    assert len(exported) == 2
    out = x
    for layer, p in zip(layers, exported):
        out = apply(layer, p, out)
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5, rtol=0)
    again = CELLS[cell_name][1].from_flax(exported)
    for name, value in module.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, atol=0, rtol=0)


@pytest.mark.parametrize("cls,cell", [(NumpyGRU, "GRUCell"), (NumpyLSTM, "LSTMCell"), (NumpyRNN, "SimpleCell")])
def test_bare_cell_params(cls, cell, x):
    flax_layer = layer_module(cell, False)
    variables = random_init(flax_layer, x, seed=5)
    numpy_cell = jax.tree_util.tree_map(np.asarray, variables["params"]["cell"])
    module = cls.from_flax(numpy_cell)
    np.testing.assert_allclose(run_torch(module, x)[0].numpy(), np.asarray(apply(flax_layer, variables["params"], x)),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls", [NumpyGRU, NumpyLSTM, NumpyRNN])
def test_module_without_bias_exports_zero_biases(cls, x):
    torch.manual_seed(0)
    module = cls(I, H, batch_first=True, bias=False)
    (exported,) = module.to_flax()
    biases = [d["bias"] for d in exported["cell"].values() if "bias" in d]
    assert biases and all(np.array_equal(b, np.zeros(H, np.float32)) for b in biases)
    cell_name = {NumpyGRU: "GRUCell", NumpyLSTM: "LSTMCell", NumpyRNN: "SimpleCell"}[cls]
    np.testing.assert_allclose(np.asarray(apply(layer_module(cell_name, False), exported, x)),
                               run_torch(module, x)[0].numpy(), atol=1e-5, rtol=0)
    assert cls.from_flax(exported).bias is True


def test_gru_bias_fold_on_export():
    torch.manual_seed(1)
    module = NumpyGRU(I, H)
    (exported,) = module.to_flax()
    b_ih, b_hh = module.bias_ih_l0.detach().numpy(), module.bias_hh_l0.detach().numpy()
    np.testing.assert_allclose(exported["cell"]["ir"]["bias"], b_ih[:H] + b_hh[:H], atol=0, rtol=0)
    np.testing.assert_allclose(exported["cell"]["iz"]["bias"], b_ih[H:2 * H] + b_hh[H:2 * H], atol=0, rtol=0)
    np.testing.assert_array_equal(exported["cell"]["in"]["bias"], b_ih[2 * H:])
    np.testing.assert_array_equal(exported["cell"]["hn"]["bias"], b_hh[2 * H:])
    imported = NumpyGRU.from_flax(exported)
    np.testing.assert_array_equal(imported.bias_hh_l0.detach().numpy()[:2 * H], np.zeros(2 * H, np.float32))


# --------------------------------------------------------------------------------------
# refusals and structure errors
# --------------------------------------------------------------------------------------

def numpy_tree(cell_name: str, bidirectional: bool, layers: int = 1):
    """Zero-cost param trees without running flax: the shapes flax would create."""
    cls = CELLS[cell_name][1]
    module = cls(I, H, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    return module.to_flax()


@pytest.mark.parametrize("edit,match", [
    (lambda p: p[0]["forward_rnn"]["cell"]["hz"].pop("kernel"),
     r'params\[0\]\["forward_rnn"\]\["cell"\]\["hz"\]\["kernel"\]: missing; the Dense \'hz\' of a GRUCell has keys \'kernel\''),
    (lambda p: p[0]["forward_rnn"]["cell"]["hz"].update(bias=np.zeros(H, np.float32)),
     r'params\[0\]\["forward_rnn"\]\["cell"\]\["hz"\]\["bias"\]: unexpected key'),
    (lambda p: p[1]["backward_rnn"]["cell"].pop("in"),
     r'params\[1\]\["backward_rnn"\]\["cell"\]\["in"\]: missing; a Flax GRUCell has keys'),
    (lambda p: p[1].__setitem__("backward_rnn", p[1]["backward_rnn"]["cell"]),
     r'params\[1\]\["backward_rnn"\]\["cell"\]: missing; an nn.RNN param tree has keys \'cell\''),
    (lambda p: p[0].pop("backward_rnn"),
     r'params\[0\]\["backward_rnn"\]: missing; an nn.Bidirectional param tree'),
    (lambda p: p[1]["forward_rnn"]["cell"]["hr"].update(kernel=np.zeros((H, H + 1), np.float32)),
     r'params\[1\]\["forward_rnn"\]\["cell"\]\["hr"\]\["kernel"\] \(Flax layout\): expected \(hidden=5, hidden=5\), got \(5, 6\)'),
    (lambda p: p[1]["forward_rnn"]["cell"]["ir"].update(kernel=np.zeros((H, H), np.float32)),
     r'params\[1\]\["forward_rnn"\]\["cell"\]\["ir"\]\["kernel"\] .*axis 0 \(2\*hidden\) is 5, expected 10; layer 1 reads the 10-wide output'),
    (lambda p: p[0]["forward_rnn"]["cell"]["iz"].update(kernel=np.zeros((I + 1, H), np.float32)),
     r'params\[0\]\["forward_rnn"\]\["cell"\]\["iz"\]\["kernel"\] .*axis 0 \(input\) is 4, expected 3'),
    (lambda p: p.__setitem__(1, p[1]["forward_rnn"]),
     r'params\[1\]: layer 1 is an nn.RNN or a cell but layer 0 is an nn.Bidirectional'),
    (lambda p: p.__setitem__(0, [1]),
     r"params\[0\]: expected an nn.RNN \(\{'cell': ...\}\), nn.Bidirectional"),
    (lambda p: p[0]["forward_rnn"]["cell"].__setitem__("hn", np.zeros((H, H), np.float32)),
     r'params\[0\]\["forward_rnn"\]\["cell"\]\["hn"\]: expected a Dense param dict .* got an array of shape \(5, 5\)'),
])
def test_bad_structures_name_the_key_path(edit, match):
    params = numpy_tree("GRUCell", True, layers=2)
    edit(params)
    with pytest.raises(LayoutError, match=match):
        NumpyGRU.from_flax(params)


def test_transposed_kernel_gets_a_hint():
    (params,) = numpy_tree("LSTMCell", False)
    params["cell"]["ii"]["kernel"] = params["cell"]["ii"]["kernel"].T.copy()
    with pytest.raises(LayoutError, match=r'params\["cell"\]\["ii"\]\["kernel"\] .*Flax kernels are \(in, hidden\)'):
        NumpyLSTM.from_flax(params)


def test_named_layers_of_a_user_module_suggest_a_list():
    params = {"params": {"RNN_0": numpy_tree("GRUCell", False)[0], "RNN_1": numpy_tree("GRUCell", False)[0]}}
    with pytest.raises(LayoutError, match=r'params\["params"\]: keys \'RNN_0\', \'RNN_1\' are not .* pass a list, bottom first, '
                                          r'e.g. \[params\["params"\]\["RNN_0"\], ...\]'):
        NumpyGRU.from_flax(params)


def test_wrapped_params_path():
    params = {"params": numpy_tree("SimpleCell", False)}
    params["params"][0]["cell"]["h"]["extra"] = np.zeros(1, np.float32)
    with pytest.raises(LayoutError, match=r'params\["params"\]\[0\]\["cell"\]\["h"\]\["extra"\]: unexpected key'):
        NumpyRNN.from_flax(params)


@pytest.mark.parametrize("cls,cell_name,match", [
    (NumpyGRU, "LSTMCell", r'params\["cell"\]: these are the params of a Flax LSTMCell/OptimizedLSTMCell; use NumpyLSTM.from_flax'),
    (NumpyLSTM, "SimpleCell", r"these are the params of a Flax SimpleCell; use NumpyRNN.from_flax"),
    (NumpyRNN, "GRUCell", r"these are the params of a Flax GRUCell; use NumpyGRU.from_flax"),
])
def test_other_cell_types_are_refused(cls, cell_name, match):
    (params,) = numpy_tree(cell_name, False)
    with pytest.raises(LayoutError, match=match):
        cls.from_flax(params)


def test_mgu_cell_is_refused(x):
    variables = random_init(nn.RNN(nn.MGUCell(H)), x, seed=0)
    with pytest.raises(LayoutError, match=r"MGUCell \(minimal gated unit\), which has no torch module"):
        NumpyGRU.from_flax(variables)


def test_projection_has_no_flax_form():
    with pytest.raises(LayoutError, match=r"proj_size=2: Flax's LSTMCell has no projection"):
        NumpyLSTM(I, H, proj_size=2).to_flax()


def test_empty_list_and_wrong_types():
    with pytest.raises(LayoutError, match=r"params: an empty list"):
        NumpyGRU.from_flax([])
    with pytest.raises(TypeError, match=r"params: expected a Flax param tree \(a mapping\) or a list of them, got str"):
        NumpyGRU.from_flax("params.msgpack")
    (params,) = numpy_tree("GRUCell", False)
    params["cell"]["hr"]["kernel"] = params["cell"]["hr"]["kernel"].astype(np.int64)
    with pytest.raises(TypeError, match=r'params\["cell"\]\["hr"\]\["kernel"\]: dtype int64'):
        NumpyGRU.from_flax(params)


def test_input_is_not_modified():
    params = numpy_tree("LSTMCell", True, layers=2)
    before = copy.deepcopy(params)
    NumpyLSTM.from_flax(params)
    jax.tree_util.tree_map(np.testing.assert_array_equal, params, before)


def test_numpy_trees_do_not_import_jax_or_flax():
    code = (
        "import sys, numpy as np\n"
        "import numpyrnn\n"
        "from numpyrnn import NumpyGRU\n"
        "k = lambda a, b: np.ones((a, b), np.float32); b = lambda: np.ones(4, np.float32)\n"
        "cell = {n: {'kernel': k(3, 4), 'bias': b()} for n in ('ir', 'iz', 'in')}\n"
        "cell.update(hr={'kernel': k(4, 4)}, hz={'kernel': k(4, 4)}, hn={'kernel': k(4, 4), 'bias': b()})\n"
        "g = NumpyGRU.from_flax([{'forward_rnn': {'cell': cell}, 'backward_rnn': {'cell': cell}}])\n"
        "g.to_flax()\n"
        "bad = [m for m in ('jax', 'flax', 'onnx', 'keras', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT, timeout=120)
