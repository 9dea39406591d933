"""Awkward but valid arrays load exactly, silently, without aliasing, into trainable modules.

Read-only arrays, memory maps (``np.memmap`` and ``np.load(mmap_mode=...)``),
Fortran order, negative strides (including on size-1 axes), non-native byte
order, strided slices, broadcast (zero-stride) views and non-contiguous torch
tensors. The optimizer step after loading from ``mmap_mode="r"`` runs in a
subprocess: with ``.data =`` assignment that scenario segfaults, and a crash
must fail one test, not end the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from numpyrnn import load_numpy
from numpyrnn.spec import RNNSpec

from .cases import BLOCK, assert_state_identical, state_bits
from .mutations import TRANSFORMS
from .profiles import budget
from .strategies import Config, block_arrays, configs

ROOT = Path(__file__).resolve().parents[2]

CONFIGS = {
    "GRU": Config(RNNSpec("GRU", 3, 4, 2, True, True), "zrn", False, np.dtype(np.float32), 1),
    "LSTM-proj": Config(RNNSpec("LSTM", 2, 3, 2, True, True, 2), None, False, np.dtype(np.float64), 2),
    "RNN-relu": Config(RNNSpec("RNN_RELU", 2, 3, 3, False, True), None, True, np.dtype(np.float32), 0),
    "LSTM-1unit": Config(RNNSpec("LSTM", 1, 1, 1, False, False), None, False, np.dtype(np.float32), 4),
}


def _awkward(arrays, transform, tmp):
    out, mutators = {}, []
    for k, v in arrays.items():
        if v is None:
            out[k] = None
            continue
        out[k], mutate = transform(v, tmp)
        mutators.append(mutate)
    return out, mutators


def _plain(arrays):
    """What the awkward arrays hold, as ordinary C-contiguous numpy arrays."""
    def copy(v):
        if v is None:
            return None
        if isinstance(v, torch.Tensor):
            return v.numpy().copy()
        return np.array(v, dtype=v.dtype.newbyteorder("="), order="C")
    return {k: copy(v) for k, v in arrays.items()}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("kind", TRANSFORMS)
def test_awkward_arrays_load_exactly_silently_without_aliasing(kind, name, tmp_path):
    cfg = CONFIGS[name]
    awkward, mutators = _awkward(block_arrays(cfg), TRANSFORMS[kind], tmp_path)
    plain = _plain(awkward)
    want = state_bits(BLOCK.from_source(cfg, plain))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        built = BLOCK.from_source(cfg, awkward)
        loaded = BLOCK.load_source(cfg.torch_module(), cfg, awkward)
    assert_state_identical(state_bits(built), want)
    assert_state_identical(state_bits(loaded), want)

    for mutate in mutators:  # the memory behind the arrays changes; the modules do not
        mutate()
    assert_state_identical(state_bits(built), want)
    assert_state_identical(state_bits(loaded), want)

    if kind.startswith(("mmap", "memmap")):
        return  # the optimizer step after memory maps runs in a subprocess below
    _train_step(built, cfg)
    assert any(not torch.equal(p.detach(), want[k]) for k, p in built.named_parameters()), "no parameter trained"


def _train_step(module, cfg):
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 2, cfg.spec.input_size))).to(cfg.torch_dtype)
    for opt in (torch.optim.SGD(module.parameters(), lr=0.1), torch.optim.Adam(module.parameters(), lr=0.01)):
        opt.zero_grad()
        y, _ = module(x)
        (y - 1).square().sum().backward()
        opt.step()
    for p in module.parameters():
        assert torch.isfinite(p).all()


_SUBPROCESS = textwrap.dedent(r"""
    import sys, tempfile, warnings
    from pathlib import Path
    import numpy as np, torch
    import numpyrnn
    from numpyrnn import NumpyGRU, NumpyLSTM, NumpyRNN, load_numpy

    warnings.simplefilter("error")
    torch.manual_seed(0)  # the inputs: a relu RNN under SGD at lr 0.1 can overflow for an unlucky draw
    warnings.filterwarnings("ignore", "LSTM with projections is not supported with oneDNN")
    rng = np.random.default_rng(0)
    tmp = Path(sys.argv[1])
    cells = [
        (NumpyGRU, dict(w0=(2, 4, 3 * (3 + 4)), w=(1, 2, 4, 3 * (2 * 4 + 4)), b0=(2, 4, 6), b=(1, 2, 4, 6)), {}),
        (NumpyLSTM, dict(w0=(2, 4, 4 * (3 + 2)), w=(1, 2, 4, 4 * (2 * 2 + 2)), b0=(2, 4, 8), b=(1, 2, 4, 8),
                         proj=(2, 2, 2, 4)), {}),
        (NumpyRNN, dict(w0=(1, 4, 3 + 4), b0=(1, 4, 2)), dict(nonlinearity="relu")),
    ]
    for cls, shapes, kw in cells:
        maps = {}
        for key, shape in shapes.items():
            np.save(tmp / f"{cls.__name__}_{key}.npy", rng.standard_normal(shape).astype(np.float32))
            maps[key] = np.load(tmp / f"{cls.__name__}_{key}.npy", mmap_mode="r")
        raw = tmp / f"{cls.__name__}_w0.bin"
        np.asarray(maps["w0"]).tofile(raw)
        for source in (maps, dict(maps, w0=np.memmap(raw, dtype=np.float32, mode="r", shape=shapes["w0"]))):
            module = cls.from_numpy(**source, **kw)
            target = load_numpy(cls(**numpyrnn.spec.RNNSpec.of(module).module_kwargs()), **source)
            for m in (module, target):
                for opt in (torch.optim.SGD(m.parameters(), lr=0.1), torch.optim.Adam(m.parameters(), lr=0.01)):
                    for _ in range(2):
                        opt.zero_grad()
                        y, _ = m(torch.randn(5, 3, 3))
                        y.square().sum().backward()
                        opt.step()
                assert all(torch.isfinite(p).all() for p in m.parameters())
            np.testing.assert_array_equal(np.asarray(source["w0"]), np.load(tmp / f"{cls.__name__}_w0.npy"))
    print("trained", len(cells))
""")


def test_optimizer_steps_after_loading_from_read_only_memory_maps(tmp_path):
    """``np.load(mmap_mode="r")`` and ``np.memmap(mode="r")`` sources, then SGD and Adam steps: no crash, no warning."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _SUBPROCESS, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, f"rc={proc.returncode} (negative: killed by a signal)\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip() == "trained 3"
    assert proc.stderr == "", proc.stderr


@budget("awkward_mix", 200)
@given(cfg=configs(), picks=st.lists(st.sampled_from(sorted(TRANSFORMS)), min_size=5, max_size=5))
def test_any_mix_of_awkward_arrays_loads_like_plain_ones(cfg: Config, picks):
    arrays = block_arrays(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        awkward = {}
        for (k, v), kind in zip(arrays.items(), picks):
            awkward[k] = None if v is None else TRANSFORMS[kind](v, Path(tmp))[0]
        plain = _plain(awkward)
        want = state_bits(load_numpy(cfg.torch_module(), **plain, **cfg.options()))
        module = cfg.torch_module()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            load_numpy(module, **awkward, **cfg.options())
        assert_state_identical(state_bits(module), want)
        del awkward  # release the maps before the folder goes
