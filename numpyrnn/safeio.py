"""Format-free primitives for reading untrusted files and writing outputs safely.

Everything a weight-file reader needs to refuse hostile input before it costs
anything: regular files only (never a FIFO or a device that would block),
HDF5 files whose every dataset is stored inside the file itself, zip members
and datasets whose declared size is checked against what is stored before
anything is inflated, JSON and msgpack trees of bounded depth, and signal
handling that removes unfinished temporary files.

The resource limits are one :class:`Limits` object. The defaults come from
environment variables (``NUMPYRNN_MAX_RATIO``, ``NUMPYRNN_RATIO_FLOOR``,
``NUMPYRNN_MAX_CONFIG``, ``NUMPYRNN_MAX_DEPTH``); :func:`limits` raises them
for a block of code, and the command line's ``--limit NAME=VALUE`` does the
same for one command.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
import re
import signal
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

from .errors import LayoutError

__all__ = [
    "Limits",
    "Interrupted",
    "current_limits",
    "limits",
    "parse_limit",
    "regular_file",
    "open_regular",
    "check_declared",
    "check_zip_member",
    "read_zip_member",
    "check_depth",
    "load_json",
    "check_h5",
    "open_h5",
    "guard_signals",
    "register_temp",
    "unregister_temp",
    "raise_if_interrupted",
]

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not m:
        raise ValueError(f"{text!r} is not a size (examples: 64M, 2G, 1048576)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


@dataclass(frozen=True)
class Limits:
    """What a file may make numpyrnn allocate or recurse into.

    Attributes:
        ratio: a zip member or HDF5 dataset may declare at most this many times
            the bytes it stores, once its declared size passes ``floor``.
            Weights of floats compress by less than 2x; a bomb by 1000x.
        floor: declared sizes up to this many bytes pass whatever their ratio.
        config_bytes: the most bytes a ``config.json`` may hold.
        depth: the deepest nesting of a JSON or msgpack tree.
    """

    ratio: float = 100.0
    floor: int = 64 * 1024**2
    config_bytes: int = 16 * 1024**2
    depth: int = 64

    #: the environment variable behind each field
    ENV: ClassVar[dict[str, str]] = {"ratio": "NUMPYRNN_MAX_RATIO", "floor": "NUMPYRNN_RATIO_FLOOR",
           "config_bytes": "NUMPYRNN_MAX_CONFIG", "depth": "NUMPYRNN_MAX_DEPTH"}
    #: the name of each field on the command line (``--limit NAME=VALUE``)
    NAMES: ClassVar[dict[str, str]] = {"ratio": "ratio", "floor": "floor", "config": "config_bytes", "depth": "depth"}

    def replace(self, **changes: Any) -> Limits:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Any = None) -> Limits:
        """The defaults, each overridden by its environment variable when set.

        Raises:
            LayoutError: a variable that is not a number or a size.
        """
        environ = os.environ if environ is None else environ
        out = cls()
        for field, var in cls.ENV.items():
            if environ.get(var):
                try:
                    out = out.replace(**{field: _convert(field, environ[var])})
                except ValueError as exc:
                    raise LayoutError(f"{var}={environ[var]!r}: {exc}") from None
        return out


def _convert(field: str, text: str) -> Any:
    if field == "ratio":
        value: Any = float(text)
        if not math.isfinite(value) or value < 1:
            raise ValueError("the ratio must be a number of at least 1")
        return value
    if field == "depth":
        value = int(text)
        if value < 1:
            raise ValueError("the depth must be at least 1")
        return value
    return _size(text)


_LIMITS: contextvars.ContextVar[Limits | None] = contextvars.ContextVar("numpyrnn_limits", default=None)


def current_limits() -> Limits:
    """The limits in force: those of the innermost :func:`limits` block, else the environment's."""
    found = _LIMITS.get()
    return found if found is not None else Limits.from_env()


@contextlib.contextmanager
def limits(value: Limits | None = None, **changes: Any) -> Iterator[Limits]:
    """Raise (or lower) the limits for the readers called inside the block.

    ``with limits(ratio=1000, floor=2**30): read_keras(path)``.
    """
    base = value if value is not None else current_limits()
    token = _LIMITS.set(base.replace(**changes))
    try:
        yield _LIMITS.get()  # type: ignore[misc]
    finally:
        _LIMITS.reset(token)


