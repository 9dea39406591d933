"""Write the TensorFlow checkpoint fixtures under ``tests/data/tf_checkpoints/`` and TensorFlow's own outputs for them.

Run with TensorFlow and tf_keras installed (``pip install numpyrnn[tf-era]``)::

    TF_USE_LEGACY_KERAS=1 python tests/data/make_tf_checkpoints.py [OUT_DIR]

Each case writes ``<case>.ckpt.index`` + ``<case>.ckpt.data-00000-of-00001`` (or a
``tf.train.Checkpoint``'s ``<case>-1.*``), and ``<case>.npz`` with the input ``x``
(time major for TF1 graphs, batch major for Keras) and TensorFlow's outputs:
``y`` for a single module, ``y:<name>`` per module when a checkpoint holds several.
Sizes are tiny on purpose: the files are committed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OUT = Path(__file__).parent / "tf_checkpoints"
T, N, I, H, P = 5, 2, 3, 4, 2
rnn_cell = tf.compat.v1.nn.rnn_cell
v1 = tf.compat.v1


def _x(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def graph_case(name: str, build, *, seed: int, adam: bool = False) -> None:
    """Build a TF1 graph, randomise its variables (biases too), save it and TF's output."""
    x = _x(seed, (T, N, I))
    g = tf.Graph()
    with g.as_default():
        v1.set_random_seed(seed)
        inp = v1.placeholder(tf.float32, (T, N, I))
        outputs = build(inp)
        variables = v1.global_variables()
        rng = np.random.default_rng(seed + 1)
        assigns = [v.assign(rng.uniform(-0.6, 0.6, v.shape.as_list()).astype(np.float32)) for v in variables]
        if adam:
            loss = sum(tf.reduce_sum(o) for o in outputs.values())
            v1.train.AdamOptimizer(0.01).minimize(loss, global_step=v1.train.get_or_create_global_step())
        saver = v1.train.Saver()
        with v1.Session(graph=g) as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(assigns)
            ys = sess.run(outputs, {inp: x})
            saver.save(sess, str(OUT / f"{name}.ckpt"), write_meta_graph=False, write_state=False)
    np.savez(OUT / f"{name}.npz", x=x, **{("y" if k == "" else f"y:{k}"): v for k, v in ys.items()})


def lstm_stack(inp):
    cell = rnn_cell.MultiRNNCell([rnn_cell.LSTMCell(H) for _ in range(2)])
    y, _ = v1.nn.dynamic_rnn(cell, inp, time_major=True, dtype=tf.float32)
    return {"": y}


def lstm_proj(inp):
    y, _ = v1.nn.dynamic_rnn(rnn_cell.LSTMCell(H, num_proj=P), inp, time_major=True, dtype=tf.float32)
    return {"": y}


def basic(inp):
    with v1.variable_scope("encoder"):
        y1, _ = v1.nn.dynamic_rnn(rnn_cell.BasicLSTMCell(H), inp, time_major=True, dtype=tf.float32)
    with v1.variable_scope("decoder"):
        y2, _ = v1.nn.dynamic_rnn(rnn_cell.BasicRNNCell(H), inp, time_major=True, dtype=tf.float32)
    return {"encoder/rnn": y1, "decoder/rnn": y2}


def bidir(inp):
    (fw, bw), _ = v1.nn.bidirectional_dynamic_rnn(rnn_cell.LSTMCell(H), rnn_cell.LSTMCell(H), inp,
                                                  time_major=True, dtype=tf.float32)
    return {"": tf.concat([fw, bw], -1)}


def stack_bidir(inp, cell=lambda: rnn_cell.LSTMCell(H), scope="stack_bidirectional_rnn"):
    # what tf.contrib.rnn.stack_bidirectional_dynamic_rnn did: one bidirectional_rnn per cell_<k>
    y = inp
    with v1.variable_scope(scope):
        for k in range(2):
            with v1.variable_scope(f"cell_{k}"):
                (fw, bw), _ = v1.nn.bidirectional_dynamic_rnn(cell(), cell(), y, time_major=True, dtype=tf.float32)
                y = tf.concat([fw, bw], -1)
    return {"": y}


def independent(inp):
    fw = rnn_cell.MultiRNNCell([rnn_cell.LSTMCell(H) for _ in range(2)])
    bw = rnn_cell.MultiRNNCell([rnn_cell.LSTMCell(H) for _ in range(2)])
    (yf, yb), _ = v1.nn.bidirectional_dynamic_rnn(fw, bw, inp, time_major=True, dtype=tf.float32)
    return {"bidirectional_rnn/fw": yf, "bidirectional_rnn/bw": yb}


