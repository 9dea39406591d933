"""ONNX nodes torch cannot compute, loaded with variants=True, against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM, variants
from numpyrnn.variants import Directions, PeepholeLSTM, ResetAfterGRU, ResetBeforeGRU, VariantWarning

onnx = pytest.importorskip("onnx", reason="onnx is not installed: pip install numpyrnn[interop]")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install numpyrnn[interop]")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

T, N, I, H = 5, 2, 3, 4
G = {"GRU": 3, "LSTM": 4}
CLASS = {"GRU": NumpyGRU, "LSTM": NumpyLSTM}


def random_layers(cell, D, L, *, seed=0, bias=True, peepholes=False):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(L):
        width = I if k == 0 else D * H
        layer = {"W": rng.uniform(-0.8, 0.8, (D, G[cell] * H, width)), "R": rng.uniform(-0.8, 0.8, (D, G[cell] * H, H))}
        if bias:
            layer["B"] = rng.uniform(-0.8, 0.8, (D, 2 * G[cell] * H))
        if peepholes:
            layer["P"] = rng.uniform(-0.8, 0.8, (D, 3 * H))
        out.append({n: v.astype(np.float32) for n, v in layer.items()})
    return out


def make_model(cell, layers, attrs):
    """X -> node -> (Transpose, Reshape) -> node ... -> Y; weights (and P) as initializers."""
    nodes, inits = [], [numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "flat")]
    x = "X"
    for k, layer in enumerate(layers):
        inputs = [x]
        for n in ("W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"):
            if n in layer:
                inits.append(numpy_helper.from_array(layer[n], f"{n}{k}"))
            inputs.append(f"{n}{k}" if n in layer else "")
        while inputs[-1] == "":
            inputs.pop()
        nodes.append(helper.make_node(cell, inputs, [f"Y{k}"], name=f"rnn{k}", **attrs))
        nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"T{k}"], perm=[0, 2, 1, 3]))
        x = "Y" if k == len(layers) - 1 else f"X{k + 1}"
        nodes.append(helper.make_node("Reshape", [f"T{k}", "flat"], [x]))
    graph = helper.make_graph(nodes, "rnn", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, N, I])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def run_onnx(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": x})[0]


def run_torch(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x))[0].numpy()


def _load(cls, source, **kw):
    with pytest.warns(VariantWarning, match=r"from_onnx: built .*numpyrnn.variants"):
        return cls.from_onnx(source, variants=True, **kw)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(7).standard_normal((T, N, I)).astype(np.float32)


HS = ["HardSigmoid", "Tanh"]
CASES = [
    ("GRU", {}, False, ResetBeforeGRU),  # linear_before_reset=0 by default
    ("GRU", dict(linear_before_reset=0, clip=0.7), False, ResetBeforeGRU),
    ("GRU", dict(linear_before_reset=1, activations=HS), False, ResetAfterGRU),
    ("GRU", dict(activations=HS, activation_alpha=[1 / 6], activation_beta=[0.5]), False, ResetBeforeGRU),
    ("GRU", dict(linear_before_reset=1, activations=["Sigmoid", "Relu"]), False, ResetAfterGRU),
    ("LSTM", {}, True, PeepholeLSTM),
    ("LSTM", dict(clip=0.6), True, PeepholeLSTM),
    ("LSTM", dict(input_forget=1), False, PeepholeLSTM),
    ("LSTM", dict(input_forget=1, clip=0.5, activations=HS + ["Tanh"]), True, PeepholeLSTM),
    ("LSTM", dict(activations=HS + ["Tanh"]), False, PeepholeLSTM),
]


@pytest.mark.parametrize("D,L", [(1, 1), (2, 1), (1, 2), (2, 2)])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_matches_onnxruntime_and_round_trips(case, D, L, x):
    cell, attrs, peepholes, expected = CASES[case]
    attrs = dict(attrs, hidden_size=H, direction="bidirectional" if D == 2 else "forward")
    if "activations" in attrs:
        attrs["activations"] = attrs["activations"] * D
    for key in ("activation_alpha", "activation_beta"):
        if key in attrs:  # one value per HardSigmoid, consumed in order
            attrs[key] = attrs[key] * D
    layers = random_layers(cell, D, L, seed=case * 10 + D + L, peepholes=peepholes)
    model = make_model(cell, layers, attrs)
    want = run_onnx(model, x)  # [T, N, D*H] after the last Reshape
    m = _load(CLASS[cell], model)
    assert type(m) is expected and m.num_layers == L and m.bidirectional == (D == 2)
    np.testing.assert_allclose(run_torch(m, x), want, rtol=0, atol=1e-5)
    # export: the arrays and attributes make a model that computes the same
    out_layers, out_attrs = variants.to_onnx(m)
    for mine, theirs in zip(out_layers, layers):
        assert mine.keys() == theirs.keys()
        for n in mine:
            np.testing.assert_array_equal(mine[n], theirs[n])
    np.testing.assert_allclose(run_onnx(make_model(cell, out_layers, out_attrs), x), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cell,attrs,peepholes", [("GRU", {}, False), ("GRU", dict(linear_before_reset=1), False),
                                                   ("LSTM", {}, False), ("LSTM", {}, True)])
@pytest.mark.parametrize("L", [1, 2])
def test_direction_reverse(cell, attrs, peepholes, L, x):
    attrs = dict(attrs, hidden_size=H, direction="reverse")
    layers = random_layers(cell, 1, L, seed=L, peepholes=peepholes)
    model = make_model(cell, layers, attrs)
    want = run_onnx(model, x)
    m = _load(CLASS[cell], model)
    assert isinstance(m, Directions) and m.time == "reverse"
    np.testing.assert_allclose(run_torch(m, x), want, rtol=0, atol=1e-5)
    out_layers, out_attrs = variants.to_onnx(m)
    assert out_attrs["direction"] == "reverse"
    np.testing.assert_allclose(run_onnx(make_model(cell, out_layers, out_attrs), x), want, rtol=0, atol=1e-5)


def test_arrays_with_peepholes_and_linear_before_reset_0(x):
    layers = random_layers("LSTM", 2, 2, peepholes=True)
    m = _load(NumpyLSTM, layers)
    assert type(m) is PeepholeLSTM and m.peepholes
    want = run_onnx(make_model("LSTM", layers, dict(hidden_size=H, direction="bidirectional")), x)
    np.testing.assert_allclose(run_torch(m, x), want, rtol=0, atol=1e-5)
    grus = random_layers("GRU", 1, 2)
    g = _load(NumpyGRU, grus, linear_before_reset=0)
    assert type(g) is ResetBeforeGRU
    want = run_onnx(make_model("GRU", grus, dict(hidden_size=H, linear_before_reset=0)), x)
    np.testing.assert_allclose(run_torch(g, x), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("attrs,match", [
    ({}, "linear_before_reset=0 \\(the ONNX default\\)"),
    (dict(linear_before_reset=1, clip=1.0), "clip=1.0"),
    (dict(linear_before_reset=1, direction="reverse"), 'direction="reverse"'),
    (dict(linear_before_reset=1, activations=HS), "activations="),
])
def test_refused_by_default(attrs, match):
    model = make_model("GRU", random_layers("GRU", 1, 1), dict(dict(hidden_size=H), **attrs))
    with pytest.raises(LayoutError, match=match):
        NumpyGRU.from_onnx(model)


def test_refused_by_default_peepholes():
    model = make_model("LSTM", random_layers("LSTM", 1, 1, peepholes=True), dict(hidden_size=H))
    with pytest.raises(LayoutError, match="input P"):
        NumpyLSTM.from_onnx(model)


def test_mixed_nodes_are_refused():
    layers = random_layers("LSTM", 1, 2, peepholes=True)
    del layers[1]["P"]
    with pytest.raises(LayoutError, match=r"P is not the same in every layer"):
        NumpyLSTM.from_onnx(make_model("LSTM", layers, dict(hidden_size=H)), variants=True)


def test_alpha_consumed_in_order_so_directions_differ():
    attrs = dict(hidden_size=H, direction="bidirectional", activations=HS * 2, activation_alpha=[1 / 6],
                 activation_beta=[0.5], linear_before_reset=1)
    model = make_model("GRU", random_layers("GRU", 2, 1), attrs)
    with pytest.raises(LayoutError, match=r"activations differ between directions \(\[\['hard_sigmoid_keras3', 'tanh'\], "
                                          r"\['hard_sigmoid', 'tanh'\]\]"):
        NumpyGRU.from_onnx(model, variants=True)


def test_unsupported_activation_is_refused():
    model = make_model("GRU", random_layers("GRU", 1, 1), dict(hidden_size=H, activations=["Softsign", "Tanh"]))
    with pytest.raises(LayoutError, match="activation 'softsign' has no variant module"):
        NumpyGRU.from_onnx(model, variants=True)


def test_peephole_shape_is_checked():
    layers = random_layers("LSTM", 1, 1, peepholes=True)
    layers[0]["P"] = layers[0]["P"][:, :H]
    with pytest.raises(LayoutError, match=r"P.*expected \(directions=1, 3\*hidden=12\), got \(1, 4\)"):
        NumpyLSTM.from_onnx(layers, variants=True)


def test_export_refuses_what_onnx_lacks():
    with pytest.raises(LayoutError, match="cell_clip=1.0: an ONNX LSTM has no cell_clip"):
        variants.to_onnx(PeepholeLSTM(I, H, cell_clip=1.0))
    with pytest.raises(LayoutError, match="merge_mode='sum'"):
        variants.to_onnx(Directions(ResetBeforeGRU(I, H, bidirectional=True), merge_mode="sum"))
