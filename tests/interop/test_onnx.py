"""ONNX layout against onnxruntime: graphs built with onnx.helper are the oracle."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from numpyrnn.errors import LayoutError
from numpyrnn.modules import NumpyGRU, NumpyLSTM, NumpyRNN

onnx = pytest.importorskip("onnx", reason="onnx is not installed: pip install \"numpyrnn[interop]\"")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install \"numpyrnn[interop]\"")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
T, N, I, H = 5, 2, 3, 4
GATES = {"GRU": 3, "LSTM": 4, "RNN_TANH": 1, "RNN_RELU": 1}
OP = {"GRU": "GRU", "LSTM": "LSTM", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}
CLASS = {"GRU": NumpyGRU, "LSTM": NumpyLSTM, "RNN_TANH": NumpyRNN, "RNN_RELU": NumpyRNN}


def random_layers(mode: str, D: int, L: int, *, seed: int = 0, bias: bool = True) -> list[dict[str, np.ndarray]]:
    """Random ONNX W/R/B per layer; biases random too (zeros would hide bias bugs)."""
    rng = np.random.default_rng(seed)
    G = GATES[mode]
    out = []
    for k in range(L):
        width = I if k == 0 else D * H
        layer = {"W": rng.uniform(-0.6, 0.6, (D, G * H, width)), "R": rng.uniform(-0.6, 0.6, (D, G * H, H))}
        if bias:
            layer["B"] = rng.uniform(-0.6, 0.6, (D, 2 * G * H))
        out.append({k: v.astype(np.float32) for k, v in layer.items()})
    return out


def default_attrs(mode: str, D: int) -> dict:
    attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
    if mode == "GRU":
        attrs["linear_before_reset"] = 1
    if mode == "RNN_RELU":
        attrs["activations"] = ["Relu"] * D
    return attrs


def make_model(mode: str, layers: list[dict], *, attrs: dict | None = None, extra_inputs: dict | None = None,
               opset: int = 14) -> onnx.ModelProto:
    """A graph X -> node -> Transpose -> Reshape -> node ... -> Y, weights as initializers."""
    D = layers[0]["W"].shape[0]
    attrs = default_attrs(mode, D) if attrs is None else attrs
    nodes, inits = [], []
    if len(layers) > 1:
        inits.append(numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "flat"))
    x = "X"
    for k, layer in enumerate(layers):
        names = []
        for n in ("W", "R", "B"):
            if n in layer:
                inits.append(numpy_helper.from_array(layer[n], f"{n}{k}"))
                names.append(f"{n}{k}")
            else:
                names.append("")
        inputs = [x, *names]
        for position, name in (extra_inputs or {}).items():
            inputs += [""] * (position + 1 - len(inputs))
            inputs[position] = name
        nodes.append(helper.make_node(OP[mode], inputs, [f"Y{k}"], name=f"rnn{k}", **attrs))
        if k + 1 < len(layers):
            nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"T{k}"], perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"T{k}", "flat"], [f"X{k + 1}"]))
            x = f"X{k + 1}"
    graph = helper.make_graph(
        nodes, "rnn", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, N, I])],
        [helper.make_tensor_value_info(f"Y{len(layers) - 1}", TensorProto.FLOAT, None)], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run_onnx(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """onnxruntime's Y [T, D, N, H], reshaped to torch's [T, N, D*H]."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"X": x})[0]
    return np.ascontiguousarray(y.transpose(0, 2, 1, 3)).reshape(y.shape[0], y.shape[2], -1)


def run_torch(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x))[0].numpy()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((T, N, I)).astype(np.float32)


CONFIGS = [(mode, D, 1) for mode in GATES for D in (1, 2)] + [(mode, 2, 2) for mode in GATES] + [("LSTM", 1, 2)]


@pytest.mark.parametrize("mode,D,L", CONFIGS)
def test_matches_onnxruntime_and_round_trips(mode, D, L, x):
    layers = random_layers(mode, D, L, seed=D * 10 + L)
    model = make_model(mode, layers)
    expected = run_onnx(model, x)
    cls = CLASS[mode]
    lbr = {"linear_before_reset": 1} if mode == "GRU" else {}

    from_model = cls.from_onnx(model)
    # arrays carry no activations: they are read with ONNX's default (Tanh), relu needs the model
    from_arrays = cls.from_onnx(layers if L > 1 else layers[0], **lbr) if mode != "RNN_RELU" else from_model
    for module in (from_arrays, from_model):
        assert module.mode == mode and module.num_layers == L and module.bidirectional == (D == 2)
        assert module.batch_first is False
        np.testing.assert_allclose(run_torch(module, x), expected, atol=1e-5, rtol=0)

    exported = from_model.to_onnx()
    assert len(exported) == L
    for got, want in zip(exported, layers):
        assert set(got) == set(want)
        for name in want:  # export after import is exact
            np.testing.assert_array_equal(got[name], want[name])
            assert got[name].dtype == np.float32
    np.testing.assert_allclose(run_onnx(make_model(mode, exported), x), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["GRU", "LSTM", "RNN_TANH"])
