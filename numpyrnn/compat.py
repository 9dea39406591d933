"""numpyrnn modules in torch's tooling: existing models, TorchScript, ``torch.fx``, ``torch.load``.

* :func:`convert` turns the ``nn.GRU``/``nn.LSTM``/``nn.RNN`` modules of an existing
  model into their numpyrnn twins, in place, keeping every ``Parameter``.
* :class:`Tracer` and :func:`symbolic_trace` trace a model with ``torch.fx`` and keep
  its recurrent modules as leaves (``torch.fx`` only keeps classes defined inside
  ``torch.nn`` as leaves, and cannot trace the recurrent ``forward`` itself).
* :func:`safe_globals` lists what ``torch.load(..., weights_only=True)`` must be allowed
  to load a whole pickled numpyrnn module.

Importing numpyrnn also lets TorchScript compile models that hold numpyrnn modules
(and subclasses of them). ``nn.GRU.forward`` accepts a ``Tensor`` or a
``PackedSequence``; TorchScript finds the two typed declarations of it by the name
of the module's class, so it finds none for a subclass and fails with
``Unsupported value kind: Tensor``. numpyrnn makes that look-up use the class that
defines ``forward`` (``nn.GRU``) when the module is a numpyrnn one; nothing changes
for any other class, and nothing is written to the module being scripted.
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Any, Callable

import torch
from torch import nn

from .modules import TWINS, NumpyGRU, NumpyLSTM, NumpyRNN, _NumpyMixin

__all__ = ["convert", "Tracer", "symbolic_trace", "safe_globals", "SafeGlobals"]


# --------------------------------------------------------------------------------------
# existing models
# --------------------------------------------------------------------------------------

def convert(module: nn.Module) -> nn.Module:
    """Turn every ``nn.GRU``/``nn.LSTM``/``nn.RNN`` in ``module`` into its numpyrnn twin, in place.

    In the spirit of ``nn.SyncBatchNorm.convert_sync_batchnorm``, but without copying:
    each module keeps its identity and only changes class (``NumpyGRU`` adds methods and
    no state, and does not override ``forward``). So everything stays as it was:

    * the ``Parameter`` objects, so an optimizer built before keeps training them;
    * ``training``/``eval`` mode, device, dtype, and the cuDNN flat buffer on CUDA;
    * forward hooks, pre-hooks and ``state_dict`` hooks, whose handles still remove them;
    * every other reference to the module (shared or tied modules are converted once).

    Only modules whose class is exactly ``nn.GRU``, ``nn.LSTM`` or ``nn.RNN`` are
    converted; subclasses are left as they are, since they may override ``forward``.

    Args:
        module: a model, or a single recurrent module.

    Returns:
        ``module`` itself, now holding numpyrnn modules (when ``module`` is an
        ``nn.GRU`` itself, it is returned as a ``NumpyGRU``).

    Raises:
        TypeError: ``module`` is not an ``nn.Module``, or a recurrent module carries a
            ``torch.nn.utils.parametrize`` parametrization (its class was already
            replaced by torch; convert before registering parametrizations).

    Examples:
        >>> from torch import nn
        >>> import numpyrnn
        >>> model = nn.Sequential(nn.Linear(3, 5), nn.GRU(5, 4))
        >>> weight = model[1].weight_hh_l0
        >>> model = numpyrnn.convert(model)
        >>> type(model[1]).__name__, model[1].weight_hh_l0 is weight
        ('NumpyGRU', True)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"convert expects an nn.Module, got {type(module).__name__}")
    targets = []
    for name, sub in module.named_modules(remove_duplicate=True):
        twin = TWINS.get(type(sub))
        if twin is not None:
            targets.append((sub, twin))
        elif isinstance(sub, nn.RNNBase) and type(sub).__mro__[1] in TWINS and _is_parametrized(sub):
            where = name or "the module"
            raise TypeError(
                f"{where} ({type(sub).__name__}) is parametrized with torch.nn.utils.parametrize, which "
                "already replaced its class; call numpyrnn.convert before registering parametrizations"
            )
    for sub, twin in targets:  # nothing changes unless every module can be converted
        sub.__class__ = twin
    return module


def _is_parametrized(module: nn.Module) -> bool:
    from torch.nn.utils import parametrize

    return parametrize.is_parametrized(module)


# --------------------------------------------------------------------------------------
# torch.fx
# --------------------------------------------------------------------------------------

