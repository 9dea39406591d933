"""Write the Keras 2 (tf_keras) full-model HDF5 files that tests/formats/test_keras_legacy.py reads.

Run with a Python that has TensorFlow and tf_keras (not needed for the tests):

    python tests/data/make_tf_keras_files.py

Each model gets random weights and biases from a fixed seed; next to the
``.h5`` files, ``tf_keras_io.npz`` holds for each model an input and the
output that tf_keras computes for every recurrent layer, so the tests check
numpyrnn's modules against Keras 2 without TensorFlow.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
T = 5


def _keras():
    import tf_keras  # only this script needs TensorFlow and tf_keras

    return tf_keras


def _randomise(model, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if ws:
            layer.set_weights([(0.5 * rng.standard_normal(w.shape)).astype(w.dtype) for w in ws])


def models() -> dict:
    keras = _keras()
    out = {}
    out["k2_sequential"] = keras.Sequential([
        keras.Input((T, 3)),
        keras.layers.LSTM(4, return_sequences=True, name="low"),
        keras.layers.Dense(4, name="mid"),
        keras.layers.LSTM(4, return_sequences=True, name="high"),
    ])
    x = keras.Input((T, 3))
    y = keras.layers.Bidirectional(keras.layers.GRU(3, return_sequences=True), name="bigru")(x)
    y = keras.layers.LSTM(4, return_sequences=True, name="lstm_a")(y)
    y = keras.layers.LSTM(4, return_sequences=True, name="lstm_b")(y)
    out["k2_functional"] = keras.Model(x, y)
    return out


def main() -> None:
    keras = _keras()
    io = {}
    for seed, (name, model) in enumerate(models().items()):
        _randomise(model, seed)
        x = np.random.default_rng(100 + seed).standard_normal((2, T, 3)).astype(np.float32)
        io[f"{name}/x"] = x
        for layer in model.layers:
            if layer.get_weights() and "dense" not in type(layer).__name__.lower():
                io[f"{name}/{layer.name}/input"] = keras.Model(model.inputs, layer.input)(x).numpy()
                io[f"{name}/{layer.name}/output"] = keras.Model(model.inputs, layer.output)(x).numpy()
        model.save(HERE / f"{name}.h5")  # tf_keras's model.save(".h5"): the legacy full-model HDF5
    np.savez(HERE / "tf_keras_io.npz", **io)


if __name__ == "__main__":
    main()