def test_bias_free_module_exports_without_B(mode, x):
    layers = random_layers(mode, 2, 1, bias=False)
    lbr = {"linear_before_reset": 1} if mode == "GRU" else {}
    module = CLASS[mode].from_onnx(layers, **lbr)
    assert module.bias is False
    (exported,) = module.to_onnx()
    assert set(exported) == {"W", "R"}
    np.testing.assert_allclose(run_onnx(make_model(mode, [exported]), x), run_torch(module, x), atol=1e-5, rtol=0)


@pytest.mark.filterwarnings("ignore")  # the exporter's own tracer and deprecation warnings
def test_torch_module_exported_to_onnx_and_back_is_exact(x):
    torch.manual_seed(0)
    for source in (torch.nn.GRU(I, H, num_layers=2, bidirectional=True), torch.nn.LSTM(I, H, num_layers=2)):
        buffer = io.BytesIO()
        torch.onnx.export(source, (torch.from_numpy(x),), buffer, dynamo=False, input_names=["X"])
        model = onnx.load_from_string(buffer.getvalue())
        module = {torch.nn.GRU: NumpyGRU, torch.nn.LSTM: NumpyLSTM}[type(source)].from_onnx(model)
        for name, value in source.state_dict().items():
            torch.testing.assert_close(module.state_dict()[name], value, atol=0, rtol=0)


def test_activation_names_are_case_insensitive(x):
    layers = random_layers("LSTM", 2, 1)
    model = make_model("LSTM", layers, attrs=dict(hidden_size=H, direction="bidirectional",
                                                  activations=["sigmoid", "TANH", "Tanh"] * 2))
    np.testing.assert_allclose(run_torch(NumpyLSTM.from_onnx(model), x), run_onnx(model, x), atol=1e-5, rtol=0)


def test_time_major_layout_attribute_does_not_affect_weights():
    layers = random_layers("GRU", 1, 1)
    model = make_model("GRU", layers, attrs=dict(hidden_size=H, linear_before_reset=1, layout=1))
    module = NumpyGRU.from_onnx(model)
    np.testing.assert_array_equal(module.to_onnx()[0]["W"], layers[0]["W"])


# --------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------

def gru_model(**attrs):
    base = dict(hidden_size=H, direction="forward", linear_before_reset=1)
    base.update(attrs)
    return make_model("GRU", random_layers("GRU", 2 if base["direction"] == "bidirectional" else 1, 1),
                      attrs={k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize("value,match", [
    (None, r"linear_before_reset: missing; .*ONNX's GRU default linear_before_reset=0 applies the reset gate before"),
    (0, r"linear_before_reset=0: .*nn.GRU computes"),
    (2, r"linear_before_reset=2: expected 0 or 1"),
])
def test_gru_arrays_need_linear_before_reset_1(value, match):
    with pytest.raises(LayoutError, match=match):
        NumpyGRU.from_onnx(random_layers("GRU", 1, 1)[0], linear_before_reset=value)


@pytest.mark.parametrize("lbr,match", [
    (None, r'GRU node "rnn0": linear_before_reset=0 \(the ONNX default\): ONNX\'s GRU default'),
    (0, r'GRU node "rnn0": linear_before_reset=0: ONNX\'s GRU default'),
])
def test_gru_model_with_reset_before_matmul_is_refused(lbr, match):
    with pytest.raises(LayoutError, match=match):
        NumpyGRU.from_onnx(gru_model(linear_before_reset=lbr))


def test_linear_before_reset_conflicting_with_the_model_is_refused():
    with pytest.raises(LayoutError, match=r"linear_before_reset=0 was passed, but the node has linear_before_reset=1"):
        NumpyGRU.from_onnx(gru_model(), linear_before_reset=0)


@pytest.mark.parametrize("cls,source", [
    (NumpyLSTM, lambda: random_layers("LSTM", 1, 1)),
    (NumpyRNN, lambda: random_layers("RNN_TANH", 1, 1)),
])
def test_linear_before_reset_is_gru_only(cls, source):
    with pytest.raises(LayoutError, match=r"linear_before_reset=1: linear_before_reset is an attribute of the ONNX GRU only"):
        cls.from_onnx(source(), linear_before_reset=1)


@pytest.mark.parametrize("attrs,match", [
    (dict(clip=3.0), r'GRU node "rnn0": clip=3.0: clip bounds the gate pre-activations'),
    (dict(direction="reverse"), r'direction="reverse" runs one direction backwards in time'),
    (dict(activations=["Sigmoid", "Relu"]), r"activations=\['Sigmoid', 'Relu'\]: torch's recurrent modules have fixed activations"),
    (dict(activations=["Sigmoid"]), r"should name 2 per direction \(2 in all\)"),
])
def test_gru_node_attributes_refused(attrs, match):
    with pytest.raises(LayoutError, match=match):
        NumpyGRU.from_onnx(gru_model(**attrs))


def test_lstm_input_forget_peepholes_and_activations_refused():
    layers = random_layers("LSTM", 1, 1)
    base = dict(hidden_size=H, direction="forward")
    with pytest.raises(LayoutError, match=r'LSTM node "rnn0": input_forget=1: input_forget=1 couples'):
        NumpyLSTM.from_onnx(make_model("LSTM", layers, attrs=dict(base, input_forget=1)))
    with pytest.raises(LayoutError, match=r"activations=.*fixed activations: an ONNX LSTM converts with \['sigmoid', 'tanh', 'tanh'\]"):
        NumpyLSTM.from_onnx(make_model("LSTM", layers, attrs=dict(base, activations=["Sigmoid", "Tanh", "Relu"])))
    peep = random_layers("LSTM", 1, 1)
    model = make_model("LSTM", peep, attrs=base, extra_inputs={7: "P0"})
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((1, 3 * H), np.float32), "P0"))
    with pytest.raises(LayoutError, match=r'LSTM node "rnn0" input P \("P0"\): peepholes'):
        NumpyLSTM.from_onnx(model)
    with pytest.raises(LayoutError, match=r'source\["P"\]: peepholes \(input P\) feed the cell state'):
        NumpyLSTM.from_onnx(dict(peep[0], P=np.zeros((1, 3 * H), np.float32)))


