"""Keras model files: ``.keras``, ``.weights.h5`` and full-model HDF5 ``.h5`` (Keras 3 and Keras 2).

The layout (``get_weights()`` arrays to torch parameters) is declared in
:mod:`numpyrnn.layouts.keras`. This module reads files with ``zipfile`` and
``h5py`` only (Keras is never imported) into:

* the layers and the graph, from the model config: ``config.json`` of a
  ``.keras`` archive, or the ``model_config`` attribute of a full-model
  ``.h5`` (Sequential order, or the functional ``inbound_nodes``);
* each layer's ``get_weights()`` arrays: ``layers/<group>/cell/vars`` in Keras 3
  files, ``model_weights/<layer>/`` (in ``weight_names`` order) in HDF5 ones.

The stacking rule: two recurrent layers become one multi-layer module only when
the graph proves it: the upper layer's only input is the lower layer's output,
the lower one returns sequences and nothing else reads it, and both have the
same cell, directions and options. Everything else is a separate module, keyed
by its layer name (a ``Bidirectional`` wrapper's name for a wrapped layer, the
bottom layer's name for a stack). Layers that are not recurrent are listed as
not converted.

A ``.weights.h5`` file has no config: it proves neither the graph nor the layer
names (Keras names its groups by class: ``lstm``, ``lstm_1``, ...), nor the
activations. Its recurrent layers are read as separate modules under those
group names, and :attr:`~numpyrnn.formats.ModelFile.notes` say what was
assumed.
"""

from __future__ import annotations

import contextvars
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import safeio
from ..errors import LayoutError
from ..files import _one_line, fail, open_h5, read_npz, read_zip_member, write_npz, zip_names
from ..layouts.keras import KERAS, REFUSES
from . import (
    Format,
    ModelFile,
    check_cell,
    check_nonlinearity,
    entry_from,
    keras2,
    module_class,
    option,
    register,
    try_entry,
)

__all__ = ["read", "read_keras", "keras_arrays", "write", "LAYOUT", "KerasLayer", "stacks"]

LAYOUT = KERAS

#: Keras recurrent layer classes -> numpyrnn cell (Keras 2's cuDNN layers included).
RECURRENT = {"GRU": "gru", "LSTM": "lstm", "SimpleRNN": "rnn", "CuDNNGRU": "gru", "CuDNNLSTM": "lstm"}

#: Model classes whose layers hold a nested model (read separately, not converted here).
MODELS = {"Functional", "Sequential", "Model"}

_NPZ_KEY = re.compile(r"^layer_(\d+)_(\d+)$")


@dataclass
class KerasLayer:
    """One layer of a model config, with the graph facts the stacking rule needs."""

    name: str
    class_name: str
    config: dict
    group: str = ""                                   # its HDF5 group (Keras 3 files)
    calls: list[list[tuple[str, int, int]]] = field(default_factory=list)  # per call: every input tensor
    consumers: set = field(default_factory=set)        # layers reading its output
    is_output: bool = False

    @property
    def inner(self) -> dict:
        """The wrapped layer's entry for a Bidirectional, else this layer's."""
        if self.class_name == "Bidirectional":
            return dict(self.config.get("layer", {}))
        return {"class_name": self.class_name, "config": self.config}

    @property
    def cell(self) -> str | None:
        return RECURRENT.get(str(self.inner.get("class_name")))

    @property
    def recurrent(self) -> bool:
        return self.cell is not None or self.class_name in ("Bidirectional", "RNN")


# --------------------------------------------------------------------------------------
# the graph, from the model config
# --------------------------------------------------------------------------------------

def _tensors(node: Any) -> list[tuple[str, int, int]]:
    """Every ``keras_history`` reference inside one call's args/kwargs (Keras 3), or a Keras 2 node list."""
    out: list[tuple[str, int, int]] = []
    if isinstance(node, dict):
        if node.get("class_name") == "__keras_tensor__":
            h = node.get("config", {}).get("keras_history", [])
            if len(h) >= 3:
                out.append((str(h[0]), int(h[1]), int(h[2])))
            return out
        for v in node.values():
            out.extend(_tensors(v))
    elif isinstance(node, list):
        if len(node) >= 3 and isinstance(node[0], str) and isinstance(node[1], int) and isinstance(node[2], int):
            out.append((node[0], node[1], node[2]))  # Keras 2: [layer, node, tensor, kwargs]
            if len(node) > 3:
                out.extend(_tensors(node[3]))
        else:
            for v in node:
                out.extend(_tensors(v))
    return out


