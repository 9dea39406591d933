"""Write the Keras 2 (``tf_keras``) fixtures under ``tests/data/keras2_files/`` with tf_keras's own outputs.

Run with TensorFlow and tf_keras installed (``pip install numpyrnn[tf-era]``)::

    TF_USE_LEGACY_KERAS=1 python tests/data/make_keras2_files.py [OUT_DIR]

tf_keras 2.21 no longer has ``CuDNNLSTM``/``CuDNNGRU``, so their files are written
with h5py under the names Keras 2 gave them (``model_config`` class ``CuDNNLSTM``,
weights ``cu_dnnlstm/kernel:0``, ``recurrent_kernel:0``, ``bias:0``, the bias flat
``(2*G*H,)``: input half, then recurrent half). Their expected outputs come from
tf_keras's plain layers given the same weights, which compute what cuDNN does:
``LSTM`` with the two halves summed, ``GRU(reset_after=True)`` with the bias reshaped
to ``(2, 3*H)``. Each case has ``<case>.h5`` and ``<case>.npz`` (``x``, ``y``); the plain
layers with Keras 2's old defaults (``hard_sigmoid``, ``reset_after=False``) too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402

T, N, I, H = 5, 2, 3, 4


def _write_cudnn(path: Path, class_name: str, layer: str, arrays: list[np.ndarray], bidirectional: bool) -> None:
    inner = {"class_name": class_name, "config": {"name": layer, "units": H, "return_sequences": True}}
    cfg = {"class_name": "Bidirectional", "config": {"name": "bidirectional", "layer": inner, "merge_mode": "concat"}} \
        if bidirectional else inner
    model = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, T, I], "name": "input"}}, cfg]}}
    top = cfg["config"]["name"]
    names = ["kernel:0", "recurrent_kernel:0", "bias:0"]
    if bidirectional:
        wnames = [f"{top}/forward_{layer}/{n}" for n in names] + [f"{top}/backward_{layer}/{n}" for n in names]
    else:
        wnames = [f"{layer}/{n}" for n in names]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(model).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = np.array([top.encode()])
        lg = g.create_group(top)
        lg.attrs["weight_names"] = np.array([n.encode() for n in wnames])
        for n, a in zip(wnames, arrays):
            lg.create_dataset(n, data=a)


def cudnn(out: Path, class_name: str, bidirectional: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    G = 4 if class_name == "CuDNNLSTM" else 3
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    stored, plain = [], []
    for _ in range(2 if bidirectional else 1):
        k = rng.uniform(-0.6, 0.6, (I, G * H)).astype(np.float32)
        rk = rng.uniform(-0.6, 0.6, (H, G * H)).astype(np.float32)
        b = rng.uniform(-0.6, 0.6, (2 * G * H,)).astype(np.float32)
        stored += [k, rk, b]
        plain += [k, rk, b[:G * H] + b[G * H:] if G == 4 else b.reshape(2, G * H)]
    cell = keras.layers.LSTM(H, return_sequences=True) if G == 4 else \
        keras.layers.GRU(H, return_sequences=True, reset_after=True)
    layer = keras.layers.Bidirectional(cell) if bidirectional else cell
    model = keras.Sequential([keras.Input((T, I)), layer])
    model.set_weights(plain)
    y = np.asarray(model(x))
    name = ("bi_" if bidirectional else "") + class_name.lower()
    _write_cudnn(out / f"{name}.h5", class_name, "cu_dnnlstm" if G == 4 else "cu_dnngru", stored, bidirectional)
    np.savez(out / f"{name}.npz", x=x, y=y)


def plain(out: Path) -> None:
    rng = np.random.default_rng(20)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    # reset_after=True GRU: bias (2, 3H), saved as a full tf_keras .h5 model
    model = keras.Sequential([keras.Input((T, I)), keras.layers.GRU(H, return_sequences=True, reset_after=True,
                                                                     name="gru")])
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(out / "gru_reset_after.h5")
    np.savez(out / "gru_reset_after.npz", x=x, y=np.asarray(model(x)))
    # the old default recurrent_activation="hard_sigmoid": refused, and built as a variant with variants=True
    model = keras.Sequential([keras.Input((T, I)), keras.layers.LSTM(H, recurrent_activation="hard_sigmoid",
                                                                      return_sequences=True, name="lstm")])
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(out / "lstm_hard_sigmoid.h5")
    np.savez(out / "lstm_hard_sigmoid.npz", x=x, y=np.asarray(model(x)))
    # Keras <= 2.2's GRU defaults (reset_after=False, hard_sigmoid), in a Bidirectional that sums its directions
    gru = keras.layers.GRU(H, reset_after=False, recurrent_activation="hard_sigmoid", return_sequences=True)
    model = keras.Sequential([keras.Input((T, I)), keras.layers.Bidirectional(gru, merge_mode="sum", name="bi")])
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32) for w in model.get_weights()])
    model.save(out / "bi_sum_gru_keras2_defaults.h5")
    np.savez(out / "bi_sum_gru_keras2_defaults.npz", x=x, y=np.asarray(model(x)))


def main(out: str | os.PathLike | None = None) -> None:
    path = Path(out) if out is not None else Path(__file__).parent / "keras2_files"
    path.mkdir(parents=True, exist_ok=True)
    cudnn(path, "CuDNNLSTM", False, 1)
    cudnn(path, "CuDNNGRU", False, 2)
    cudnn(path, "CuDNNLSTM", True, 3)
    cudnn(path, "CuDNNGRU", True, 4)
    plain(path)
    print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