def stacked_multi(inp):
    # the names of CudnnLSTM's backward-compatible bidirectional saveable (Magenta's encoders): each layer
    # cell_<k> is a bidirectional_rnn over one-cell MultiRNNCells
    y = inp
    with v1.variable_scope("encoder"):
        for k in range(2):
            with v1.variable_scope(f"cell_{k}"):
                fw = rnn_cell.MultiRNNCell([rnn_cell.LSTMCell(H)])
                bw = rnn_cell.MultiRNNCell([rnn_cell.LSTMCell(H)])
                (yf, yb), _ = v1.nn.bidirectional_dynamic_rnn(fw, bw, y, time_major=True, dtype=tf.float32)
                y = tf.concat([yf, yb], -1)
    return {"": y}


def block_cell(inp):
    # LSTMBlockCell's variables (scope lstm_cell: kernel [I+H, 4H], bias [4H]) run by its kernel op
    with v1.variable_scope("rnn/lstm_cell"):
        w = v1.get_variable("kernel", (I + H, 4 * H))
        b = v1.get_variable("bias", (4 * H,))
    h = c = tf.zeros((N, H))
    ys = []
    zeros = tf.zeros((H,))
    for t in range(T):
        _, c, _, _, _, _, h = tf.raw_ops.LSTMBlockCell(x=inp[t], cs_prev=c, h_prev=h, w=w, wci=zeros, wcf=zeros,
                                                       wco=zeros, b=b, forget_bias=1.0, cell_clip=-1.0,
                                                       use_peephole=False)
        ys.append(h)
    return {"": tf.stack(ys)}


def cudnn_lstm(inp):
    # CudnnLSTM saves canonical weights under these names; CudnnCompatibleLSTMCell is LSTMCell(forget_bias=0)
    with v1.variable_scope("cudnn_lstm"):
        cell = rnn_cell.MultiRNNCell([rnn_cell.LSTMCell(H, forget_bias=0.0, name="cudnn_compatible_lstm_cell")
                                      for _ in range(2)])
        y, _ = v1.nn.dynamic_rnn(cell, inp, time_major=True, dtype=tf.float32)
    return {"": y}


def cudnn_lstm_bidir(inp):
    with v1.variable_scope("cudnn_lstm"):
        return stack_bidir(inp, lambda: rnn_cell.LSTMCell(H, forget_bias=0.0, name="cudnn_compatible_lstm_cell"))


class CudnnCompatibleGRUCell(rnn_cell.RNNCell):
    """The cell tf.contrib.cudnn_rnn.CudnnCompatibleGRUCell was, under its variable names (contrib is gone)."""

    def __init__(self, units, name="cudnn_compatible_gru_cell"):
        super().__init__(name=name)
        self.units = units

    @property
    def state_size(self):
        return self.units

    @property
    def output_size(self):
        return self.units

    def build(self, shape):
        i = int(shape[-1])
        self.gk = self.add_weight("gates/kernel", (i + self.units, 2 * self.units))
        self.gb = self.add_weight("gates/bias", (2 * self.units,))
        self.ik = self.add_weight("candidate/input_projection/kernel", (i, self.units))
        self.ib = self.add_weight("candidate/input_projection/bias", (self.units,))
        self.hk = self.add_weight("candidate/hidden_projection/kernel", (self.units, self.units))
        self.hb = self.add_weight("candidate/hidden_projection/bias", (self.units,))
        self.built = True

    def call(self, x, h):
        r, u = tf.split(tf.sigmoid(tf.matmul(tf.concat([x, h], 1), self.gk) + self.gb), 2, axis=1)
        c = tf.tanh(tf.matmul(x, self.ik) + self.ib + r * (tf.matmul(h, self.hk) + self.hb))
        new = u * h + (1 - u) * c
        return new, new


def cudnn_gru(inp):
    with v1.variable_scope("cudnn_gru"):
        cell = rnn_cell.MultiRNNCell([CudnnCompatibleGRUCell(H) for _ in range(2)])
        y, _ = v1.nn.dynamic_rnn(cell, inp, time_major=True, dtype=tf.float32)
    return {"": y}


def gru_cell(inp):
    y, _ = v1.nn.dynamic_rnn(rnn_cell.GRUCell(H), inp, time_major=True, dtype=tf.float32)
    return {"": y}


def peephole(inp):
    y, _ = v1.nn.dynamic_rnn(rnn_cell.LSTMCell(H, use_peepholes=True), inp, time_major=True, dtype=tf.float32)
    return {"": y}