def parse_limit(text: str, base: Limits) -> Limits:
    """``base`` with one ``NAME=VALUE`` of the command line's ``--limit`` applied.

    Raises:
        ValueError: an unknown name or a bad value.
    """
    name, sep, value = text.partition("=")
    field = Limits.NAMES.get(name.strip().lower())
    if not sep or field is None:
        raise ValueError(f"--limit {text!r}: expected NAME=VALUE with NAME one of {', '.join(Limits.NAMES)}")
    try:
        return base.replace(**{field: _convert(field, value.strip())})
    except ValueError as exc:
        raise ValueError(f"--limit {text!r}: {exc}") from None


def how_to_raise(field: str) -> str:
    name = next(k for k, v in Limits.NAMES.items() if v == field)
    return f"if you trust the file, raise the limit with --limit {name}=... or {Limits.ENV[field]}"


# --------------------------------------------------------------------------------------
# regular files only
# --------------------------------------------------------------------------------------

def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def _refuse_kind(where: str, mode: int) -> LayoutError:
    return LayoutError(f"{where}: is {_kind(mode)}; numpyrnn reads regular files only")


def open_regular(path: str | os.PathLike, where: str | None = None) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file without blocking.

    The file is opened with ``O_NONBLOCK`` (so a FIFO with no writer cannot
    hang the open), checked with ``fstat`` on the open descriptor (so what is
    checked is what is read), then switched back to blocking reads.

    Raises:
        LayoutError: a FIFO, a device, a socket or a folder.
        OSError: the file cannot be opened.
    """
    where = where or os.path.basename(os.fspath(path))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        pre = os.stat(path)
    except OSError:
        pre = None
    if pre is not None and not stat.S_ISREG(pre.st_mode) and not stat.S_ISFIFO(pre.st_mode):
        raise _refuse_kind(where, pre.st_mode)  # a device is never opened at all
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse_kind(where, st.st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def regular_file(path: str | os.PathLike, where: str | None = None) -> os.stat_result:
    """The ``stat`` of ``path`` after checking, as :func:`open_regular` does, that it is a regular file.

    Raises:
        LayoutError: a FIFO, a device, a socket or a folder.
    """
    with open_regular(path, where) as fp:
        return os.fstat(fp.fileno())


# --------------------------------------------------------------------------------------
# declared sizes against stored sizes
# --------------------------------------------------------------------------------------

def check_declared(where: str, declared: int, stored: int, what: str = "declares",
                   lim: Limits | None = None) -> None:
    """Refuse ``declared`` bytes backed by only ``stored`` bytes beyond the ratio limit.

    Raises:
        LayoutError: ``declared`` is above the floor and more than ``ratio``
            times ``stored``.
    """
    lim = lim or current_limits()
    if declared > lim.floor and declared > lim.ratio * max(stored, 0):
        found = (f"{declared} bytes from the {stored} bytes it stores ({declared / stored:.0f}x)" if stored > 0
                 else f"{declared} bytes but stores none")
        raise LayoutError(
            f"{where}: {what} {found}; numpyrnn refuses more than {lim.ratio:g}x beyond {lim.floor} bytes "
            f"(a decompression bomb?); " + how_to_raise("ratio")
        )


def check_zip_member(where: str, info: Any, lim: Limits | None = None) -> None:
    """Refuse a zip member whose declared size is far beyond its stored size, before inflating it."""
    check_declared(where, int(info.file_size), int(info.compress_size), "inflates to", lim)


def read_zip_member(zf: Any, name: str, where: str, *, cap: int | None = None, cap_field: str = "config_bytes",
                    lim: Limits | None = None) -> bytes:
    """The bytes of one zip member, after the ratio check and an optional size cap.

    Never inflates more than the member's declared size.

    Raises:
        LayoutError: the member is missing, too large, or a bomb.
        zipfile.BadZipFile: the archive is corrupted.
    """
    lim = lim or current_limits()
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise LayoutError(f"{where}: no such member in the archive") from None
    if cap is not None and info.file_size > cap:
        raise LayoutError(f"{where}: holds {info.file_size} bytes; numpyrnn reads at most {cap}; "
                          + how_to_raise(cap_field))
    check_zip_member(where, info, lim)
    with zf.open(info) as fp:
        data = fp.read(info.file_size)
        if fp.read(1):
            raise LayoutError(f"{where}: inflates past the {info.file_size} bytes it declares: corrupted")
    return bytes(data)


# --------------------------------------------------------------------------------------
# nesting depth
# --------------------------------------------------------------------------------------

def check_depth(tree: Any, where: str, lim: Limits | None = None) -> None:
    """Refuse a tree of dicts and lists nested deeper than the depth limit (checked without recursion)."""
    lim = lim or current_limits()
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if depth > lim.depth:
            raise LayoutError(f"{where}: nests deeper than {lim.depth} levels; " + how_to_raise("depth"))
        stack.extend((c, depth + 1) for c in children)


def load_json(data: bytes, where: str, lim: Limits | None = None) -> Any:
    """Decode JSON of bounded depth.

    Raises:
        LayoutError: not JSON, or nested beyond the depth limit.
    """
    import json

    try:
        tree = json.loads(data)
    except RecursionError:
        lim = lim or current_limits()
        raise LayoutError(f"{where}: nests deeper than {lim.depth} levels; " + how_to_raise("depth")) from None
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        text = str(exc).strip().splitlines()
        raise LayoutError(f"{where}: not valid JSON ({text[0] if text else type(exc).__name__})") from None
    check_depth(tree, where, lim)
    return tree


# --------------------------------------------------------------------------------------
# HDF5: every dataset stored inside the file
# --------------------------------------------------------------------------------------

#: HDF5 filters built into the library (deflate, shuffle, fletcher32, szip, nbit,
#: scaleoffset) and h5py's lzf; any other would load a plugin.
H5_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset", 32000: "lzf"}
#: those of them that store fewer bytes than the data holds
H5_COMPRESSING = {1, 4, 5, 6, 32000}


def _resolve_soft(f: Any, group_name: str, target: str, hops: int = 0) -> bool:
    """Whether a soft link's ``target`` leads to an object inside the file through hard links only."""
    import h5py

    if hops > 16:
        return False
    path = target if target.startswith("/") else f"{group_name.rstrip('/')}/{target}"
    node = f["/"]
    here = "/"
    for part in [p for p in path.split("/") if p and p != "."]:
        if part == "..":
            return False
        if not isinstance(node, h5py.Group):
            return False
        link = node.get(part, getlink=True)
        if link is None or isinstance(link, h5py.ExternalLink):
            return False
        if isinstance(link, h5py.SoftLink):
            if not _resolve_soft(f, here, link.path, hops + 1):
                return False
            node = f[f"{here.rstrip('/')}/{part}"]
        elif isinstance(link, h5py.HardLink):
            node = node[part]
        else:
            return False  # user-defined link classes
        here = f"{here.rstrip('/')}/{part}"
    return True


