"""Layout cases: what the generic property tests need to know about one weight layout.

Every property that holds for all layouts (import then export is exact, export
then import is exact, a corrupted leaf is refused by name and changes nothing)
is written once against :class:`LayoutCase` and runs for each registered case.
A layout adds itself with :func:`register` (see the block case at the end of
this file for a complete example): it says how to make a valid source for a
configuration, how to import, load and export it, and how the library names
each leaf in its messages. Leaves are found by walking nested dicts, lists and
tuples, so corruptions need no layout-specific code.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
import torch

from numpyrnn import load_numpy, to_numpy

from .strategies import Config, block_arrays

Path = tuple  # a key path into a nested source: ("w0",), ("layers", 1, "kernel"), ...


@dataclass(frozen=True)
class LayoutCase:
    """How the property suite drives one layout.

    Attributes:
        name: test id, e.g. ``"block"``.
        supports: whether a :class:`Config` is representable in the layout.
        make_source: a valid source holding random weights for a config.
        from_source: ``(config, source) -> module`` through the class constructor.
        load_source: ``(module, config, source) -> module``: in-place load.
        to_source: ``(module, config) -> source``: export.
        leaf_name: how messages name the leaf at a path (``("w0",)`` -> ``"w0"``).
        engine_messages: the layout's shape errors come from the engine's check, so
            they read ``axis k (name) is got, expected want``.
        requires: modules that must be importable (e.g. ``"keras"``); skipped otherwise.
    """

    name: str
    supports: Callable[[Config], bool]
    make_source: Callable[[Config], Any]
    from_source: Callable[[Config, Any], torch.nn.RNNBase]
    load_source: Callable[[torch.nn.RNNBase, Config, Any], torch.nn.RNNBase]
    to_source: Callable[[torch.nn.RNNBase, Config], Any]
    leaf_name: Callable[[Path], str]
    engine_messages: bool = True
    requires: tuple[str, ...] = field(default_factory=tuple)

    def available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)


CASES: dict[str, LayoutCase] = {}


def register(case: LayoutCase) -> LayoutCase:
    CASES[case.name] = case
    return case


def case_params() -> list:
    """``pytest.param`` per registered case, skipped where its framework is missing."""
    return [
        pytest.param(c, id=c.name, marks=() if c.available() else pytest.mark.skip(reason=f"needs {c.requires}"))
        for c in CASES.values()
    ]


# --------------------------------------------------------------------------------------
# nested structures
# --------------------------------------------------------------------------------------

def leaves(source: Any, path: Path = ()) -> dict[Path, np.ndarray]:
    """Every array in a nested dict/list/tuple, by key path (``None`` entries skipped)."""
    if isinstance(source, dict):
        out: dict[Path, np.ndarray] = {}
        for k, v in source.items():
            out.update(leaves(v, path + (k,)))
        return out
    if isinstance(source, (list, tuple)):
        out = {}
        for i, v in enumerate(source):
            out.update(leaves(v, path + (i,)))
        return out
    if source is None:
        return {}
    return {path: source}


def replace(source: Any, path: Path, value: Any) -> Any:
    """A shallow-copied structure with the entry at ``path`` replaced (the original is untouched)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(source, dict):
        out = dict(source)
        out[head] = replace(source[head], rest, value)
        return out
    items = list(source)
    items[head] = replace(items[head], rest, value)
    return type(source)(items) if isinstance(source, tuple) else items


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of a float array, so that -0.0 != 0.0 and NaN payloads count."""
    a = np.ascontiguousarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def assert_sources_identical(got: Any, want: Any, path: Path = ()) -> None:
    """Same nesting, same keys, same dtypes and shapes, same bits."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and got.keys() == want.keys(), f"{path}: keys {list(got)} != {list(want)}"
        for k in want:
            assert_sources_identical(got[k], want[k], path + (k,))
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), f"{path}: length differs"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_sources_identical(g, w, path + (i,))
    elif want is None:
        assert got is None, f"{path}: expected None, got {type(got).__name__}"
    else:
        g, w = np.asarray(got), np.asarray(want)
        assert g.dtype == w.dtype, f"{path}: dtype {g.dtype} != {w.dtype}"
        assert g.shape == w.shape, f"{path}: shape {g.shape} != {w.shape}"
        np.testing.assert_array_equal(bits(g), bits(w), err_msg=f"{path}: bits differ")


def state_bits(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter, for bit-identical comparison."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_state_identical(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype, f"{k}: dtype changed"
        g, w = got[k].contiguous(), want[k].contiguous()
        int_dtype = {2: torch.int16, 4: torch.int32, 8: torch.int64}[w.element_size()]
        assert torch.equal(g.view(int_dtype), w.view(int_dtype)), f"{k} changed"


# --------------------------------------------------------------------------------------
# the block layout
# --------------------------------------------------------------------------------------

def _block_from(cfg: Config, source: dict) -> torch.nn.RNNBase:
    arrays = dict(source)
    if cfg.spec.mode != "LSTM":
        arrays.pop("proj", None)
    return cfg.cls.from_numpy(**arrays, **cfg.build_kwargs())


def _block_load(module: torch.nn.RNNBase, cfg: Config, source: dict) -> torch.nn.RNNBase:
    return load_numpy(module, **source, **cfg.options())


BLOCK = register(LayoutCase(
    name="block",
    supports=lambda cfg: True,
    make_source=lambda cfg: block_arrays(cfg, special=True),
    from_source=_block_from,
    load_source=_block_load,
    to_source=lambda module, cfg: to_numpy(module, **cfg.options()),
    leaf_name=lambda path: str(path[0]),
))
