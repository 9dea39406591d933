"""Whole model files in, ready modules out: :func:`load`, :func:`load_all` and :func:`read_model`.

Every format numpyrnn reads is found through :mod:`numpyrnn.formats`; these
functions never name one.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from .errors import LayoutError
from .formats import ModelFile, detect_format, option

__all__ = ["load", "load_all", "read_model"]


def read_model(path: str | os.PathLike, *, format: str | None = None, variants: bool = False,
               **options: Any) -> ModelFile:
    """What a model file holds: its modules (not yet built), the layers not converted, and problems.

    Args:
        path: a model file or folder in any format numpyrnn reads.
        format: the format's name (``"keras"``, ``"onnx"``, ``"flax"``, ``"tf1"``, ``"blocks"``,
            ``"numpyrnn"``, ...); by default the file says.
        variants: Keras, ONNX and TF1 files: a layer that ``torch.nn`` cannot compute
            (a GRU that resets before the recurrent matmul, other gate activations,
            peepholes, clipping, a merge mode or time direction of its own) becomes a
            :mod:`numpyrnn.variants` module instead of a problem; building it issues a
            :class:`~numpyrnn.variants.VariantWarning` naming the module. numpyrnn's
            own converted files rebuild the variants they record either way.
        options: what the file does not record (``cell``, ``nonlinearity``, ``gates``, ``rowwise``,
            ``forget_bias``, ``stack``, ...); one that contradicts the file is an error.

    Raises:
        LayoutError: the file is not readable, or an option contradicts it.
        TypeError: ``variants`` is not a bool.
    """
    if not isinstance(variants, bool):
        raise TypeError(f"variants should be of type bool, got: {type(variants).__name__}")
    fmt = detect_format(path, format)
    if variants:
        options["variants"] = True
    return fmt.read(path, **options)


def _cli() -> bool:
    return option("x", 1).startswith("--")


def _build_options(options: dict) -> dict:
    return {k: options.pop(k) for k in ("dtype", "device", "dropout", "freeze") if k in options}


def load_all(path: str | os.PathLike, *, format: str | None = None, variants: bool = False,
             **options: Any) -> dict[str, nn.Module]:
    """Every recurrent module of a model file, keyed by the source's name, in the source's order.

    Keras layers are keyed by layer name (a stack the graph proves by its bottom
    layer's), ONNX nodes by node name, Flax layers by param path, TF1 modules by
    variable scope. Each module has ``batch_first`` and the nonlinearity as the
    source records them.

    Args:
        path, format, variants: as in :func:`read_model`.
        options: as in :func:`read_model`, plus ``dtype``, ``device``, ``dropout`` and
            ``freeze`` for the built modules (``batch_first`` overrides the source's).

    Raises:
        LayoutError: the file is unreadable, or a recurrent layer cannot be
            converted (the message says which and why; :func:`load` with
            ``layer=`` still loads the others).
    """
    build = _build_options(options)
    mf = read_model(path, format=format, variants=variants, **options)
    if mf.problems:
        raise LayoutError(f"{mf.path.name}: " + "; ".join(mf.problems)
                          + (f" (the modules that convert: {', '.join(map(repr, mf.names()))}; pick them with "
                             f"{option('layer', mf.names()[0])})" if mf.modules else ""))
    return {e.name: e.build(**build) for e in mf.modules}


def load(path: str | os.PathLike, *, layer: str | None = None, format: str | None = None,
         variants: bool = False, **options: Any) -> nn.Module:
    """The one recurrent module of a model file, or the one named ``layer``.

    Args:
        path, format, variants, options: as in :func:`load_all`.
        layer: the source's name of the module (see :func:`load_all`).

    Raises:
        LayoutError: no such module, or several modules and no ``layer`` (the message
            lists their names), or the module cannot be converted.
    """
    build = _build_options(options)
    mf = read_model(path, format=format, variants=variants, **options)
    if layer is not None:
        return mf.entry(layer).build(**build)
    if len(mf.modules) == 1 and not mf.problems:
        return mf.modules[0].build(**build)
    if not mf.modules:
        raise LayoutError(f"{mf.path.name}: no recurrent module converts: " + "; ".join(mf.problems))
    raise LayoutError(f"{mf.path.name}: holds {len(mf.modules)} recurrent module(s) "
                      f"({', '.join(map(repr, mf.names()))})"
                      + (f" and layers that do not convert ({'; '.join(mf.problems)})" if mf.problems else "")
                      + f"; pick one with {option('layer', mf.names()[0])}"
                      + ("" if _cli() else ", or take them all with load_all(path)"))
