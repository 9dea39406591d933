"""Flax checkpoints written by flax.serialization: separate modules unless stack=True asserts a stack."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import numpyrnn
from numpyrnn import LayoutError, NumpyGRU, NumpyLSTM

flax_nn = pytest.importorskip("flax.linen")
serialization = pytest.importorskip("flax.serialization")
jax = pytest.importorskip("jax")

T, N = 6, 2


class DenseBetween(flax_nn.Module):
    @flax_nn.compact
    def __call__(self, x, *, upto: str = "all"):
        y = flax_nn.RNN(flax_nn.LSTMCell(4))(x)
        if upto == "low":
            return y
        y = flax_nn.Dense(5)(y)
        if upto == "mid":
            return y
        return flax_nn.RNN(flax_nn.LSTMCell(3))(y)


class Stack(flax_nn.Module):
    def setup(self):
        self.layers = [flax_nn.Bidirectional(flax_nn.RNN(flax_nn.GRUCell(4)), flax_nn.RNN(flax_nn.GRUCell(4)))
                       for _ in range(2)]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def _save(tmp_path, module, x):
    variables = module.init(jax.random.PRNGKey(0), x)
    path = tmp_path / "m.msgpack"
    path.write_bytes(serialization.to_bytes(variables))
    return path, variables


def _run(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(np.asarray(x)))[0].numpy()


def test_a_dense_between_two_rnns_keeps_them_apart(tmp_path):
    x = np.random.default_rng(0).standard_normal((N, T, 3)).astype(np.float32)
    model = DenseBetween()
    path, variables = _save(tmp_path, model, x)
    mf = numpyrnn.read_model(path)
    # in a compact module, nn.RNN's cell is the parent's submodule: the param paths name the cells
    assert mf.names() == ["LSTMCell_0", "LSTMCell_1"] and ("Dense_0", "Dense") in mf.skipped
    assert "each recurrent layer is its own module (pass stack=True if they feed each other)" in mf.notes[0]
    mods = numpyrnn.load_all(path)
    assert all(type(m) is NumpyLSTM and m.batch_first and m.num_layers == 1 for m in mods.values())
    low = model.apply(variables, x, upto="low")
    mid = model.apply(variables, x, upto="mid")
    np.testing.assert_allclose(_run(mods["LSTMCell_0"], x), np.asarray(low), rtol=0, atol=1e-5)
    np.testing.assert_allclose(_run(mods["LSTMCell_1"], mid), np.asarray(model.apply(variables, x)), rtol=0, atol=1e-5)
    # asserting a stack of layers that do not fit is refused, naming the layer
    with pytest.raises(LayoutError, match=r"layer 'LSTMCell_0'"):
        numpyrnn.load_all(path, stack=True)


def test_a_true_stack_with_stack_true(tmp_path):
    x = np.random.default_rng(1).standard_normal((N, T, 3)).astype(np.float32)
    model = Stack()
    path, variables = _save(tmp_path, model, x)
    assert numpyrnn.read_model(path).names() == ["layers_0", "layers_1"]
    module = numpyrnn.load(path, stack=True)
    assert type(module) is NumpyGRU and module.num_layers == 2 and module.bidirectional and module.batch_first
    assert numpyrnn.read_model(path, stack=True).modules[0].config["layers"] == ["layers_0", "layers_1"]
    np.testing.assert_allclose(_run(module, x), np.asarray(model.apply(variables, x)), rtol=0, atol=1e-5)
    with pytest.raises(LayoutError, match=r"m\.msgpack: holds 2 recurrent module\(s\) \('layers_0', "
                                          r"'layers_1'\); pick one with layer='layers_0'"):
        numpyrnn.load(path)


def test_stack_in_the_cli(tmp_path, capsys):
    from numpyrnn.cli import main

    x = np.zeros((1, T, 3), np.float32)
    path, _ = _save(tmp_path, Stack(), x)
    assert main(["inspect", str(path), "--stack"]) == 0
    out = capsys.readouterr().out
    assert "module 'layers_0': cell=gru input=3 hidden=4 layers=2 directions=2" in out
    assert "note: Flax params record no graph: --stack asserts" in out
    assert main(["convert", str(path), "-o", str(tmp_path / "o.pt"), "--stack", "--cell", "lstm"]) == 1
    assert "the file records a GRU cell (layer 'layers_0'), but --cell lstm was given; drop --cell" in \
        capsys.readouterr().err