def _check_dataset(ds: Any, where: str, file_size: int, lim: Limits) -> None:
    if ds.is_virtual:
        raise LayoutError(f"{where}: is a virtual dataset, whose data lives in other files; numpyrnn reads only "
                          f"data stored inside the file itself")
    if ds.external:
        raise LayoutError(f"{where}: keeps its data in external file(s) ({ds.external[0][0]!r}); numpyrnn reads "
                          f"only data stored inside the file itself")
    plist = ds.id.get_create_plist()
    codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    for code in codes:
        if code not in H5_FILTERS:
            raise LayoutError(f"{where}: compressed with HDF5 filter {code}, which would load a plugin; numpyrnn "
                              f"decodes only {', '.join(sorted(set(H5_FILTERS.values())))}")
    declared = math.prod(int(n) for n in (ds.shape or ())) * int(ds.dtype.itemsize)
    stored = int(ds.id.get_storage_size())
    if stored > file_size:
        raise LayoutError(f"{where}: claims {stored} stored bytes, more than the file's {file_size}: corrupted")
    check_declared(where, declared, stored, "declares", lim)
    if declared > file_size and not set(codes) & H5_COMPRESSING:  # stored as it is: it cannot outgrow the file
        raise LayoutError(f"{where}: declares shape {ds.shape} ({declared} bytes), more than the file's "
                          f"{file_size} bytes: corrupted")