def group_names(entries: list[dict]) -> list[str]:
    """The HDF5 group of each layer in a Keras 3 file: Keras names them by class, not by layer name.

    ``keras.saving`` stores layer ``k`` of ``model.layers`` under the snake-case
    class name, numbered from the second of a class on (``gru``, ``gru_1``, ...).
    """
    used: dict[str, int] = {}
    out = []
    for e in entries:
        name = str(e.get("class_name", ""))
        name = re.sub(r"\W+", "", name)
        name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
        name = re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        out.append(name)
    return out


def graph(config: dict) -> list[KerasLayer]:
    """The layers of a model config, each with its inputs, consumers and output flag."""
    cls = config.get("class_name")
    body = config.get("config", {})
    if isinstance(body, list):  # very old Sequential configs: the layer list itself
        body = {"layers": body}
    entries = [e for e in body.get("layers", []) if isinstance(e, dict)]
    groups = group_names(entries)
    layers = []
    for e, g in zip(entries, groups):
        cfg = dict(e.get("config", {}))
        name = str(e.get("name") or cfg.get("name") or g)
        layers.append(KerasLayer(name, str(e.get("class_name")), cfg, g))
    if cls == "Sequential":
        previous: str | None = None
        for layer in layers:
            if previous is not None:
                layer.calls = [[(previous, 0, 0)]]
            elif layer.class_name != "InputLayer":
                layer.calls = [[("input", 0, 0)]]
            previous = layer.name
        if layers:
            layers[-1].is_output = True
    else:
        for layer, e in zip(layers, entries):
            layer.calls = [_tensors(node) for node in e.get("inbound_nodes", [])]
        outputs = body.get("output_layers", [])
        if outputs and isinstance(outputs[0], str):
            outputs = [outputs]
        out_names = {str(o[0]) for o in outputs if isinstance(o, list) and o}
        for layer in layers:
            layer.is_output = layer.name in out_names
    by_name = {layer.name: layer for layer in layers}
    for layer in layers:
        for call in layer.calls:
            for src, _, _ in call:
                if src in by_name:
                    by_name[src].consumers.add(layer.name)
    return layers


def _signature(layer: KerasLayer) -> tuple:
    """What two stacked layers must share: wrapper, cell, units and every option that changes the computation."""
    inner = layer.inner.get("config", {})
    keys = ("units", "activation", "recurrent_activation", "use_bias", "reset_after", "go_backwards",
            "time_major", "unit_forget_bias")
    merge = layer.config.get("merge_mode", "concat") if layer.class_name == "Bidirectional" else None
    return (layer.class_name, layer.cell, merge, tuple(json.dumps(inner.get(k), sort_keys=True) for k in keys))


def stacks(layers: list[KerasLayer]) -> list[list[KerasLayer]]:
    """The recurrent layers, grouped into the stacks the graph proves, bottom first, in config order."""
    by_name = {layer.name: layer for layer in layers}
    groups: list[list[KerasLayer]] = []
    owner: dict[str, list[KerasLayer]] = {}
    for layer in layers:
        if not layer.recurrent:
            continue
        below = None
        if len(layer.calls) == 1 and len(layer.calls[0]) == 1:
            src, node, tensor = layer.calls[0][0]
            cand = by_name.get(src)
            if (cand is not None and cand.name in owner and owner[cand.name][-1] is cand and node == 0
                    and tensor == 0 and len(cand.calls) == 1 and cand.consumers == {layer.name}
                    and not cand.is_output and cand.inner.get("config", {}).get("return_sequences")
                    and _signature(cand) == _signature(layer) and _stackable(cand) and _stackable(layer)):
                below = cand
        if below is not None:
            owner[below.name].append(layer)
            owner[layer.name] = owner[below.name]
        else:
            groups.append([layer])
            owner[layer.name] = groups[-1]
    return groups


def _stackable(layer: KerasLayer) -> bool:
    """Whether a layer may be part of a torch stack: it reads forwards and concatenates its directions.

    (A ``go_backwards`` layer hands the next one its output in reversed time
    order; a summed or multiplied ``Bidirectional`` hands it ``units`` features,
    not ``2*units``.) Such layers are modules of their own.
    """
    if layer.class_name == "Bidirectional":
        return layer.config.get("merge_mode", "concat") == "concat"
    return not layer.inner.get("config", {}).get("go_backwards")


def _act_name(value: Any) -> str:
    """An activation as a config records it: a name, or a serialised function (``{"config": "tanh"}``)."""
    if isinstance(value, dict):
        cfg = value.get("config")
        return str(cfg if isinstance(cfg, str) else (cfg or {}).get("name") or value.get("class_name"))
    return str(value)


