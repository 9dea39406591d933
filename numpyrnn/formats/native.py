"""numpyrnn's own converted files: ``.safetensors`` and ``.pt`` that describe themselves.

``numpyrnn convert`` writes each module's parameters (plain ``state_dict`` keys
for one module, ``<name>.`` prefixes for several) and, next to them, every
module's configuration as JSON-able data::

    {"format": "numpyrnn", "version": 1, "modules": [
        {"name": "encoder", "prefix": "encoder.", "config": {"cell": "lstm", "input_size": 8, ...}}]}

* ``.safetensors``: the JSON text under the metadata key ``"numpyrnn"``;
* ``.pt``: a ``state_dict`` whose ``_metadata[""]["numpyrnn"]`` holds it, so
  ``torch.load(path, weights_only=True)`` reads it and the loaded dict still
  goes straight into ``module.load_state_dict``.

Plain ``state_dict`` files (of one ``nn.GRU``/``LSTM``/``RNN``, without that
record) are read too: the cell then comes from the shapes or from ``cell``.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .. import safeio
from ..errors import LayoutError
from ..files import fail, load_torch, read_safetensors, state_dict_of, write_state_dict
from . import Entry, Format, ModelFile, NeedsOption, check_cell, module_class, option, register, torch_dtype

__all__ = ["read", "write", "META_KEY", "VERSION", "infer_state_spec", "module_from_state_dict"]

#: The metadata key (safetensors) and ``_metadata[""]`` key (.pt) of the record.
META_KEY = "numpyrnn"
VERSION = 1

_CONFIG_KEYS = ("cell", "input_size", "hidden_size", "num_layers", "bidirectional", "bias", "proj_size",
                "batch_first", "nonlinearity", "dtype")


def record(entries: Sequence[tuple[str, str, dict]]) -> dict:
    """The self-description of a converted file: ``(name, prefix, config)`` per module."""
    return {"format": "numpyrnn", "version": VERSION,
            "modules": [{"name": n, "prefix": p, "config": dict(c)} for n, p, c in entries]}


def write(path: str | os.PathLike, modules: Mapping[str, Any], configs: Mapping[str, dict], *,
          deferred: Mapping[Any, Any] | None = None) -> int:
    """Write named modules and their configurations; one module gets plain keys.

    ``deferred``: modules built under :func:`numpyrnn.engine.deferring` (on ``meta``)
    and what was recorded for them; their parameters are made straight into a
    ``.safetensors`` file (see :mod:`numpyrnn.streaming`).

    Returns:
        The number of bytes written.
    """
    path = Path(path)
    single = len(modules) == 1
    state: dict[str, torch.Tensor] = OrderedDict()
    entries = []
    made = []
    for name, module in modules.items():
        prefix = "" if single else f"{name}."
        for k, v in module.state_dict().items():
            state[prefix + k] = v
        entries.append((name, prefix, configs[name]))
        if deferred is not None and module in deferred:
            made.append(_prefixed(prefix, module, deferred[module]))
    rec = record(entries)
    if path.suffix.lower() == ".safetensors":
        return write_state_dict(path, state, metadata={META_KEY: json.dumps(rec, sort_keys=True)},
                                made=itertools.chain.from_iterable(made) if made else None)
    if made:
        raise TypeError(f"{path.name}: modules without values are written to .safetensors files only")
    sd: Any = OrderedDict((k, v.detach().contiguous()) for k, v in state.items())
    sd._metadata = OrderedDict({"": {META_KEY: rec}})
    return write_state_dict(path, sd)


def _prefixed(prefix: str, module: Any, deferred: Any) -> Iterator[tuple[str, memoryview]]:
    from ..streaming import parameter_bytes

    for name, chunk in parameter_bytes(module, deferred):
        yield prefix + name, chunk


def _read_record(path: Path, obj: Any) -> dict | None:
    """The record of a converted file; ``obj`` is what :func:`~numpyrnn.files.load_torch` gave (``.pt``)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open  # present: read_safetensors has read the file

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
            raise fail(path, f"not a readable safetensors file ({str(exc).splitlines()[0] if str(exc) else exc})") from None
        text = meta.get(META_KEY)
        if text is None:
            return None
        rec = safeio.load_json(text.encode(), f"{path.name}: the {META_KEY!r} metadata")
    else:
        meta = getattr(obj, "_metadata", None) or {}
        rec = meta.get("", {}).get(META_KEY) if isinstance(meta, Mapping) else None
        if rec is None:
            return None
    if not isinstance(rec, dict) or rec.get("format") != "numpyrnn" or not isinstance(rec.get("modules"), list):
        raise fail(path, f"the {META_KEY!r} record is not numpyrnn's module list")
    if int(rec.get("version", 0)) > VERSION:
        raise fail(path, f"written by a newer numpyrnn (record version {rec.get('version')}, this one reads "
                         f"{VERSION}): upgrade numpyrnn")
    return rec


