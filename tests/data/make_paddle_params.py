"""Write the PaddlePaddle fixtures under ``tests/data/paddle_params/`` with Paddle's own outputs.

Run with paddlepaddle installed (``pip install numpyrnn[tf-era]``), in a process
that has not imported TensorFlow::

    python tests/data/make_paddle_params.py [OUT_DIR]

Each case writes ``<case>.pdparams`` (``paddle.save(layer.state_dict())``) and
``<case>.npz`` with the input ``x`` and Paddle's output ``y`` (every parameter,
biases included, drawn at random so that each one matters).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import paddle

T, N, I, H, P = 5, 2, 3, 4, 2


class Encoder(paddle.nn.Layer):
    """A model holding a recurrent layer among others: keys ``encoder.*`` and ``head.*``."""

    def __init__(self):
        super().__init__()
        self.encoder = paddle.nn.GRU(I, H, num_layers=2)
        self.head = paddle.nn.Linear(H, 1)

    def forward(self, x):
        return self.encoder(x)[0]


CASES = {
    "lstm2": lambda: paddle.nn.LSTM(I, H, num_layers=2),
    "gru_bidirect": lambda: paddle.nn.GRU(I, H, num_layers=2, direction="bidirect"),
    "rnn_relu": lambda: paddle.nn.SimpleRNN(I, H, activation="relu"),
    "rnn_tanh_bidirect": lambda: paddle.nn.SimpleRNN(I, H, direction="bidirectional"),
    "lstm_proj_bidirect": lambda: paddle.nn.LSTM(I, H, num_layers=2, direction="bidirect", proj_size=P),
    "lstm_time_major": lambda: paddle.nn.LSTM(I, H, time_major=True),
    "model": Encoder,
}


def main(out: str | os.PathLike | None = None) -> None:
    path = Path(out) if out is not None else Path(__file__).parent / "paddle_params"
    path.mkdir(parents=True, exist_ok=True)
    paddle.seed(0)
    for k, (case, make) in enumerate(CASES.items()):
        rng = np.random.default_rng(k)
        layer = make()
        for p in layer.parameters():
            p.set_value(rng.uniform(-0.6, 0.6, p.shape).astype(np.float32))
        x = rng.standard_normal((T, N, I) if case == "lstm_time_major" else (N, T, I)).astype(np.float32)
        y = layer(paddle.to_tensor(x))
        y = y if case == "model" else y[0]
        paddle.save(layer.state_dict(), str(path / f"{case}.pdparams"))
        np.savez(path / f"{case}.npz", x=x, y=y.numpy())
    print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