def check_layer(layer: KerasLayer, notes: dict | None = None, *, top: str = "source", package: str = "keras") -> str:
    """Refuse settings that ``torch.nn`` computes differently; return the activation.

    With ``notes`` (a dict), what a :mod:`numpyrnn.variants` module computes is
    recorded there (``{layer path: {key: value}}``, as
    :func:`numpyrnn.variants.loading.load` takes it) instead of refused; ``top``
    is the path of this layer in its module, ``package`` the Keras that wrote the
    file (``"keras"`` or ``"tf_keras"``: their ``hard_sigmoid`` differ).

    Raises:
        LayoutError: naming the layer and the setting.
    """
    name = layer.name
    if layer.class_name == "Bidirectional":
        mode = layer.config.get("merge_mode", "concat")
        if mode != "concat" and notes is not None:
            notes.setdefault(top, {})["merge_mode"] = mode
        elif mode != "concat":
            raise LayoutError(f"layer {name!r}: Bidirectional merge_mode={mode!r}; torch concatenates "
                              f"[forward, backward], so only merge_mode='concat' converts")
    cls = layer.inner.get("class_name")
    cfg = layer.inner.get("config", {})
    if not isinstance(cfg, dict):
        raise LayoutError(f"layer {name!r}: its config is a {type(cfg).__name__}, expected an object")
    if layer.class_name == "Bidirectional" and cfg.get("go_backwards"):
        raise LayoutError(f"layer {name!r}: the forward layer of the Bidirectional wrapper has go_backwards=True; "
                          f"torch's forward direction reads the sequence in order")
    if layer.class_name == "Bidirectional" and layer.config.get("backward_layer") is not None:
        _check_backward(layer, cls, cfg, notes, package)
    if layer.cell is None:
        what = f"a keras.layers.{cls}" + (f" over {cfg.get('cell', {}).get('class_name')}" if cls == "RNN" else "")
        raise LayoutError(f"layer {name!r}: {what} is not read; numpyrnn converts GRU, LSTM and SimpleRNN layers "
                          f"(and Keras 2's CuDNNGRU and CuDNNLSTM) and Bidirectional wrappers of them")
    return _check_settings(name, cls, cfg, layer.class_name == "Bidirectional", notes, top, package)


def _check_settings(name: str, cls: Any, cfg: dict, wrapped: bool, notes: dict | None = None, top: str = "source",
                    package: str = "keras") -> str:
    """Refuse one recurrent layer's settings that ``torch.nn`` computes differently; return the activation.

    With ``notes``, what a variant module computes is noted instead (see :func:`check_layer`).
    """
    from ..variants.loading import KerasName

    act = _act_name(cfg.get("activation", "tanh"))
    rec = _act_name(cfg.get("recurrent_activation", "sigmoid"))
    every = notes.setdefault("*", {}) if notes is not None else None
    if cls in keras2.CUDNN_LAYERS:
        keras2.check_config(cls, cfg, where=f"layer {name!r}")  # cuDNN computes tanh and the logistic sigmoid
    elif cls == "SimpleRNN":
        if act not in ("tanh", "relu"):
            raise LayoutError(f"layer {name!r}: activation={act!r}; nn.RNN supports 'tanh' and 'relu' only")
    elif act != "tanh" and every is not None:
        every["activation"] = KerasName(act, package)
    elif act != "tanh":
        raise LayoutError(f"layer {name!r}: activation={act!r}; nn.{cls} uses tanh")
    if cls in ("GRU", "LSTM") and rec != "sigmoid" and every is not None:
        every["recurrent_activation"] = KerasName(rec, package)
    elif cls in ("GRU", "LSTM") and rec != "sigmoid":
        why = (keras2.REFUSES["hard_sigmoid"] if rec == "hard_sigmoid" and package == "tf_keras" else
               "old Keras defaulted to 'hard_sigmoid', which torch cannot compute")
        raise LayoutError(f"layer {name!r}: recurrent_activation={rec!r}; nn.{cls} uses sigmoid ({why})")
    if cls == "GRU" and cfg.get("reset_after", True) is False and every is not None:
        every["reset_after"] = False
    elif cls == "GRU" and cfg.get("reset_after", True) is False:
        raise LayoutError(f"layer {name!r}: reset_after=False: {REFUSES['reset_after=False']}")
    if cfg.get("go_backwards") and not wrapped and notes is not None:
        notes.setdefault(top, {})["go_backwards"] = True
    elif cfg.get("go_backwards") and not wrapped:
        raise LayoutError(f"layer {name!r}: go_backwards=True returns a time-reversed sequence, which a torch "
                          f"module does not; flip the input yourself, or wrap the layer in Bidirectional")
    if cfg.get("time_major"):
        raise LayoutError(f"layer {name!r}: time_major=True: {REFUSES['time_major']}")
    return str(act)


