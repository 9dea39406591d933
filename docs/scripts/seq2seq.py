"""Write the Keras encoder-decoder file that docs/models.md converts (``python docs/scripts/seq2seq.py DIR``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")


def main(folder: str = ".") -> Path:
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    src = keras.Input((None,), dtype="int32", name="source")
    tgt = keras.Input((None,), dtype="int32", name="target")
    x = keras.layers.Embedding(1000, 64, name="source_embedding")(src)
    _, h, c = keras.layers.LSTM(128, return_state=True, name="encoder")(x)
    y = keras.layers.Embedding(1000, 64, name="target_embedding")(tgt)
    y = keras.layers.LSTM(128, return_sequences=True, name="decoder")(y, initial_state=[h, c])
    model = keras.Model([src, tgt], keras.layers.Dense(1000, name="logits")(y))
    rng = np.random.default_rng(0)  # trained weights stand-in: random, biases included
    for layer in model.layers:
        layer.set_weights([(0.1 * rng.standard_normal(w.shape)).astype(w.dtype) for w in layer.get_weights()])
    path = Path(folder) / "seq2seq.keras"
    model.save(path)
    return path


if __name__ == "__main__":
    print(main(*sys.argv[1:]))