def check_h5(f: Any, where: str, file_size: int, lim: Limits | None = None) -> bool:
    """Refuse an HDF5 file with any dataset not stored inside it, before reading any data.

    Walks every link of the open file ``f``: external links, soft links that do
    not lead to an object of this file, virtual datasets, datasets with
    external storage, unknown filters, and datasets that declare far more bytes
    than they store (see :class:`Limits`) are refused, naming the dataset.

    Returns whether any attribute or dataset holds values that HDF5 reads from the
    file's global heap (variable-length strings and sequences, references): those
    are only safe to read once :func:`check_global_heaps` has passed.

    Raises:
        LayoutError: naming ``where`` and the object's path.
    """
    import h5py

    lim = lim or current_limits()
    seen: set = set()
    stack = [("/", f["/"])]
    heap = _check_attrs(f["/"], f"{where}: /", lim)
    while stack:
        name, group = stack.pop()
        for key in group:
            path = f"{name.rstrip('/')}/{key}"
            here = f"{where}: {path.lstrip('/')}"
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise LayoutError(f"{here}: is an external link to {link.filename!r}:{link.path}; numpyrnn reads "
                                  f"only data stored inside the file itself")
            if isinstance(link, h5py.SoftLink):
                if not _resolve_soft(f, name, link.path):
                    raise LayoutError(f"{here}: is a soft link to {link.path!r}, which does not lead to an object "
                                      f"stored inside the file")
                continue  # its target is visited through its hard link
            if not isinstance(link, h5py.HardLink):
                raise LayoutError(f"{here}: is a user-defined link ({type(link).__name__}); refused")
            obj = group[key]
            ident = h5py.h5o.get_info(obj.id).token if hasattr(h5py.h5o.get_info(obj.id), "token") else hash(obj.id)
            if ident in seen:
                continue
            seen.add(ident)
            heap = _check_attrs(obj, here, lim) or heap
            if isinstance(obj, h5py.Dataset):
                _check_dataset(obj, here, file_size, lim)
                heap = heap or _in_global_heap(obj.id.get_type())
            elif isinstance(obj, h5py.Group):
                stack.append((path, obj))
    return heap


def _check_attrs(obj: Any, here: str, lim: Limits) -> bool:
    """Refuse an attribute of ``obj`` whose declared size is beyond the ``config`` limit, before
    any attribute is read: reading one allocates what its dataspace declares (h5py zeroes an
    array of that shape first), and a damaged dataspace can declare any number of elements.
    Keras keeps its model config, its version and its weight names in attributes, all far below
    the limit. Returns whether any attribute's values live in the global heap."""
    import h5py

    heap = False
    for name in obj.attrs:  # the names only: no value is read
        aid = h5py.h5a.open(obj.id, name.encode() if isinstance(name, str) else name)
        tid = aid.get_type()
        declared = aid.get_space().get_simple_extent_npoints() * max(tid.get_size(), 1)
        if declared > lim.config_bytes:
            raise LayoutError(f"{here}: attribute {name!r} declares {declared} bytes; numpyrnn reads at most "
                              f"{lim.config_bytes} bytes of an attribute; " + how_to_raise("config_bytes"))
        heap = heap or _in_global_heap(tid)
    return heap


def _in_global_heap(tid: Any, depth: int = 0) -> bool:
    """Whether values of the HDF5 type ``tid`` are kept in the file's global heap: variable-length
    strings and sequences and references, also as members of compound and array types (a type
    nested deeper than any real one counts as such)."""
    import h5py

    h5t = h5py.h5t
    cls = tid.get_class()
    if depth > 32 or cls in (h5t.VLEN, h5t.REFERENCE):
        return True
    if cls == h5t.STRING:
        return bool(tid.is_variable_str())
    if cls == h5t.COMPOUND:
        return any(_in_global_heap(tid.get_member_type(i), depth + 1) for i in range(tid.get_nmembers()))
    if cls == h5t.ARRAY:
        return _in_global_heap(tid.get_super(), depth + 1)
    return False


#: a global heap collection's signature, its version (1) and three reserved zero bytes
_GCOL = b"GCOL\x01\x00\x00\x00"
#: the least size of a global heap collection (HDF5's ``H5HG_MINSIZE``)
_GCOL_MIN = 4096