#: Settings of a Keras recurrent layer that torch shares between the two
#: directions of a bidirectional module, with Keras' defaults.
SHARED = {"units": None, "use_bias": True, "activation": "tanh", "recurrent_activation": "sigmoid",
          "reset_after": True}


def _check_backward(layer: KerasLayer, cls: Any, cfg: dict, notes: dict | None = None,
                    package: str = "keras") -> None:
    """A ``Bidirectional(backward_layer=...)``: checked as the forward layer is, and agreeing with it."""
    name = layer.name
    back = layer.config["backward_layer"]
    if not isinstance(back, dict) or not isinstance(back.get("config", {}), dict):
        raise LayoutError(f"layer {name!r}: backward_layer is a {type(back).__name__}, expected a layer config")
    back_cfg = back.get("config", {})
    where = f"{name}.backward_layer"
    _check_settings(where, back.get("class_name"), back_cfg, True, notes, package=package)
    if not back_cfg.get("go_backwards"):
        raise LayoutError(f"layer {where!r}: go_backwards=False; the backward layer of a Bidirectional wrapper "
                          f"must read backwards, or it is not a torch bidirectional module")
    if back.get("class_name") != cls:
        raise LayoutError(f"layer {name!r}: the forward layer is a {cls}, the backward layer a "
                          f"{back.get('class_name')}; a torch bidirectional module has one cell")
    for key, default in SHARED.items():
        a, b = cfg.get(key, default), back_cfg.get(key, default)
        if a != b:
            raise LayoutError(f"layer {name!r}: backward_layer has {key}={b!r}, the forward layer {key}={a!r}; "
                              f"a torch bidirectional module has the same {key} in both directions")


# --------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------

def _checked(path: Path, ds: Any, where: str, size: int) -> np.ndarray:
    """A dataset's values in its own dtype (its storage, links and sizes were checked when the file was opened)."""
    if ds.dtype.kind != "f":
        raise fail(path, f"{where}: dtype {ds.dtype} cannot hold weights")
    return np.asarray(ds[()])


def _vars(path: Path, group: Any, where: str, size: int) -> list[np.ndarray]:
    vars_ = group.get("cell/vars")
    if vars_ is None:
        raise fail(path, f"{where}: no cell/vars group; not a Keras 3 recurrent layer")
    return [_checked(path, vars_[j], f"{where}/cell/vars/{j}", size) for j in sorted(vars_.keys(), key=int)]


def _is_rnn_group(g: Any) -> bool:
    return hasattr(g, "keys") and ("cell" in g or ("forward_layer" in g and "backward_layer" in g))


def _k3_weights(path: Path, root: Any, group: str, size: int) -> list[np.ndarray]:
    g = root.get(group)
    if g is None:
        raise fail(path, f"no weights for this layer (group layers/{group}) in the weights file")
    if "forward_layer" in g:
        return (_vars(path, g["forward_layer"], f"layers/{group}/forward_layer", size)
                + _vars(path, g["backward_layer"], f"layers/{group}/backward_layer", size))
    return _vars(path, g, f"layers/{group}", size)


def _h5_weights(path: Path, root: Any, name: str, size: int) -> list[np.ndarray]:
    """A layer's ``get_weights()`` from a Keras 2 / legacy HDF5 file (``weight_names`` order)."""
    g = root.get(name)
    if g is None:
        raise fail(path, f"layer {name!r}: no group model_weights/{name}")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in g.attrs.get("weight_names", [])]
    out = []
    for n in names:
        ds = g.get(n)
        if ds is None:
            raise fail(path, f"layer {name!r}: weight {n!r} listed in weight_names is missing")
        out.append(_checked(path, ds, f"model_weights/{name}/{n}", size))
    return out


def _attr_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------

def _load_config(path: Path, text: Any) -> dict:
    """The model config (``config.json`` or the ``model_config`` attribute), within the size and depth limits."""
    raw = text if isinstance(text, bytes) else _attr_text(text).encode()
    lim = safeio.current_limits()
    if len(raw) > lim.config_bytes:
        raise fail(path, f"the model config holds {len(raw)} bytes; numpyrnn reads at most {lim.config_bytes}; "
                         + safeio.how_to_raise("config_bytes"))
    try:
        config = safeio.load_json(raw, "the model config")
    except LayoutError as exc:
        raise fail(path, str(exc)) from None
    if not isinstance(config, dict):
        raise fail(path, f"the model config is a {type(config).__name__}, not a model")
    return config


