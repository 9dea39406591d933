"""Parameters made straight into a file (numpyrnn.streaming): byte for byte what building the module gives."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN, engine, streaming
from numpyrnn.errors import LayoutError

CELLS = {"gru": NumpyGRU, "lstm": NumpyLSTM, "rnn": NumpyRNN}
# (piece bytes, flush bytes): the defaults, and sizes small enough that every parameter is cut into many
# sub-blocks, made across several buffers that take turns and grow
SIZES = [(streaming.PIECE_BYTES, streaming.FLUSH_BYTES), (48, 200), (4, 4), (1000, 64)]


def _bytes(module: torch.nn.Module) -> bytes:
    return b"".join(t.detach().contiguous().view(torch.uint8).numpy().tobytes() for t in module.state_dict().values())


def _streamed(build, piece_bytes: int = streaming.PIECE_BYTES, flush_bytes: int = streaming.FLUSH_BYTES):
    """``build()`` under deferral: the meta module, and the bytes made for it (each chunk copied at once)."""
    sink: dict = {}
    with engine.deferring(sink):
        module = build()
    assert all(p.device.type == "meta" for p in module.parameters())
    deferred = sink[module]
    assert streaming.streamable(module, deferred)
    names, chunks = [], []
    for name, chunk in streaming.parameter_bytes(module, deferred, piece_bytes=piece_bytes, flush_bytes=flush_bytes):
        names.append(name)
        chunks.append(bytes(chunk))
    return module, names, b"".join(chunks)


def _check(build, sizes=SIZES):
    reference = build()
    for piece, flush in sizes:
        module, names, data = _streamed(build, piece, flush)
        assert list(dict.fromkeys(names)) == [k for k, v in reference.state_dict().items() if v.numel()]
        assert data == _bytes(reference), (piece, flush)
        assert {k: (v.shape, v.dtype) for k, v in module.state_dict().items()} == \
               {k: (v.shape, v.dtype) for k, v in reference.state_dict().items()}


def _blocks(G: int, I: int, H: int, L: int, D: int, *, P: int = 0, bias: bool = True, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    R = P or H

    def r(*shape):
        return rng.standard_normal(shape).astype(dtype)

    out = {"w0": r(D, H, G * (I + R))}
    if L > 1:
        out["w"] = r(L - 1, D, H, G * (D * R + R))
    if bias:
        out["b0"] = r(D, H, 2 * G)
        if L > 1:
            out["b"] = r(L - 1, D, H, 2 * G)
    if P:
        out["proj"] = r(L, D, P, H)
    return out


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("L,D,bias", [(1, 1, True), (2, 2, True), (3, 1, False), (2, 2, False)])
def test_block_arrays_every_cell_and_shape(cell, L, D, bias):
    G = {"gru": 3, "lstm": 4, "rnn": 1}[cell]
    arrays = _blocks(G, 5, 7, L, D, bias=bias)
    _check(lambda: CELLS[cell].from_numpy(**arrays))


@pytest.mark.parametrize("options", [{"gates": "zrn"}, {"rowwise": True}, {"gates": "nzr", "rowwise": True}])
def test_block_gate_orders_and_the_row_loop(options):
    arrays = _blocks(3, 6, 4, 2, 2)
    _check(lambda: NumpyGRU.from_numpy(**arrays, **options))


def test_tensor_leaves_that_start_inside_their_storage():
    """Leaves given as torch views (a storage offset, contiguous or not) and as requires_grad tensors."""
    arrays = _blocks(3, 5, 6, 2, 2)
    big = {k: torch.from_numpy(np.stack([v * 0, v, v * 2])) for k, v in arrays.items()}
    sliced = {k: t[1] for k, t in big.items()}  # contiguous, storage offset > 0
    assert all(t.storage_offset() > 0 and t.is_contiguous() for t in sliced.values())
    _check(lambda: NumpyGRU.from_numpy(**sliced))
    strided = {k: torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.stack([v, v]), 0, -1)))[..., 1]
               for k, v in arrays.items()}  # every other element
    _check(lambda: NumpyGRU.from_numpy(**strided))
    grads = {k: torch.from_numpy(v).requires_grad_() for k, v in arrays.items()}
    _check(lambda: NumpyGRU.from_numpy(**grads))


def test_lstm_projections():
    arrays = _blocks(4, 6, 8, 2, 2, P=3)
    _check(lambda: NumpyLSTM.from_numpy(**arrays))


@pytest.mark.parametrize("source,dtype", [(np.float64, None), (np.float64, torch.float16), (np.float32, torch.float64),
                                          (np.float16, torch.float32), (np.float32, torch.bfloat16),
                                          (np.float64, torch.float32)])
def test_casts_round_as_copy_does(source, dtype):
    """float64 -> float16 included (torch rounds it through float32: the numpy copy is not used there)."""
    arrays = _blocks(3, 5, 6, 2, 2, dtype=source, seed=1)
    arrays["w0"][0, 0, :4] = [65519.0, -65510.0, 1e-8, -3.0e-5] if source == np.float64 else arrays["w0"][0, 0, :4]
    _check(lambda: NumpyGRU.from_numpy(**arrays, dtype=dtype))


def test_every_layout_of_the_engine():
    """Keras, ONNX (with and without B: zeros where no piece writes), TF1 (offsets added) and Flax
    go through the same deferral and give the same bytes."""
    torch.manual_seed(0)
    gru = NumpyGRU(5, 6, num_layers=2, bidirectional=True)
    lstm = NumpyLSTM(5, 6, num_layers=2, bidirectional=True)
    _check(lambda: NumpyGRU.from_keras(gru.to_keras()))
    _check(lambda: NumpyLSTM.from_keras(lstm.to_keras()))
    _check(lambda: NumpyGRU.from_onnx(gru.to_onnx(), linear_before_reset=1))
    no_b = [{k: v for k, v in layer.items() if k != "B"} for layer in lstm.to_onnx()]
    _check(lambda: NumpyLSTM.from_onnx(no_b))
    _check(lambda: NumpyLSTM.from_tf1(lstm.to_tf1(forget_bias=1.0), forget_bias=1.0))
    _check(lambda: NumpyGRU.from_flax(gru.to_flax()))


@pytest.mark.parametrize("value,where", [(np.nan, "w0"), (np.inf, "w"), (-np.inf, "b")])
def test_a_bad_value_raises_what_building_raises(value, where):
    arrays = _blocks(3, 5, 6, 2, 2)
    arrays[where].reshape(-1)[7] = value
    with pytest.raises(LayoutError) as built:
        NumpyGRU.from_numpy(**arrays)
    sink: dict = {}
    with engine.deferring(sink):
        module = NumpyGRU.from_numpy(**arrays)  # the values are not read yet
    with pytest.raises(LayoutError) as streamed:
        for _ in streaming.parameter_bytes(module, sink[module], piece_bytes=16, flush_bytes=64):
            pass
    assert str(streamed.value) == str(built.value)


def test_a_cast_that_overflows_raises_what_building_raises():
    arrays = _blocks(3, 5, 6, 2, 2, dtype=np.float64)
    arrays["w"][0, 1, 2, 3] = 1e39
    with pytest.raises(LayoutError) as built:
        NumpyGRU.from_numpy(**arrays)
    sink: dict = {}
    with engine.deferring(sink):
        module = NumpyGRU.from_numpy(**arrays)
    with pytest.raises(LayoutError) as streamed:
        list(streaming.parameter_bytes(module, sink[module]))
    assert str(streamed.value) == str(built.value)


def test_huge_finite_values_are_no_refusal():
    """A block whose sum overflows holds only finite values: written as building writes it."""
    arrays = _blocks(3, 5, 6, 2, 2)
    for a in arrays.values():
        a[...] = np.float32(3.0e38) * np.sign(a + 1e-9)
        a.reshape(-1)[::3] = np.float32(3.3e38)
    _check(lambda: NumpyGRU.from_numpy(**arrays), sizes=[(64, 256), (streaming.PIECE_BYTES, streaming.FLUSH_BYTES)])


def test_deferral_is_only_for_cpu_builds_and_ends_with_its_block():
    arrays = _blocks(3, 4, 5, 1, 1)
    sink: dict = {}
    with engine.deferring(sink):
        meta = NumpyGRU.from_numpy(**arrays)
        on_meta = NumpyGRU.from_numpy(**arrays, device="meta")  # asked for: no values to write later
    assert meta in sink and on_meta not in sink
    after = NumpyGRU.from_numpy(**arrays)
    assert after.weight_ih_l0.device.type == "cpu" and after not in sink
    assert torch.equal(after.weight_ih_l0, torch.from_numpy(arrays["w0"][0, :, :12].reshape(5, 3, 4)
                                                            .transpose(1, 0, 2).reshape(15, 4)))


def test_split_covers_every_element_once():
    sz, st = (3, 5, 7), (35, 7, 1)
    seen = np.zeros(105, int)
    for limit in (1, 4, 7, 8, 34, 35, 36, 105, 1000):
        seen[:] = 0
        for s, ps, po, ls, lo in streaming._split(sz, st, 0, st, 0, limit):
            assert int(np.prod(s)) <= max(limit, 1) or len(s) == 0
            assert ls == ps and lo == po
            idx = po + sum(np.ix_(*[np.arange(n) * k for n, k in zip(s, ps)])) if s else np.array([po])
            seen[np.asarray(idx).ravel()] += 1
        assert (seen == 1).all(), limit


FORK_SCRIPT = """
import multiprocessing as mp, numpy as np, torch
from numpyrnn import NumpyGRU, engine, streaming
torch.set_num_threads(2)
H = 600
w0 = np.random.default_rng(0).standard_normal((1, H, 3 * (H + H))).astype(np.float32)

def made(_):
    # bfloat16 goes through torch's copies and reductions: in a forked child they stay on one thread
    sink = {}
    with engine.deferring(sink):
        m = NumpyGRU.from_numpy(w0, dtype=torch.bfloat16)
    return b"".join(bytes(c) for _, c in streaming.parameter_bytes(m, sink[m]))

want = made(0)  # the parent used its threads before forking
with mp.get_context("fork").Pool(2) as pool:
    assert pool.map(made, range(2)) == [want, want]
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_make_parameters_with_torch_kernels(tmp_path):
    script = tmp_path / "fork.py"
    script.write_text(FORK_SCRIPT)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=240)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