def check_global_heaps(buf: Any, where: str, lengths: int = 8) -> None:
    """Refuse a damaged global heap collection in the bytes ``buf`` of an HDF5 file before HDF5
    parses one.

    HDF5 reads a whole collection when it reads any variable-length value in it, and walks its
    objects by their declared sizes. An object of index 0 (free space) that declares no bytes
    never advances that walk, and HDF5 then loops for ever; an object that runs past its
    collection's end sends the walk, and later reads, outside the collection. Every collection
    of the file is found by its signature, then walked here the way HDF5 walks it. ``lengths``:
    the file's size of lengths (the superblock's; 8 in every file h5py writes).

    Raises:
        LayoutError: naming ``where``, the collection's and the object's byte offsets.
    """
    n = len(buf)
    find = getattr(buf, "find", None)
    # found whole first: a regular expression's scanner holds ``buf``'s buffer while it lives
    hits = [m.start() for m in re.finditer(re.escape(_GCOL), buf)] if find is None else _find_all(find, _GCOL)
    head = len(_GCOL) + lengths
    objhdr = 8 + lengths  # index (2), reference count (2), reserved (4), size
    for pos in hits:
        if pos + head > n:
            break
        size = int.from_bytes(buf[pos + len(_GCOL):pos + head], "little")
        if size < _GCOL_MIN or pos + size > n:
            continue  # no collection HDF5 could read whole: a read of it fails there
        p, end = pos + head, pos + size
        while p + objhdr <= end:  # a tail too short for an object header is free space
            index = int.from_bytes(buf[p:p + 2], "little")
            declared = int.from_bytes(buf[p + 8:p + objhdr], "little")
            need = objhdr + -(-declared // 8) * 8 if index else declared
            if need == 0 or p + need > end:
                why = ("no bytes, so HDF5's walk of the collection never moves past it" if need == 0 else
                       f"{declared} bytes, past the collection's end at byte {end}")
                raise LayoutError(f"{where}: the HDF5 global heap collection at byte {pos} is damaged: its "
                                  f"object at byte {p} (index {index}) declares {why}; refused before HDF5 "
                                  f"reads it")
            p += need


def _find_all(find: Any, needle: bytes) -> Iterator[int]:
    at = find(needle)
    while at >= 0:
        yield at
        at = find(needle, at + 1)


@contextlib.contextmanager
def _file_bytes(source: Any) -> Iterator[Any]:
    """The bytes of ``source`` (a path or a file object): a read-only mapping of a file, the value
    of an ``io.BytesIO`` (no copy), or what another file object reads from its start."""
    if isinstance(source, (str, os.PathLike)):
        import mmap

        with open_regular(source) as fh:  # as every reader opens a file: never blocks on a FIFO
            if not os.fstat(fh.fileno()).st_size:
                yield b""
                return
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                yield mm
        return
    getvalue = getattr(source, "getvalue", None)
    if getvalue is not None:  # io.BytesIO: the bytes it was made from, shared while it is unchanged
        yield getvalue()
        return
    pos = source.tell()
    try:
        source.seek(0)
        yield source.read()
    finally:
        source.seek(pos)


@contextlib.contextmanager
def open_h5(source: Any, where: str, file_size: int, lim: Limits | None = None) -> Iterator[Any]:
    """An ``h5py.File`` opened read-only and checked by :func:`check_h5` before anything is read.

    ``source`` is a path (checked to be a regular file first) or a file object.

    Raises:
        LayoutError: the file is not HDF5, or :func:`check_h5` refuses it.
    """
    import h5py

    if isinstance(source, (str, os.PathLike)):
        regular_file(source, where)
    try:
        f = h5py.File(source, "r")
    except (OSError, ValueError, RuntimeError) as exc:
        text = str(exc).strip().splitlines()
        raise LayoutError(f"{where}: not a readable HDF5 file ({text[0] if text else type(exc).__name__})") from None
    with f:
        try:
            if check_h5(f, where, file_size, lim):
                with _file_bytes(source) as buf:
                    check_global_heaps(buf, where, f.id.get_create_plist().get_sizes()[1])
        except LayoutError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            text = str(exc).strip().splitlines()
            raise LayoutError(f"{where}: corrupted HDF5 structure ({text[0] if text else type(exc).__name__})") from None
        yield f


# --------------------------------------------------------------------------------------
# signals: unfinished temporary files are removed
# --------------------------------------------------------------------------------------

class Interrupted(SystemExit):
    """A SIGTERM, SIGHUP or SIGINT arrived; unfinished temporary files were removed.

    A ``SystemExit`` with code ``128 + signal number``: uncaught, it ends the
    process quietly with the exit code a shell reports for that signal.
    """

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}"


SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n))

_TEMPS: set[str] = set()
_STATE: dict[str, Any] = {"depth": 0, "caught": 0, "written": []}
_LOCK = threading.Lock()


def register_temp(path: str) -> None:
    """Remove ``path`` if a guarded signal arrives before :func:`unregister_temp`."""
    with _LOCK:
        _TEMPS.add(path)


def unregister_temp(path: str) -> None:
    with _LOCK:
        _TEMPS.discard(path)


def _remove_temps() -> None:
    for tmp in list(_TEMPS):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _on_signal(signum: int, frame: Any) -> None:
    first = not _STATE["caught"]
    _STATE["caught"] = _STATE["caught"] or signum
    _remove_temps()
    if not first:
        return  # one interruption is being handled already
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


def _is_default(signum: int) -> bool:
    current = signal.getsignal(signum)
    if signum == signal.SIGINT:
        return current is signal.default_int_handler
    return current in (signal.SIG_DFL, None)


@contextlib.contextmanager
def guard_signals() -> Iterator[None]:
    """While inside, SIGTERM, SIGHUP and SIGINT remove registered temporary files first.

    Then SIGINT raises ``KeyboardInterrupt`` and SIGTERM/SIGHUP raise
    :class:`Interrupted`. Only the main thread can install handlers, and a
    handler the application installed itself is left alone (registered files
    are still removed when its exception passes through :func:`atomic_write`).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    installed = {}
    if _STATE["depth"] == 0:
        _STATE["caught"] = 0
        _STATE["written"] = []
    _STATE["depth"] += 1
    try:
        for signum in SIGNALS:
            if _is_default(signum):
                installed[signum] = signal.signal(signum, _on_signal)
        yield
    finally:
        _STATE["depth"] -= 1
        for signum, previous in installed.items():
            signal.signal(signum, previous)


def record_written(path: str) -> None:
    """Note that ``path`` was completely written inside the current guard."""
    _STATE["written"].append(path)


def written() -> list[str]:
    """The outputs completely written inside the current outermost guard."""
    return list(_STATE["written"])


def caught_signal() -> int:
    """The signal a guard caught during the current outermost guard (0 if none)."""
    return int(_STATE["caught"])


def raise_if_interrupted(exc: BaseException | None = None) -> None:
    """Raise the interruption a guarded signal caused, in place of what it turned into.

    A signal that arrives while torch or another library is calling back into
    Python may come out as that library's own error (torch's "enforce fail"):
    when a signal was caught, this raises ``KeyboardInterrupt`` or
    :class:`Interrupted` instead.
    """
    signum = caught_signal()
    if not signum:
        return
    if isinstance(exc, (KeyboardInterrupt, Interrupted)):
        raise exc
    if signum == signal.SIGINT:
        raise KeyboardInterrupt from None
    raise Interrupted(signum) from None


@contextlib.contextmanager
def blocked_signals() -> Iterator[None]:
    """Delay guarded signals for a few statements (so that a file is created and registered as one step)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def open_fresh(path: str, buffering: int = -1) -> Any:
    """Open the empty file ``path`` (a temporary file just made) for writing, without truncating it.

    ``open(path, "wb")`` truncates, and on ext4 a file truncated to zero and written again is
    flushed to disk when it is closed (``auto_da_alloc``): ``close()`` then waits for the whole
    file's writeback, about a second per 2 GB. A file opened without truncation is written back
    later, as ``cp``'s output is.
    """
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        return open(fd, "wb", buffering=buffering)  # noqa: SIM115 - the caller closes it
    except BaseException:
        os.close(fd)
        raise


class RecordingFile:
    """A binary file whose write errors are kept, for writers that hide them.

    torch's serializer calls ``write`` from C++ and reports a failed write as
    its own "enforce fail" error; :attr:`error` keeps the ``OSError`` (a full
    disk, a file size limit) so that the real cause can be reported.
    """

    def __init__(self, path: str):
        self._f = open_fresh(path)  # closed by close()/__exit__
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def close(self) -> None:
        try:
            self._f.close()
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __enter__(self) -> RecordingFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.close()
        except OSError:
            if exc[0] is None:
                raise
        if isinstance(exc[1], Exception) and not isinstance(exc[1], OSError) and self.error is not None:
            raise self.error from None