def read(path: str | os.PathLike, *, cell: str | None = None, nonlinearity: str | None = None,
         dtype: Any = None, batch_first: bool = True, variants: bool = False, **_: Any) -> ModelFile:
    """Every recurrent layer of a Keras file, stacked only where the graph proves it.

    With ``variants=True`` a layer that torch's modules cannot compute
    (``reset_after=False``, other activations, ``go_backwards``, other merge
    modes) becomes a :mod:`numpyrnn.variants` module instead of a problem.

    Raises:
        LayoutError: the file is not a readable Keras file, or holds no recurrent layer.
    """
    path = Path(path)
    if not isinstance(variants, bool):
        raise TypeError(f"variants should be of type bool, got: {type(variants).__name__}")
    try:
        return _read(path, cell, nonlinearity, dtype, batch_first, variants)
    except LayoutError:
        raise
    except (OSError, KeyError, IndexError, ValueError, TypeError, AttributeError, RuntimeError) as exc:
        raise fail(path, f"unexpected structure of the model config or the HDF5 layout "
                         f"({type(exc).__name__}: {_one_line(exc)})") from None


def _read(path: Path, cell: str | None, nonlinearity: str | None, dtype: Any, batch_first: bool,
          variants: bool = False) -> ModelFile:
    suffix = path.suffix.lower()
    mf = ModelFile(path=path, format="keras", modules=[])
    if suffix == ".npz":
        return _read_npz(path, mf, cell, nonlinearity, dtype, batch_first)
    try:
        import h5py  # noqa: F401 - only to say it is missing, before the file is opened
    except ImportError:
        raise fail(path, "reading Keras files needs the h5py package: pip install \"numpyrnn[files]\"") from None
    if suffix == ".keras":
        names = zip_names(path, what=".keras archive")
        if "model.weights.h5" not in names:
            raise fail(path, f"a .keras archive holds model.weights.h5, this one holds {names}")
        config = (_load_config(path, read_zip_member(path, "config.json", cap=safeio.current_limits().config_bytes))
                  if "config.json" in names else None)
        blob = read_zip_member(path, "model.weights.h5")
        with open_h5(blob, name=path.name) as f:
            root = f.get("layers")
            if root is None:
                raise fail(path, "no 'layers' group in model.weights.h5: not a Keras 3 model")
            if config is None:
                _no_config(path, mf, root, len(blob), cell, nonlinearity, dtype, batch_first, variants=variants)
            else:
                _from_config(path, mf, config, lambda layer: _k3_weights(path, root, layer.group, len(blob)),
                             cell, nonlinearity, dtype, batch_first, variants=variants)
        return _done(path, mf)
    size = safeio.regular_file(path).st_size
    with open_h5(path) as f:
        if "model_config" in f.attrs and "model_weights" in f:
            config = _load_config(path, f.attrs["model_config"])
            root = f["model_weights"]
            _from_config(path, mf, config, lambda layer: _h5_weights(path, root, layer.name, size),
                         cell, nonlinearity, dtype, batch_first, variants=variants, package=_package(f, root))
            if "keras_version" in root.attrs:
                mf.notes.append(f"full-model HDF5 written by Keras {_attr_text(root.attrs['keras_version'])}")
        elif "layers" in f:
            _no_config(path, mf, f["layers"], size, cell, nonlinearity, dtype, batch_first, variants=variants)
        elif "layer_names" in f.attrs:
            _no_config_h5(path, mf, f, size, cell, nonlinearity, dtype, batch_first, variants=variants)
        else:
            raise fail(path, "no 'layers' group, model_config or layer_names: not a Keras weights or model file")
    return _done(path, mf)


def _done(path: Path, mf: ModelFile) -> ModelFile:
    if not mf.modules and not mf.problems:
        raise fail(path, "holds no GRU, LSTM, SimpleRNN or Bidirectional layer"
                   + (f" (layers: {', '.join(n for n, _ in mf.skipped)})" if mf.skipped else ""))
    return mf


def _package(f: Any, root: Any) -> str:
    """The Keras that wrote a full-model HDF5 file: ``"tf_keras"`` for Keras 2, else ``"keras"`` (Keras 3)."""
    for attrs in (f.attrs, root.attrs):
        if "keras_version" in attrs:
            return "tf_keras" if _attr_text(attrs["keras_version"]).startswith(("1.", "2.")) else "keras"
    return "keras"