class Tracer(torch.fx.Tracer):
    """A ``torch.fx`` tracer that keeps every recurrent module as a leaf.

    ``torch.fx.Tracer`` keeps a module as a leaf only when its class is defined inside
    ``torch.nn``; it traces into anything else, and the recurrent ``forward`` cannot be
    traced (it branches on its input). This tracer treats every ``nn.RNNBase``
    (``nn.GRU``/``LSTM``/``RNN``, numpyrnn's modules and any subclass) as a leaf, so the
    graph holds one ``call_module`` node for it; everything else is as in
    ``torch.fx.Tracer``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> import numpyrnn
        >>> class Model(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.rnn = numpyrnn.NumpyGRU(3, 4, batch_first=True)
        ...     def forward(self, x):
        ...         out, _ = self.rnn(x)
        ...         return out.relu()
        >>> graph = numpyrnn.compat.Tracer().trace(Model())
        >>> [n.target for n in graph.nodes if n.op == "call_module"]
        ['rnn']
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        """A recurrent module is a leaf; otherwise ``torch.fx``'s own rule decides."""
        return isinstance(m, nn.RNNBase) or super().is_leaf_module(m, module_qualified_name)


def symbolic_trace(root: nn.Module | Callable[..., Any], concrete_args: dict[str, Any] | None = None,
                   ) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace`` with recurrent modules kept as leaves (see :class:`Tracer`).

    Args:
        root: the module or function to trace.
        concrete_args: inputs to specialise on, as in ``torch.fx.symbolic_trace``.

    Returns:
        A ``GraphModule`` whose recurrent modules are the original module objects.
    """
    tracer = Tracer()
    graph = tracer.trace(root, concrete_args)
    name = root.__class__.__name__ if isinstance(root, nn.Module) else root.__name__
    return torch.fx.GraphModule(tracer.root, graph, name)


# --------------------------------------------------------------------------------------
# torch.load(weights_only=True)
# --------------------------------------------------------------------------------------

class SafeGlobals(list):
    """The list of numpyrnn's classes that is also a context manager.

    As a list it is what ``torch.serialization.safe_globals(...)`` or
    ``torch.serialization.add_safe_globals(...)`` take; in a ``with`` statement it
    enters ``torch.serialization.safe_globals`` with itself, like torch's function of
    the same name.
    """

    def __enter__(self) -> SafeGlobals:
        manager = getattr(torch.serialization, "safe_globals", None)
        if manager is None:  # pragma: no cover - torch older than numpyrnn supports
            raise RuntimeError(
                f"torch {torch.__version__} has no torch.serialization.safe_globals; "
                "use torch.serialization.add_safe_globals(numpyrnn.safe_globals()) instead"
            )
        self._managers = [*getattr(self, "_managers", []), manager(list(self))]
        self._managers[-1].__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._managers.pop().__exit__(*exc)


def safe_globals() -> SafeGlobals:
    """What ``torch.load(..., weights_only=True)`` must allow to load whole numpyrnn modules.

    A pickled module refers to its class; the weights-only unpickler refuses every class
    it was not told about. numpyrnn's classes add no state of their own, so allowing them
    lets a saved module come back as it was. A pickled *model* also refers to its own
    classes (``nn.Sequential``, your model class, ...): allow those as well, or better,
    save and load ``state_dict()``.

    Returns:
        ``[NumpyGRU, NumpyLSTM, NumpyRNN]``, as a list that is also a context manager:
        ``with numpyrnn.safe_globals():`` allows them inside the block, like
        ``torch.serialization.safe_globals``; the list itself can be passed to
        ``torch.serialization.safe_globals(...)`` or to
        ``torch.serialization.add_safe_globals(...)`` (for the whole process).
        Subclasses you define must be added too.

    Examples:
        >>> import io, torch, numpyrnn
        >>> buf = io.BytesIO()
        >>> torch.save(numpyrnn.NumpyGRU(3, 4), buf)
        >>> _ = buf.seek(0)
        >>> with numpyrnn.safe_globals():
        ...     gru = torch.load(buf, weights_only=True)
        >>> gru
        NumpyGRU(3, 4)
        >>> _ = buf.seek(0)
        >>> with torch.serialization.safe_globals([*numpyrnn.safe_globals(), torch.nn.Linear]):
        ...     gru = torch.load(buf, weights_only=True)
    """
    return SafeGlobals([NumpyGRU, NumpyLSTM, NumpyRNN])


# --------------------------------------------------------------------------------------
# TorchScript
# --------------------------------------------------------------------------------------

def _defining_class(cls: type, name: str, func: Any) -> type:
    """The class in ``cls``'s MRO whose own namespace holds ``func`` as ``name``."""
    for klass in cls.__mro__:
        if klass.__dict__.get(name) is func:
            return klass
    return cls