def infer_state_spec(sd: dict, mode: str) -> Any:
    """The :class:`~numpyrnn.spec.RNNSpec` a torch ``state_dict`` implies for ``mode``.

    Raises:
        LayoutError: the keys or shapes are not those of one ``nn.GRU``/``LSTM``/``RNN``.
    """
    import re

    from ..spec import TORCH_GATES, RNNSpec

    G = len(TORCH_GATES[mode])
    pat = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?$")
    unknown = [k for k in sd if not pat.match(k)]
    if unknown:
        owners = sorted({k[: -len("weight_ih_l0")] for k in sd if k.endswith(".weight_ih_l0")})
        fix = (f"; the file holds a whole model: save the recurrent module's own state_dict, e.g. "
               f"model.{owners[0].rstrip('.')}.state_dict()" if owners else "")
        raise LayoutError(f"unexpected key(s) {', '.join(map(repr, unknown[:4]))}: expected the state_dict of one "
                          f"nn.GRU/LSTM/RNN (weight_ih_l0, weight_hh_l0, bias_ih_l0, ...){fix}")
    if "weight_ih_l0" not in sd or "weight_hh_l0" not in sd:
        raise LayoutError("no weight_ih_l0/weight_hh_l0: not the state_dict of a recurrent module")
    layers = 1 + max(int(pat.match(k).group(2)) for k in sd)  # type: ignore[union-attr]
    w_ih, w_hh = sd["weight_ih_l0"], sd["weight_hh_l0"]
    if w_ih.dim() != 2 or w_hh.dim() != 2:
        raise LayoutError(f"weight_ih_l0 and weight_hh_l0 must be matrices, got shapes {tuple(w_ih.shape)} "
                          f"and {tuple(w_hh.shape)}")
    rows = int(w_hh.shape[0])
    cell = "RNN" if mode.startswith("RNN") else mode
    if rows % G:
        raise LayoutError(f"weight_hh_l0 has {rows} rows, not a multiple of {G} gates: not --cell {cell.lower()} "
                          f"(is --cell right?)")
    H = rows // G
    proj = int(sd["weight_hr_l0"].shape[0]) if "weight_hr_l0" in sd and sd["weight_hr_l0"].dim() == 2 else 0
    if "weight_hr_l0" in sd and mode != "LSTM":
        raise LayoutError(f"weight_hr_l0 is an LSTM projection, but --cell is {cell.lower()}")
    if not proj and int(w_hh.shape[1]) != H:
        raise LayoutError(f"weight_hh_l0 is {tuple(w_hh.shape)}; for --cell {cell.lower()} ({G} gates, hidden={H}) "
                          f"it would be ({G * H}, {H}): is --cell right?")
    return RNNSpec(mode=mode, input_size=int(w_ih.shape[1]), hidden_size=H, num_layers=layers,
                   bidirectional="weight_ih_l0_reverse" in sd, bias="bias_ih_l0" in sd, proj_size=proj)