def _from_config(path: Path, mf: ModelFile, config: dict, weights: Any, cell: str | None,
                 nonlinearity: str | None, dtype: Any, batch_first: bool, *, variants: bool = False,
                 package: str = "keras") -> None:
    layers = graph(config)
    for layer in layers:
        if layer.class_name in MODELS:
            mf.skipped.append((layer.name, f"nested {layer.class_name} model"))
            mf.problems.append(f"layer {layer.name!r}: a nested {layer.class_name} model; its layers are not "
                               f"read: save the inner model to a file of its own and convert that")
        elif not layer.recurrent and layer.class_name != "InputLayer":
            mf.skipped.append((layer.name, layer.class_name))
    for group in stacks(layers):
        _add(path, mf, group, weights, cell, nonlinearity, dtype, batch_first, variants=variants, package=package)
    for layer in layers:
        if not layer.recurrent:
            continue
        if len(layer.calls) > 1:
            mf.notes.append(f"layer {layer.name!r} is called {len(layer.calls)} times in the model (shared "
                            f"weights); its module is one, run it on each input")
        for call in layer.calls[:1]:
            states = sorted({src for src, _, _ in call[1:]})
            if states:
                mf.notes.append(f"layer {layer.name!r} starts from the state of {', '.join(map(repr, states))} "
                                f"(initial_state): pass that state to its module, e.g. module(x, (h, c)) for an "
                                f"LSTM; alone it starts from zeros")


def _add(path: Path, mf: ModelFile, group: list[KerasLayer], weights: Any, cell: str | None,
         nonlinearity: str | None, dtype: Any, batch_first: bool, *, variants: bool = False,
         package: str = "keras") -> None:
    name = group[0].name
    top = "source" if len(group) == 1 else f"source[{len(group) - 1}]"
    notes: dict[str, dict[str, Any]] | None = {} if variants else None
    try:
        acts = {check_layer(layer, notes, top=top, package=package) for layer in group}
    except LayoutError as exc:
        mf.problems.append(str(exc) + _variant_hint(group, top, package))
        return
    recorded = group[0].cell or ""
    check_cell(path, recorded, cell, f"layer {name!r}")
    nl = {}
    if recorded == "rnn":
        nl = {"nonlinearity": check_nonlinearity(path, acts.pop(), nonlinearity, f"layer {name!r}")}
    try:
        arrays = [weights(layer) for layer in group]
    except LayoutError as exc:
        mf.problems.append(f"layer {name!r}: {exc}")
        return
    _collect(arrays)
    cls = module_class(recorded)
    source = arrays[0] if len(arrays) == 1 else arrays
    kind = str(arrays[0][0].dtype) if arrays[0] else None
    more: dict[str, Any] = {"layers": [layer.name for layer in group]} if len(group) > 1 else {}
    cudnn = group[0].inner.get("class_name")
    if cudnn in keras2.CUDNN_LAYERS:
        def make_cudnn(variants: bool = False, **opts: Any) -> Any:
            return keras2.build_cudnn(str(cudnn), source, where=f"{path.name}: layer {name!r}", **opts)

        try_entry(mf, name, make_cudnn, batch_first=batch_first, dtype=dtype or kind, **more)
        return

    def make(variants: bool = False, **opts: Any) -> Any:
        if not variants or recorded == "rnn":
            return cls.from_keras(source, **nl, **opts)
        from ..variants import loading

        def plain() -> Any:
            return cls.from_keras(source, **nl, **opts)

        kw = {"batch_first": True, "dropout": 0.0, "device": None, "dtype": None, "freeze": False, **opts}
        return loading.load("keras", source, mode=cls._mode, options={}, fallback=plain, notes=notes,
                            caller=f"{path.name}: layer {name!r}", **kw)

    try_entry(mf, name, make, variants=variants, batch_first=batch_first, dtype=dtype or kind, arrays=source, **more)


def _variant_hint(group: list[KerasLayer], top: str, package: str) -> str:
    """For a refused layer: what ``variants=True`` would build, when a variant module computes it."""
    notes: dict[str, dict[str, Any]] = {}
    try:
        for layer in group:
            check_layer(layer, notes, top=top, package=package)
    except LayoutError:
        return ""
    if not any(notes.values()) or group[0].cell not in ("gru", "lstm"):
        return ""
    every = notes.get("*", {})
    if group[0].cell == "gru":
        what = "ResetBeforeGRU" if every.get("reset_after") is False else "ResetAfterGRU"
    else:
        what = "PeepholeLSTM"
    if any(k in n for n in notes.values() for k in ("merge_mode", "go_backwards")):
        what = f"Directions({what})"
    return f"; {option('variants', True)} builds {what} (numpyrnn.variants), which computes it"