def test_rnn_directions_must_share_one_activation():
    layers = random_layers("RNN_TANH", 2, 1)
    model = make_model("RNN_TANH", layers, attrs=dict(hidden_size=H, direction="bidirectional",
                                                      activations=["Tanh", "Relu"]))
    with pytest.raises(LayoutError, match=r"converts with \['tanh'\] or \['relu'\] in every direction"):
        NumpyRNN.from_onnx(model)


def test_lstm_projection_has_no_onnx_form():
    module = NumpyLSTM(I, H, proj_size=2)
    with pytest.raises(LayoutError, match=r"proj_size=2: an ONNX LSTM has no projection"):
        module.to_onnx()


def test_model_of_another_cell_type_is_refused():
    model = make_model("LSTM", random_layers("LSTM", 1, 1))
    with pytest.raises(LayoutError, match=r'LSTM node "rnn0": an ONNX LSTM; NumpyGRU.from_onnx reads GRU nodes: use NumpyLSTM.from_onnx'):
        NumpyGRU.from_onnx(model)


def test_model_without_recurrent_nodes_is_refused():
    graph = helper.make_graph([helper.make_node("Relu", ["X"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1])])
    with pytest.raises(LayoutError, match=r"the model has no GRU, LSTM or RNN node \(it has Relu\)$"):
        NumpyLSTM.from_onnx(helper.make_model(graph))
    graph.node[0].op_type = "MatMul"
    graph.node[0].input.append("X")
    with pytest.raises(LayoutError, match=r"its recurrence may be unrolled into MatMul ops"):
        NumpyRNN.from_onnx(helper.make_model(graph))


def test_weights_must_be_initializers():
    model = make_model("LSTM", random_layers("LSTM", 1, 1))
    model.graph.initializer.remove(next(t for t in model.graph.initializer if t.name == "R0"))
    with pytest.raises(LayoutError, match=r'LSTM node "rnn0" input R \("R0"\): not an initializer of the graph'):
        NumpyLSTM.from_onnx(model)


def test_parallel_nodes_are_not_a_stack():
    model = make_model("LSTM", random_layers("LSTM", 1, 2))
    second = next(n for n in model.graph.node if n.name == "rnn1")
    second.input[0] = "X"  # reads the graph input, not the first layer's Y
    with pytest.raises(LayoutError, match=r'LSTM node "rnn1": does not read LSTM node "rnn0"\'s output Y'):
        NumpyLSTM.from_onnx(model)