def module_from_state_dict(sd: dict, mode: str, *, batch_first: bool = False) -> Any:
    """A numpyrnn module holding ``sd``, after the library's own leaf validation.

    Raises:
        LayoutError: keys, shapes or values (NaN/Inf) that do not fit.
        TypeError: a tensor is not floating point.
    """
    import torch

    from .. import engine
    from ..engine import Axis

    spec = infer_state_spec(sd, mode)
    expected = {k: tuple(Axis(f"{k}[{i}]", n) for i, n in enumerate(shape)) for k, shape in spec.param_shapes().items()}
    checked = engine.check_leaves(sd, expected, layout="state_dict")
    dtype: Any = next(iter(checked.values())).dtype
    module = engine.build(module_class(spec.cell.lower()), spec, batch_first=batch_first, dropout=0.0, device="cpu",
                          dtype=dtype)
    with torch.no_grad():
        for name, t in checked.items():
            getattr(module, name).copy_(t)
    return module


def _plain_cell(sd: Mapping[str, torch.Tensor]) -> str | None:
    try:
        rows, cols = (int(n) for n in sd["weight_hh_l0"].shape)
        H = int(sd["weight_hr_l0"].shape[1]) if "weight_hr_l0" in sd else cols
        return {3: "gru", 4: "lstm", 1: "rnn"}.get(rows // H) if rows % H == 0 else None
    except (KeyError, ValueError, ZeroDivisionError):
        return None


def _variant_builder(path: Path, sd: dict[str, torch.Tensor], config: dict, name: str) -> Any:
    """The ``build`` of a recorded :mod:`numpyrnn.variants` module (its class, options, merge mode and time).

    Each build issues a :class:`~numpyrnn.variants.VariantWarning` naming the module.
    """
    import warnings

    from ..variants import loading

    where = f"{path.name}: module {name!r}"
    for key in ("cell", "input_size", "hidden_size", "num_layers", "bidirectional", "bias"):
        if key not in config:
            raise fail(path, f"module {name!r}: the record of a variant module has no {key!r}")
    saved = loading.build_variant(config, sd, where=where)

    def build(*, batch_first: bool | None = None, dtype: Any = None, device: Any = None, dropout: float = 0.0,
              freeze: bool = False, quiet: bool = False, **_: Any) -> Any:
        out = loading.build_variant(config, saved.state_dict(), where=where, batch_first=batch_first,
                                    dtype=torch_dtype(dtype), device=device, dropout=dropout, freeze=freeze)
        if not quiet:
            warnings.warn(f"{where}: built {loading.describe(out)} (numpyrnn.variants), as the file records",
                          loading.VariantWarning, stacklevel=3)
        return out

    return build


def _builder(path: Path, sd: dict[str, torch.Tensor], config: dict, name: str) -> tuple[Any, Any]:
    """``(build, probe)`` of a plain module: ``probe`` is the module built while reading (the
    configuration is read from it), and the first ``build`` that asks for it as it is (on the
    CPU, in the file's dtype, the recorded ``batch_first``, no dropout) gets it: no copy. Any other
    build validates the tensors again and copies them, so a handed-out module that is trained
    never changes what a later build gives."""
    cell = config["cell"]
    mode = {"gru": "GRU", "lstm": "LSTM"}.get(cell) or ("RNN_RELU" if config.get("nonlinearity") == "relu"
                                                        else "RNN_TANH")
    recorded_bf = bool(config.get("batch_first", False))
    module = module_from_state_dict(sd, mode, batch_first=recorded_bf)
    for key in ("input_size", "hidden_size", "num_layers", "bidirectional", "bias", "proj_size"):
        if key in config and getattr(module, key) != config[key]:
            raise fail(path, f"module {name!r}: the record says {key}={config[key]!r}, the tensors give "
                             f"{getattr(module, key)!r}; the file was changed after it was written")
    cls = module_class(cell)
    saved_dtype = next(module.parameters()).dtype
    kwargs = dict(module.spec.module_kwargs())
    if cell == "rnn":
        kwargs["nonlinearity"] = config.get("nonlinearity", "tanh")
    kept = [module]

    def build(*, batch_first: bool | None = None, dtype: Any = None, device: Any = None, dropout: float = 0.0,
              freeze: bool = False, **_: Any) -> Any:
        bf = recorded_bf if batch_first is None else bool(batch_first)
        want = torch_dtype(dtype) or saved_dtype
        if (bf == recorded_bf and want == saved_dtype and type(dropout) in (int, float) and dropout == 0
                and (device is None or torch.device(device).type == "cpu")):
            out = kept.pop() if kept else module_from_state_dict(sd, mode, batch_first=bf)
        else:
            src = kept[0] if kept else module_from_state_dict(sd, mode, batch_first=recorded_bf)
            out = cls(**kwargs, batch_first=bf, dropout=dropout, device="meta")
            out = out.to_empty(device=device or "cpu").to(want)
            with torch.no_grad():
                for k, v in src.state_dict().items():
                    getattr(out, k).copy_(v)
        if freeze:
            out.requires_grad_(False)
        out.flatten_parameters()
        return out

    return build, module


def read(path: str | os.PathLike, *, cell: str | None = None, nonlinearity: str | None = None,
         batch_first: bool | None = None, **_: Any) -> ModelFile:
    """The modules a converted file records, or the one module of a plain ``state_dict``.

    Raises:
        LayoutError: the file needs pickle, is corrupted, or its record and tensors disagree.
    """
    path = Path(path)
    obj = read_safetensors(path) if path.suffix.lower() == ".safetensors" else load_torch(path)
    rec = _read_record(path, obj)
    sd = state_dict_of(path, obj) if rec is None else _raw_state(path, obj)
    mf = ModelFile(path=path, format="numpyrnn", modules=[])
    if rec is None:
        found = _plain_cell(sd)
        if found is not None:
            check_cell(path, found, cell, "the state_dict's shapes")
        chosen = (cell or found or "").lower()
        if chosen not in ("gru", "lstm", "rnn"):
            raise NeedsOption(f"{path.name}: the state_dict's shapes do not say the cell; pass {option('cell', 'gru')}, "
                             f"{option('cell', 'lstm')} or {option('cell', 'rnn')}", "cell")
        config = {"cell": chosen, "nonlinearity": nonlinearity or "tanh", "batch_first": bool(batch_first)}
        mf.notes.append("a plain state_dict: it records no configuration; the cell comes from the shapes"
                        + ("" if chosen != "rnn" else f", the nonlinearity from {option('nonlinearity')} (tanh)"))
        recs: list[dict[str, Any]] = [{"name": path.stem, "prefix": "", "config": config}]
    else:
        recs = rec["modules"]
    for m in recs:
        name, prefix, config = str(m.get("name")), str(m.get("prefix", "")), dict(m.get("config", {}))
        if config.get("cell") not in ("gru", "lstm", "rnn"):
            raise fail(path, f"module {name!r}: the record's cell {config.get('cell')!r} is not gru, lstm or rnn")
        if rec is not None:
            check_cell(path, str(config["cell"]), cell, f"module {name!r}")
            if nonlinearity is not None and config["cell"] == "rnn" and nonlinearity != config.get("nonlinearity"):
                raise fail(path, f"module {name!r} records nonlinearity {config.get('nonlinearity')!r}, but "
                                 f"{option('nonlinearity', nonlinearity)} was given")
        part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not part:
            raise fail(path, f"module {name!r}: no tensors under the prefix {prefix!r}")
        if batch_first is not None:  # the caller's override of the recorded layout
            config["batch_first"] = bool(batch_first)
        if "variant" in config:
            build = _variant_builder(path, part, config, name)
            probe = build(quiet=True)
        else:
            build, probe = _builder(path, part, config, name)
        from . import config_of

        full = config_of(probe, source=str(config.get("source", name)),
                         **{k: v for k, v in config.items() if k not in _CONFIG_KEYS and k != "source"})
        mf.modules.append(Entry(name=name, cell=full["cell"], config=full, build=build))
    return mf


def _raw_state(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    """All tensors, keys as written (no prefix stripping: prefixes name the modules)."""
    if not isinstance(obj, Mapping):
        raise LayoutError(f"{path.name}: expected a state_dict (a mapping of names to tensors), got "
                          f"{type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise LayoutError(f"{path.name}: entry {bad[0]!r} is not a tensor")
    return dict(obj)


def _sniff(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".safetensors", ".pt", ".pth", ".bin")


register(Format("numpyrnn", (".safetensors", ".pt", ".pth", ".bin"), _sniff, read,
                "numpyrnn's converted files and plain torch state_dicts (.safetensors, .pt)"))