def _cudnn_by_shapes(weights: list[np.ndarray]) -> str | None:
    """``"CuDNNLSTM"``/``"CuDNNGRU"`` when every direction's bias is the flat ``(2*G*units,)`` of a Keras 2 cuDNN layer."""
    if len(weights) not in (3, 6) or weights[1].ndim != 2 or not weights[1].shape[0]:
        return None
    H, cols = (int(n) for n in weights[1].shape)
    G = cols // H
    name = {4: "CuDNNLSTM", 3: "CuDNNGRU"}.get(G)
    biases = weights[2::3]
    if name is None or cols % H or not all(b.shape == (2 * G * H,) for b in biases):
        return None
    return name


def _cell_from_shapes(weights: list[np.ndarray]) -> str | None:
    if len(weights) < 2 or weights[1].ndim != 2 or not weights[1].shape[0]:
        return None
    rows, cols = (int(n) for n in weights[1].shape)
    return {1: "rnn", 3: "gru", 4: "lstm"}.get(cols // rows) if cols % rows == 0 else None


_NO_CONFIG = ("no model config: the file records neither the layer names (these are its weight groups, which "
              "Keras names by class: lstm, lstm_1, ...), nor the graph (so no layers are stacked, and the order "
              "between layers of different classes is not known), nor the activations (Keras's defaults, tanh "
              "and sigmoid, are assumed{rnn}); the cell and sizes are read from the shapes. The model's .keras "
              "file proves all of these")


def _no_config_entry(path: Path, mf: ModelFile, name: str, ws: list[np.ndarray], cell: str | None,
                     nonlinearity: str | None, dtype: Any, batch_first: bool, *, variants: bool = False) -> None:
    found = _cell_from_shapes(ws)
    if found is None:
        mf.problems.append(f"layer {name!r}: the shapes {[tuple(w.shape) for w in ws]} are not those of a "
                           f"GRU, LSTM or SimpleRNN")
        return
    _collect([ws])
    check_cell(path, found, cell, f"weight group {name!r} (by its shapes)")
    cudnn = _cudnn_by_shapes(ws)
    if cudnn is not None:
        mf.notes.append(f"layer {name!r}: its flat bias of {ws[2].shape[0]} values (input half, then recurrent "
                        f"half) is a Keras 2 {cudnn}'s")

        def make_cudnn(**opts: Any) -> Any:
            return keras2.build_cudnn(cudnn, ws, where=f"{path.name}: layer {name!r}", **opts)

        try_entry(mf, name, make_cudnn, batch_first=batch_first, dtype=dtype or str(ws[0].dtype))
        return
    cls = module_class(found)
    nl = {"nonlinearity": nonlinearity} if found == "rnn" and nonlinearity else {}

    def make(**opts: Any) -> Any:  # without a config only the bias shape tells a variant (reset_after=False)
        return cls.from_keras(ws, **nl, **opts)

    try_entry(mf, name, make, variants=variants, batch_first=batch_first, dtype=dtype or str(ws[0].dtype),
              arrays=ws)


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _no_config(path: Path, mf: ModelFile, root: Any, size: int, cell: str | None, nonlinearity: str | None,
               dtype: Any, batch_first: bool, *, variants: bool = False) -> None:
    names = sorted(root.keys(), key=_natural)
    rnn = False
    for n in names:
        g = root[n]
        if not _is_rnn_group(g):
            if hasattr(g, "keys") and "vars" in g and len(g["vars"]):
                mf.skipped.append((n, "layer with weights (not recurrent)"))
            continue
        try:
            ws = _k3_weights(path, root, n, size)
        except LayoutError as exc:
            mf.problems.append(f"layer {n!r}: {exc}")
            continue
        rnn = rnn or _cell_from_shapes(ws) == "rnn"
        _no_config_entry(path, mf, n, ws, cell, nonlinearity, dtype, batch_first, variants=variants)
    mf.notes.append(_NO_CONFIG.format(rnn=f", SimpleRNN tanh unless {option('nonlinearity', 'relu')}" if rnn else ""))


def _no_config_h5(path: Path, mf: ModelFile, f: Any, size: int, cell: str | None, nonlinearity: str | None,
                  dtype: Any, batch_first: bool, *, variants: bool = False) -> None:
    """A Keras 2 ``save_weights("w.h5")`` file: layer names and order are recorded, the graph is not."""
    rnn = False
    for raw in f.attrs["layer_names"]:
        n = _attr_text(raw)
        ws = _h5_weights(path, f, n, size)
        if not ws:
            continue
        if len(ws) not in (2, 3, 4, 6) or _cell_from_shapes(ws) is None:
            mf.skipped.append((n, "layer with weights (not recurrent)"))
            continue
        rnn = rnn or _cell_from_shapes(ws) == "rnn"
        _no_config_entry(path, mf, n, ws, cell, nonlinearity, dtype, batch_first, variants=variants)
    mf.notes.append("no model config: the layer names and order are recorded, but not the graph (so no layers "
                    "are stacked) nor the activations (Keras's defaults, tanh and sigmoid, are assumed"
                    + (f", SimpleRNN tanh unless {option('nonlinearity', 'relu')}" if rnn else "") + ")")


def _read_npz(path: Path, mf: ModelFile, cell: str | None, nonlinearity: str | None, dtype: Any,
              batch_first: bool) -> ModelFile:
    """``numpyrnn export --to keras`` output: ``layer_{k}_{j}`` is layer ``k``'s ``get_weights()[j]`` of one stack."""
    arrays = read_npz(path)
    table: dict[int, dict[int, np.ndarray]] = {}
    for key, arr in arrays.items():
        m = _NPZ_KEY.match(key)
        if not m:
            raise fail(path, f"unexpected key {key!r}; a Keras .npz holds layer_<k>_<j> = layer k's get_weights()[j]")
        table.setdefault(int(m.group(1)), {})[int(m.group(2))] = arr
    if not table or sorted(table) != list(range(len(table))):
        raise fail(path, f"layer numbers must run 0..N-1, got {sorted(table)}")
    layers = [[t[j] for j in sorted(t)] for _, t in sorted(table.items())]
    _collect(layers)
    found = _cell_from_shapes(layers[0])
    if found is None:
        raise fail(path, "layer_0_1 (recurrent_kernel) is not (units, G*units) for G = 1, 3 or 4")
    check_cell(path, found, cell, "layer_0 (by its shapes)")
    cls = module_class(found)
    nl = {"nonlinearity": nonlinearity} if found == "rnn" and nonlinearity else {}
    name = path.stem

    def make(**opts: Any) -> Any:
        return cls.from_keras(layers if len(layers) > 1 else layers[0], **nl, **opts)

    mf.modules.append(entry_from(name, make, batch_first=batch_first, dtype=dtype or str(layers[0][0].dtype),
                                 arrays=layers if len(layers) > 1 else layers[0]))
    return mf


# --------------------------------------------------------------------------------------
# the earlier reader's shape, and the writer
# --------------------------------------------------------------------------------------

def read_keras(path: str | os.PathLike) -> tuple[list[list[np.ndarray]], dict]:
    """The recurrent layers' ``get_weights()`` lists, bottom first, and ``{"names", "activation"}``.

    A lower-level view of :func:`read` for files whose recurrent layers are all
    separate or one stack: the arrays as stored, without building modules.

    Raises:
        LayoutError: as :func:`read`, and for a file with problems.
    """
    read_arrays: list[list[np.ndarray]] = []
    token = _COLLECTED.set(read_arrays)
    try:
        mf = read(path)
    finally:
        _COLLECTED.reset(token)
    if mf.problems:
        raise fail(path, mf.problems[0])
    names: list[str] = []
    acts = set()
    for e in mf.modules:
        names.extend(e.config.get("layers", [e.name]))
        acts.add(e.config["nonlinearity"])
    return read_arrays, {"names": names, "activation": acts.pop() if len(acts) == 1 else None}


#: Where :func:`read_keras` collects the arrays as read (each in its dataset's own dtype).
_COLLECTED: contextvars.ContextVar[list | None] = contextvars.ContextVar("numpyrnn_keras_arrays", default=None)


def _collect(layers: list[list[np.ndarray]]) -> None:
    bucket = _COLLECTED.get()
    if bucket is not None:
        bucket.extend(layers)


def keras_arrays(layers: list) -> dict[str, np.ndarray]:
    """``to_keras()``'s lists as flat ``.npz`` keys: ``layer_{k}_{j}`` is ``layers[k][j]``."""
    return {f"layer_{k}_{j}": np.asarray(a) for k, ws in enumerate(layers) for j, a in enumerate(ws)}


def write(path: str | os.PathLike, module: Any) -> int:
    """A module's ``get_weights()`` lists as a ``layer_{k}_{j}`` ``.npz``; returns the bytes written."""
    return write_npz(path, keras_arrays(module.to_keras()))


def _sniff(path: Path) -> bool:
    name = path.name.lower()
    if not path.is_file():
        return False
    if name.endswith((".keras", ".h5", ".hdf5")):
        return True
    if name.endswith(".npz"):
        try:
            keys = [n[:-4] for n in zip_names(path) if n.endswith(".npy")]
        except LayoutError:
            return False
        return bool(keys) and all(_NPZ_KEY.match(k) for k in keys)
    return False


register(Format("keras", (".keras", ".weights.h5", ".h5"), _sniff, read,
                "Keras models: .keras, .weights.h5, full-model .h5 (Keras 3 and Keras 2)"))