def _install_torchscript_overloads() -> None:
    """Let TorchScript find ``nn.GRU.forward``'s overloads for numpyrnn modules.

    ``torch._jit_internal._get_overloaded_methods(method, mod_class)`` looks the
    overloads of ``method`` up under ``mod_class.__name__`` and then checks that the
    method's source lies inside ``mod_class``'s source. Both fail for a subclass that
    inherits ``forward``. For numpyrnn modules (and subclasses of them) the look-up is
    made with the class that defines the method instead, which is what it was
    registered under. Every other call goes to torch's function unchanged, whatever its
    arguments, so a torch that adds some keeps working. Installed once; a torch without
    this private function is left alone (scripting a numpyrnn module then fails as it
    would for any subclass of ``nn.GRU``).
    """
    from torch import _jit_internal

    original = getattr(_jit_internal, "_get_overloaded_methods", None)
    if original is None or getattr(original, "_numpyrnn_original", None) is not None:
        return

    @functools.wraps(original)
    def _get_overloaded_methods(*args: Any, **kwargs: Any) -> Any:
        method = args[0] if args else kwargs.get("method")
        where = "args" if len(args) > 1 else "kwargs" if "mod_class" in kwargs else None
        mod_class = args[1] if where == "args" else kwargs.get("mod_class")
        if isinstance(mod_class, type) and issubclass(mod_class, _NumpyMixin) and method is not None:
            func = getattr(method, "__func__", method)
            name = getattr(func, "__name__", None)
            if name is not None:
                owner = _defining_class(mod_class, name, func)
                if where == "args":
                    args = (args[0], owner, *args[2:])
                else:
                    kwargs = {**kwargs, "mod_class": owner}
        return original(*args, **kwargs)

    _get_overloaded_methods._numpyrnn_original = original  # type: ignore[attr-defined]
    _jit_internal._get_overloaded_methods = _get_overloaded_methods


# --------------------------------------------------------------------------------------
# torch.fx and torch.ao.quantization: numpyrnn's modules are what torch's classes are
# --------------------------------------------------------------------------------------

def _torch_class(module: Any) -> type | None:
    """The torch class a numpyrnn module stands in for (exactly ``NumpyGRU`` -> ``nn.GRU``); else ``None``.

    Only numpyrnn's own three classes: a subclass of them may override ``forward``,
    just as torch's tools do not treat a subclass of ``nn.GRU`` as ``nn.GRU``.
    """
    return _PARENT.get(type(module))


_PARENT: dict[type, type] = {twin: parent for parent, twin in TWINS.items()}


def _install_fx_leaves() -> None:
    """Let plain ``torch.fx`` keep numpyrnn's modules as leaves, as it keeps ``nn.GRU``.

    ``torch.fx.Tracer.is_leaf_module`` keeps a module as a leaf when its class is
    defined inside ``torch.nn``. numpyrnn's three classes are ``nn.GRU``/``LSTM``/``RNN``
    with nothing changed but added methods, so the base rule is extended to them,
    without touching their ``__module__`` (pickling by reference is unchanged). A
    tracer that overrides ``is_leaf_module`` without calling the base keeps its own rule.
    """
    base = torch.fx.Tracer.is_leaf_module
    if getattr(base, "_numpyrnn_original", None) is not None:
        return

    @functools.wraps(base)
    def is_leaf_module(self: Any, m: Any, *args: Any, **kwargs: Any) -> bool:
        return _torch_class(m) is not None or base(self, m, *args, **kwargs)

    is_leaf_module._numpyrnn_original = base  # type: ignore[attr-defined]
    torch.fx.Tracer.is_leaf_module = is_leaf_module  # type: ignore[method-assign]


def _install_quantization() -> None:
    """Let ``torch.ao.quantization`` treat numpyrnn's modules as the torch classes they are.

    Its default specs and mappings (``quantize_dynamic``'s ``{nn.LSTM, nn.GRU, ...}``)
    match exact classes through ``type_before_parametrizations``, and
    ``nnqd.LSTM.from_float`` checks ``type(mod)``. For numpyrnn's three classes the
    look-up gives the torch class, and the swap sees the module as that class for the
    duration of ``from_float`` only. So a spec naming ``nn.LSTM`` covers ``NumpyLSTM``.
    """
    quantize: Any = sys.modules.get("torch.ao.quantization.quantize")
    if quantize is None:
        try:
            quantize = importlib.import_module("torch.ao.quantization.quantize")
        except ImportError:  # pragma: no cover - a torch without it
            return
    lookup = getattr(quantize, "type_before_parametrizations", None)
    swap = getattr(quantize, "swap_module", None)
    if lookup is None or swap is None or getattr(swap, "_numpyrnn_original", None) is not None:
        return

    @functools.wraps(lookup)
    def type_before_parametrizations(module: Any, *args: Any, **kwargs: Any) -> Any:
        found = lookup(module, *args, **kwargs)
        return _PARENT.get(found, found)

    @functools.wraps(swap)
    def swap_module(mod: Any, *args: Any, **kwargs: Any) -> Any:
        parent = _torch_class(mod)
        if parent is None:
            return swap(mod, *args, **kwargs)
        twin = type(mod)
        mod.__class__ = parent
        try:
            new = swap(mod, *args, **kwargs)
        finally:
            mod.__class__ = twin
        return new

    type_before_parametrizations._numpyrnn_original = lookup  # type: ignore[attr-defined]
    swap_module._numpyrnn_original = swap  # type: ignore[attr-defined]
    quantize.type_before_parametrizations = type_before_parametrizations
    quantize.swap_module = swap_module


_install_torchscript_overloads()
_install_fx_leaves()
_install_quantization()