def test_other_computation_between_layers_is_refused():
    model = make_model("LSTM", random_layers("LSTM", 2, 2))
    transpose = next(n for n in model.graph.node if n.op_type == "Transpose")
    transpose.op_type = "Relu"
    del transpose.attribute[:]
    with pytest.raises(LayoutError, match=r"not one stacked module"):
        NumpyLSTM.from_onnx(model)


def test_bidirectional_output_flattened_without_transpose_is_refused():
    model = make_model("GRU", random_layers("GRU", 2, 2))
    transpose = next(n for n in model.graph.node if n.op_type == "Transpose")
    transpose.op_type = "Identity"  # Y [T, D, N, H] reshaped straight to [T, N, D*H]
    del transpose.attribute[:]
    with pytest.raises(LayoutError, match=r"without a Transpose\(perm=\[0, 2, 1, 3\]\) before flattening"):
        NumpyGRU.from_onnx(model)


def test_time_major_bidirectional_chain_needs_no_transpose(x):
    layers = random_layers("LSTM", 2, 2)
    model = make_model("LSTM", layers, attrs=dict(hidden_size=H, direction="bidirectional", layout=1))
    for n in [n for n in model.graph.node if n.op_type == "Transpose"]:
        n.op_type = "Identity"  # Y is [N, T, D, H]: reshaping it to [N, T, D*H] is correct
        del n.attribute[:]
    module = NumpyLSTM.from_onnx(model)
    assert module.num_layers == 2 and module.bidirectional


@pytest.mark.parametrize("edit,match", [
    (lambda s: s[1].pop("R"), r'source\[1\]\["R"\]: missing; an ONNX LSTM layer has keys \'W\', \'R\' and optionally \'B\''),
    (lambda s: s[0].update(Q=s[0]["W"]), r'source\[0\]\["Q"\]: unexpected key'),
    (lambda s: s[1].update(R=s[1]["R"][:, :, :3]), r'source\[1\]\["R"\] \(ONNX layout\): expected \(directions=2, 4\*hidden=16, hidden=4\), got \(2, 16, 3\)'),
    (lambda s: s[1].update(W=s[1]["W"][:, :, :4]), r'source\[1\]\["W"\] \(ONNX layout\): .*axis 2 \(2\*hidden\) is 4, expected 8'),
    (lambda s: s[0].update(B=s[0]["B"][:, :16]), r'source\[0\]\["B"\] .*B holds the W-side biases then the R-side biases'),
    (lambda s: s[1].pop("B"), r"source\[1\]: has no B while source\[0\] has one"),
    (lambda s: s.__setitem__(1, [1, 2]), r"source\[1\]: expected a mapping with 'W', 'R' and optionally 'B', got list"),
])
def test_bad_array_structures_name_the_key_path(edit, match):
    source = random_layers("LSTM", 2, 2)
    edit(source)
    with pytest.raises(LayoutError, match=match):
        NumpyLSTM.from_onnx(source)


def test_gru_arrays_given_to_lstm_get_a_hint():
    with pytest.raises(LayoutError, match=r"12 = 3\*hidden fits an ONNX GRU: use NumpyGRU.from_onnx"):
        NumpyLSTM.from_onnx(random_layers("GRU", 1, 1))


def test_recurrent_width_other_than_hidden_is_refused():
    layer = random_layers("LSTM", 1, 1)[0]  # H=4; a projected LSTM would have R of width 2
    with pytest.raises(LayoutError, match=r'source\["R"\]: axis 1 \(4\*hidden\) is 16, but axis 2 \(hidden\) is 2; .*no projection'):
        NumpyLSTM.from_onnx(dict(layer, R=layer["R"][:, :, :2]))


def test_wrong_source_type():
    with pytest.raises(TypeError, match=r"source: expected a mapping with 'W', 'R' and optionally 'B'"):
        NumpyLSTM.from_onnx("model.onnx")


def test_integer_weights_are_a_type_error():
    layer = random_layers("LSTM", 1, 1)[0]
    layer["W"] = layer["W"].astype(np.int32)
    with pytest.raises(TypeError, match=r'source\["W"\]: dtype int32'):
        NumpyLSTM.from_onnx(layer)


def test_arrays_do_not_import_onnx():
    code = (
        "import sys, numpy as np\n"
        "import numpyrnn\n"
        "from numpyrnn import NumpyGRU\n"
        "W = np.zeros((1, 12, 3), np.float32); R = np.zeros((1, 12, 4), np.float32)\n"
        "g = NumpyGRU.from_onnx({'W': W, 'R': R, 'B': np.zeros((1, 24), np.float32)}, linear_before_reset=1)\n"
        "g.to_onnx()\n"
        "bad = [m for m in ('onnx', 'onnxruntime', 'jax', 'flax', 'keras', 'tensorflow') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT, timeout=120)
