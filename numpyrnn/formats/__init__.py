"""Model files in, named modules out: one module per file format, found through one registry.

Each format is one file in this package. It declares a :class:`Format` (its
name, the suffixes it claims, a cheap ``sniff`` and a ``read``) and registers
it at import; ``read`` turns a file into a :class:`ModelFile`: every recurrent
module it proves, under the source's own name, every layer it does not
convert, and every problem found. :func:`numpyrnn.load`, :func:`numpyrnn.load_all`
and the ``numpyrnn`` command find formats here only.

Adding a format means adding one file and its name to :data:`BUILTIN`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Callable

from ..errors import LayoutError

__all__ = [
    "NeedsOption",
    "Entry",
    "ModelFile",
    "Format",
    "register",
    "get",
    "all_formats",
    "detect_format",
    "BUILTIN",
    "option",
    "cli_spelling",
    "variant_entry",
]

#: The built-in format modules, imported on first use, in the order ``detect_format`` sniffs them.
BUILTIN = ("native", "keras", "onnx", "flax", "tf1", "tfckpt", "paddle", "blocks")

#: The format a built-in module registers, where its name is not the module's.
_FORMAT_OF = {"native": "numpyrnn"}


class NeedsOption(LayoutError):
    """The file does not record something, and the option that says it was not given."""

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Entry:
    """One recurrent module a file holds.

    ``config`` is machine-readable: ``cell``, ``input_size``, ``hidden_size``,
    ``num_layers``, ``bidirectional``, ``bias``, ``proj_size``, ``batch_first``,
    ``nonlinearity``, ``dtype`` and ``source`` (the source's name for it), plus
    what else the format knows (``layers``: the source layers a proven stack
    joins). ``build(**options)`` returns the ``NumpyGRU``/``NumpyLSTM``/``NumpyRNN``
    (options: ``dtype``, ``device``, ``batch_first``, ``dropout``, ``freeze``).
    ``arrays`` is what the file stores for it, as the format's ``from_<format>``
    takes it (``None`` where the reader does not keep it): :func:`numpyrnn.verify`
    runs the source's framework on these.
    """

    name: str
    cell: str
    config: dict
    build: Callable[..., Any]
    arrays: Any = field(default=None, repr=False, compare=False)


@dataclass
class ModelFile:
    """What a file holds: ``modules`` in the source's order, layers not converted, problems.

    ``problems`` are things that stop a module from being converted (a refused
    setting, an unreadable layer); ``notes`` say what the file could not prove
    (e.g. a weights file without a model config records no graph).
    """

    path: Path
    format: str
    modules: list[Entry]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return [e.name for e in self.modules]

    def entry(self, name: str) -> Entry:
        """The module called ``name``.

        Raises:
            LayoutError: no such module (the message lists the modules, and says
                why a recurrent layer of that name was not converted).
        """
        for e in self.modules:
            if e.name == name:
                return e
        for e in self.modules:
            if name in e.config.get("layers", ()):
                raise LayoutError(f"{self.path.name}: layer {name!r} is part of the stacked module {e.name!r} "
                                  f"(layers {', '.join(e.config['layers'])}); ask for {e.name!r}")
        why = [p for p in self.problems if repr(name) in p]
        skipped = [kind for n, kind in self.skipped if n == name]
        if why:
            raise LayoutError(f"{self.path.name}: layer {name!r} is not converted: {why[0]}")
        if skipped:
            raise LayoutError(f"{self.path.name}: layer {name!r} is a {skipped[0]}, not a recurrent layer; "
                              f"the recurrent modules are {_names(self)}")
        raise LayoutError(f"{self.path.name}: no recurrent module named {name!r}; the file holds {_names(self)}")


def _names(mf: ModelFile) -> str:
    return ", ".join(repr(n) for n in mf.names()) or "none"


@dataclass(frozen=True)
class Format:
    """A file format: its name, the suffixes it claims, a cheap sniff and its reader.

    ``read(path, **options)`` returns a :class:`ModelFile`; options it does not
    need are ignored, options that contradict the file raise
    :class:`~numpyrnn.errors.LayoutError` naming the recorded value. A format
    whose layers may need a :mod:`numpyrnn.variants` module takes
    ``variants=True`` and hands its builders to :func:`try_entry` with
    ``variants=``, which builds the variant, or, without it, says that
    ``variants=True`` would.
    """

    name: str
    suffixes: tuple[str, ...]
    sniff: Callable[[Path], bool]
    read: Callable[..., ModelFile]
    description: str = ""


_REGISTRY: dict[str, Format] = {}
_LOADED = False


def register(fmt: Format) -> None:
    """Add ``fmt`` (or replace the format of the same name)."""
    _REGISTRY[fmt.name] = fmt



#: Options a scanning format's reader takes for the file itself; the rest are build options.
SCAN_OPTIONS = ("forget_bias", "split_bias", "check_crc", "batch_first", "nonlinearity", "time_major", "variants")


def register_scanner(name: str, suffixes: tuple[str, ...], sniff: Callable[[Path], bool],
                     scan: Callable[..., tuple[list, list, list]], description: str) -> None:
    """Register a format whose ``scan(path, **options)`` gives ``(modules, skipped, notes)``.

    ``modules`` are ``(name, cell, config, build)`` tuples; the reading options
    (:data:`SCAN_OPTIONS`) given to the registry's ``read`` reach both ``scan``
    and every ``build``. A ``build`` with an ``arrays`` attribute gives its
    :class:`Entry` those arrays.
    """

    def read(path: str | os.PathLike, **options: Any) -> ModelFile:
        given = {k: v for k, v in options.items() if k in SCAN_OPTIONS and v is not None}
        found, skipped, notes = scan(path, **given)
        entries = []
        for mod_name, cell, config, build in found:
            config = {"nonlinearity": "tanh", **config, "source": config.get("source", mod_name)}

            def make(*, _build: Any = build, **opts: Any) -> Any:
                return _build(**{**given, **opts})

            entries.append(Entry(mod_name, cell, config, make, arrays=getattr(build, "arrays", None)))
        # a scanner's problems are notes about what the file cannot prove; refusals are in ``skipped``
        return ModelFile(path=Path(path), format=name, modules=entries, skipped=list(skipped), notes=list(notes))

    register(Format(name, suffixes, lambda p: bool(sniff(Path(p))), read, description))

def _load_builtins() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for name in BUILTIN:
            import_module(f".{name}", __name__)


def get(name: str) -> Format:
    """The format called ``name``.

    Raises:
        LayoutError: no such format (the message lists the known ones).
    """
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LayoutError(f"unknown format {name!r}; numpyrnn reads "
                          f"{', '.join(f.name for f in all_formats())}") from None


def all_formats() -> list[Format]:
    """Every registered format, built-ins first (in :data:`BUILTIN` order)."""
    _load_builtins()
    order = [_FORMAT_OF.get(m, m) for m in BUILTIN]
    first = [_REGISTRY[n] for n in order if n in _REGISTRY]
    return first + [f for n, f in _REGISTRY.items() if n not in order]


def _claims(fmt: Format, path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in fmt.suffixes)


def detect_format(path: str | os.PathLike, format: str | None = None) -> Format:
    """The format that reads ``path``: ``format`` when given, else the one whose sniff says yes.

    Formats that claim the file's suffix are sniffed first.

    Raises:
        LayoutError: ``path`` does not exist, or no format recognises it (the
            message lists the formats).
    """
    if format is not None:
        return get(format)
    p = Path(path)
    formats = all_formats()
    if not p.exists():  # a name that stands for several files (a TF checkpoint's prefix) is sniffed as it is
        for fmt in formats:
            try:
                if fmt.sniff(p):
                    return fmt
            except OSError:
                continue
        raise LayoutError(f"{p.name}: no such file or folder")
    if not p.is_dir():  # a FIFO or a device is refused here, before any sniff could block on it
        from ..safeio import regular_file

        regular_file(p)
    ordered = [f for f in formats if _claims(f, p)] + [f for f in formats if not _claims(f, p)]
    for fmt in ordered:
        try:
            if fmt.sniff(p):
                return fmt
        except OSError:
            continue
    raise LayoutError(
        f"{p.name}: no format recognises this file; numpyrnn reads "
        + "; ".join(f"{f.name} ({', '.join(f.suffixes) or 'folders'})" for f in formats)
        + f"; name one with {option('format', '<name>')}"
    )


# --------------------------------------------------------------------------------------
# messages: CLI flags in the CLI, keyword arguments in Python
# --------------------------------------------------------------------------------------

_SPELLING: contextvars.ContextVar[str] = contextvars.ContextVar("numpyrnn_spelling", default="python")

#: Option name -> CLI flag, where they differ beyond ``_`` -> ``-``.
_FLAGS = {"format": "--from", "layer": "--layer"}


def option(name: str, value: Any = None) -> str:
    """How the user writes an option: ``--cell lstm`` in the CLI, ``cell='lstm'`` in Python."""
    if _SPELLING.get() == "cli":
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        if value is True:
            return flag
        return flag if value is None else f"{flag} {value}"
    return f"{name}=" + ("..." if value is None else repr(value))


@contextlib.contextmanager
def cli_spelling() -> Iterator[None]:
    """Within this block, :func:`option` spells options as CLI flags."""
    token = _SPELLING.set("cli")
    try:
        yield
    finally:
        _SPELLING.reset(token)


# --------------------------------------------------------------------------------------
# helpers the format modules share
# --------------------------------------------------------------------------------------

CELL_NAMES = ("gru", "lstm", "rnn")


def module_class(cell: str) -> Any:
    from ..modules import NumpyGRU, NumpyLSTM, NumpyRNN

    return {"gru": NumpyGRU, "lstm": NumpyLSTM, "rnn": NumpyRNN}[cell]


def check_cell(path: Path, recorded: str, given: str | None, where: str = "") -> None:
    """A ``cell`` option must agree with the cell the file records.

    Raises:
        LayoutError: naming the recorded cell.
    """
    if given is not None and str(given).lower() != recorded:
        article = "an" if recorded == "lstm" else "a"
        raise LayoutError(f"{path.name}: the file records {article} {recorded.upper()} cell{f' ({where})' if where else ''}, but "
                          f"{option('cell', given)} was given; drop {option('cell')} (the file says its cell) "
                          f"or pass {option('cell', recorded)}")


def check_nonlinearity(path: Path, recorded: str | None, given: str | None, where: str) -> str:
    """The nonlinearity to build: the recorded one; a contradicting option is an error."""
    if recorded is not None:
        if given is not None and given != recorded:
            raise LayoutError(f"{path.name}: {where} records activation {recorded!r}, but "
                              f"{option('nonlinearity', given)} was given; drop {option('nonlinearity')}")
        return recorded
    return given or "tanh"


def torch_dtype(value: Any) -> Any:
    """``torch.float32`` from ``"float32"``, ``torch.float32`` or ``None``."""
    import torch

    if value is None or isinstance(value, torch.dtype):
        return value
    table = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
    name = str(value).replace("torch.", "")
    if name not in table:
        raise LayoutError(f"{option('dtype', value)}: expected one of {', '.join(table)}")
    return table[name]


def config_of(module: Any, *, source: str, **extra: Any) -> dict:
    """The machine-readable configuration of a built module."""
    from ..spec import RNNSpec
    from ..variants import loading

    if loading.is_variant(module):
        return loading.variant_config(module, source=source, **extra)
    spec = RNNSpec.of(module)
    dtype = str(next(module.parameters()).dtype).replace("torch.", "")
    return {"cell": spec.cell.lower(), "input_size": spec.input_size, "hidden_size": spec.hidden_size,
            "num_layers": spec.num_layers, "bidirectional": spec.bidirectional, "bias": spec.bias,
            "proj_size": spec.proj_size, "batch_first": bool(module.batch_first),
            "nonlinearity": spec.nonlinearity, "dtype": dtype, "source": source, **extra}


def entry_from(name: str, make: Callable[..., Any], *, batch_first: bool, source: str | None = None,
               dtype: Any = None, arrays: Any = None, **extra: Any) -> Entry:
    """An :class:`Entry` whose ``build`` calls ``make(batch_first=..., dtype=..., ...)``.

    ``make`` runs once here, so that every check happens while reading (a file
    either yields a module or a problem), and again on each ``build``.
    """
    dtype = torch_dtype(dtype)
    probe = [make(batch_first=batch_first, dtype=dtype)]
    config = config_of(probe[0], source=source or name, **extra)

    def build(**options: Any) -> Any:
        opts = {"batch_first": batch_first, "dtype": dtype, **options}
        opts["dtype"] = torch_dtype(opts.get("dtype"))
        device = opts.pop("device", None)
        if probe and opts == {"batch_first": batch_first, "dtype": dtype}:
            module = probe.pop()  # the module built while reading, handed out once
        else:
            module = make(**opts)
        return module.to(device) if device is not None else module

    return Entry(name=name, cell=config["cell"], config=config, build=build, arrays=arrays)


def try_entry(mf: ModelFile, name: str, make: Callable[..., Any], *, variants: bool | None = None,
              **kwargs: Any) -> None:
    """Append ``entry_from(name, make, **kwargs)`` to ``mf.modules``, or its LayoutError to ``mf.problems``.

    ``variants`` is for formats whose ``make`` takes ``variants=`` (see
    :func:`variant_entry`); ``None`` for the others.
    """
    if variants is not None:
        return variant_entry(mf, name, make, variants=variants, **kwargs)
    try:
        mf.modules.append(entry_from(name, make, **kwargs))
    except LayoutError as exc:
        text = str(exc)
        mf.problems.append(text if repr(name) in text else f"layer {name!r}: {text}")


def variant_entry(mf: ModelFile, name: str, make: Callable[..., Any], *, variants: bool, **kwargs: Any) -> None:
    """:func:`try_entry` for a ``make`` that builds :mod:`numpyrnn.variants` modules when given ``variants=True``.

    Without ``variants`` a refusal that a variant module would compute says so
    (``variants=True``, ``--variants`` in the CLI). With it, the entry builds the
    variant, and each build issues a :class:`~numpyrnn.variants.VariantWarning`
    naming the file, the module and what was built.
    """
    import warnings

    from ..variants import loading

    def quiet(**opts: Any) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", loading.VariantWarning)
            return make(variants=True, **opts)

    if not variants:
        try:
            mf.modules.append(entry_from(name, lambda **o: make(variants=False, **o), **kwargs))
            return
        except LayoutError as exc:
            text = str(exc)
            text = text if repr(name) in text else f"layer {name!r}: {text}"
        try:
            built = quiet(batch_first=kwargs.get("batch_first", True), dtype=torch_dtype(kwargs.get("dtype")))
        except (LayoutError, TypeError, ValueError):
            built = None
        if built is not None and loading.is_variant(built):
            text += (f"; {option('variants', True)} builds {type(loading._unwrap(built)[0]).__name__} "
                     f"(numpyrnn.variants), which computes it")
        mf.problems.append(text)
        return
    try:
        entry = entry_from(name, quiet, **kwargs)
    except LayoutError as exc:
        text = str(exc)
        mf.problems.append(text if repr(name) in text else f"layer {name!r}: {text}")
        return
    if "variant" not in entry.config:
        mf.modules.append(entry)
        return
    inner = entry.build

    def build(**options: Any) -> Any:
        module = inner(**options)
        warnings.warn(f"{mf.path.name}: module {name!r}: built {loading.describe(module)} (numpyrnn.variants): "
                      f"the source computes what torch.nn.{entry.cell.upper()} cannot", loading.VariantWarning,
                      stacklevel=3)
        return module

    mf.modules.append(Entry(name=entry.name, cell=entry.cell, config=entry.config, build=build, arrays=entry.arrays))


#: The input formats of earlier releases' ``numpyrnn convert --from`` (kept for scripts that used it).
FORMATS = ("blocks", "keras", "onnx", "flax", "tf1")


def guess_format(path: str | os.PathLike) -> str | None:
    """The name of the format that reads ``path``, or ``None``."""
    try:
        return detect_format(path).name
    except LayoutError:
        return None