def keras_cases() -> None:
    import tf_keras as keras

    rng = np.random.default_rng(7)
    x = _x(8, (N, T, I))
    inp = keras.Input((T, I))
    a = keras.layers.LSTM(H, return_sequences=True, name="lstm")(inp)
    b = keras.layers.Bidirectional(keras.layers.GRU(H, return_sequences=True, reset_after=True), name="bidi")(a)
    c = keras.layers.SimpleRNN(H, return_sequences=True, name="simple")(b)
    model = keras.Model(inp, [a, b, c])
    for w in model.weights:
        w.assign(rng.uniform(-0.6, 0.6, w.shape).astype(np.float32))
    ya, yb, yc = (np.asarray(v) for v in model(x))
    ys = {"y:lstm": ya, "y:bidi": yb, "y:simple": yc}
    # model.save_weights in the TensorFlow format: names layer_with_weights-K/...
    model.save_weights(str(OUT / "keras_weights.ckpt"))
    for extra in ("checkpoint",):
        (OUT / extra).unlink(missing_ok=True)
    np.savez(OUT / "keras_weights.npz", x=x, **ys)
    # tf.train.Checkpoint(model=...): names model/layer_with_weights-K/...
    tf.train.Checkpoint(model=model).write(str(OUT / "keras_object.ckpt"))
    np.savez(OUT / "keras_object.npz", x=x, **ys)
    # a SavedModel: its variables/ folder is a checkpoint of the same object graph (only that folder is kept)
    saved = OUT / "keras_savedmodel"
    model.save(str(saved), save_format="tf")
    for p in sorted(saved.rglob("*"), reverse=True):
        if p.is_file() and p.parent.name != "variables":
            p.unlink()
        elif p.is_dir() and p.name != "variables" and not any(p.iterdir()):
            p.rmdir()
    np.savez(OUT / "keras_savedmodel.npz", x=x, **ys)
    # Keras 2's CuDNNLSTM/CuDNNGRU (gone from tf_keras) as TF2 checkpoints of their weights: a flat double bias
    for name, G, layer in (("cu_dnnlstm", 4, keras.layers.LSTM), ("cu_dnngru", 3, keras.layers.GRU)):
        k = tf.Variable(rng.uniform(-0.6, 0.6, (I, G * H)).astype(np.float32))
        rk = tf.Variable(rng.uniform(-0.6, 0.6, (H, G * H)).astype(np.float32))
        b = tf.Variable(rng.uniform(-0.6, 0.6, (2 * G * H,)).astype(np.float32))
        holder = tf.Module()
        holder.kernel, holder.recurrent_kernel, holder.bias = k, rk, b
        tf.train.Checkpoint(**{name: holder}).write(str(OUT / f"keras_{name}.ckpt"))
        plain = keras.Sequential([keras.Input((T, I)), layer(H, return_sequences=True)])
        bias = b.numpy()
        plain.set_weights([k.numpy(), rk.numpy(), bias[:G * H] + bias[G * H:] if G == 4 else bias.reshape(2, G * H)])
        np.savez(OUT / f"keras_{name}.npz", x=x, **{f"y:{name}": np.asarray(plain(x))})
    # reset_after=False is refused
    g = keras.Sequential([keras.Input((T, I)), keras.layers.GRU(H, reset_after=False)])
    g.save_weights(str(OUT / "keras_gru_v1.ckpt"))
    (OUT / "checkpoint").unlink(missing_ok=True)


def main(out: str | os.PathLike | None = None) -> None:
    global OUT
    if out is not None:
        OUT = Path(out)
    OUT.mkdir(parents=True, exist_ok=True)
    graph_case("lstm_stack", lstm_stack, seed=1, adam=True)
    graph_case("lstm_proj", lstm_proj, seed=2)
    graph_case("basic", basic, seed=3)
    graph_case("bidir", bidir, seed=4)
    graph_case("stack_bidir", stack_bidir, seed=5)
    graph_case("independent", independent, seed=6)
    graph_case("stacked_multi", stacked_multi, seed=15)
    graph_case("block_cell", block_cell, seed=9)
    graph_case("cudnn_lstm", cudnn_lstm, seed=10)
    graph_case("cudnn_lstm_bidir", cudnn_lstm_bidir, seed=11)
    graph_case("cudnn_gru", cudnn_gru, seed=12)
    graph_case("gru_cell", gru_cell, seed=13)
    graph_case("peephole", peephole, seed=14)
    keras_cases()
    print("wrote", OUT)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
