"""The PaddlePaddle cases, shared by the fixture tests and the live Paddle tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from numpyrnn.formats import paddle

DATA = Path(__file__).resolve().parent.parent / "data" / "paddle_params"

#: case -> (module name, build options, class, proj_size, bidirectional, num_layers)
CASES = {
    "lstm2": ("rnn", {}, "NumpyLSTM", 0, False, 2),
    "gru_bidirect": ("rnn", {}, "NumpyGRU", 0, True, 2),
    "rnn_relu": ("rnn", {"nonlinearity": "relu"}, "NumpyRNN", 0, False, 1),
    "rnn_tanh_bidirect": ("rnn", {}, "NumpyRNN", 0, True, 1),
    "lstm_proj_bidirect": ("rnn", {}, "NumpyLSTM", 2, True, 2),
    "lstm_time_major": ("rnn", {"time_major": True}, "NumpyLSTM", 0, False, 1),
    "model": ("encoder", {}, "NumpyGRU", 0, False, 2),
}


def check_case(directory: Path, case: str) -> None:
    name, options, cls, proj, bidi, layers = CASES[case]
    data = np.load(directory / f"{case}.npz")
    modules = paddle.load_all_from_pdparams(directory / f"{case}.pdparams", **options)
    assert list(modules) == [name]
    m = modules[name]
    assert (type(m).__name__, m.proj_size if hasattr(m, "proj_size") else 0, m.bidirectional, m.num_layers) == \
        (cls, proj, bidi, layers)
    with torch.no_grad():
        y = m(torch.from_numpy(data["x"]))[0].numpy()
    np.testing.assert_allclose(y, data["y"], rtol=1e-5, atol=1e-5, err_msg=case)
