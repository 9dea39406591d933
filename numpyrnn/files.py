"""Safe file primitives that belong to no format: nothing here ever runs code from a file.

A weight file is untrusted input. The readers of every format
(:mod:`numpyrnn.formats`) reach files only through these functions:

* ``.npy``/``.npz``: ``np.load(..., allow_pickle=False)``, after the header has
  been checked against the file size (a header that declares a huge shape is
  refused before anything is allocated) and object dtypes have been refused;
  large ``.npy`` files are memory-mapped (``mmap_mode="r"``), never read twice;
* ``.pt``: :func:`load_torch`, ``torch.load(..., weights_only=True)``;
* ``.safetensors``: :func:`read_safetensors`, the ``safetensors`` package (an optional extra);
* zip archives (``.keras``): :func:`zip_names` and :func:`read_zip_member`;
* HDF5 (Keras): :func:`open_h5`, read with ``h5py``, never with Keras itself;
* whole files and byte ranges: :func:`read_bytes`, and :func:`read_beside` for
  data files that a model names (ONNX external data), which must lie in the
  model's own folder.

Every writer goes through :func:`atomic_write`: the bytes go to a temporary
file in the output's folder, which is renamed over the output only when it is
complete. A failed run leaves no partial output and an existing file keeps its
content.

Problems with a file raise :class:`~numpyrnn.errors.LayoutError` whose message
starts with the file's name.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import stat
import sys
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import pages, safeio
from .errors import LayoutError

# What reading a zip archive raises for a corrupted one: zipfile's own error, a short read, the
# decompressors' errors (a damaged deflate stream raises zlib.error, a damaged LZMA one
# lzma.LZMAError; bzip2 raises OSError), and NotImplementedError for a compression method,
# flag or version zipfile does not read (what a damaged header claims, or another zip tool wrote).
try:
    from lzma import LZMAError as _LZMAError
except ImportError:  # pragma: no cover - Python built without lzma
    class _LZMAError(Exception):  # type: ignore[no-redef]
        pass
# UnicodeDecodeError: a member name flagged as UTF-8 (bit 11 of its flags) that is not.
_STREAM_ERRORS: tuple[type[BaseException], ...] = (zipfile.BadZipFile, zlib.error, _LZMAError, NotImplementedError,
                                                   UnicodeDecodeError)
_ZIP_ERRORS: tuple[type[BaseException], ...] = (*_STREAM_ERRORS, OSError, EOFError)
_MEMBER_ERRORS: tuple[type[BaseException], ...] = (*_ZIP_ERRORS, ValueError)  # and a bad .npy in it
_PASSED_ON: tuple[type[BaseException], ...] = (MemoryError, *_STREAM_ERRORS)  # through the .npy header reader

__all__ = [
    "fail",
    "read_npy",
    "read_npz",
    "read_bytes",
    "read_beside",
    "zip_names",
    "read_zip_member",
    "open_h5",
    "read_state_dict",
    "read_safetensors",
    "load_torch",
    "state_dict_of",
    "atomic_write",
    "write_npz",
    "write_bytes",
    "write_state_dict",
    "write_safetensors",
    "listing",
]

_FLOAT_NAMES = {"float16", "float32", "float64", "bfloat16"}


def _fail(path: Any, message: str) -> LayoutError:
    return LayoutError(f"{Path(path).name}: {message}")


#: The LayoutError for a problem with a file: its message starts with the file's name.
fail = _fail


# --------------------------------------------------------------------------------------
# .npy / .npz
# --------------------------------------------------------------------------------------

def _npy_header(fp: Any, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a ``.npy`` header, never unpickling."""
    from numpy.lib import format as npf

    try:
        version = npf.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npf.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = npf.read_array_header_2_0(fp)
        elif version == (3, 0) and hasattr(npf, "_read_array_header"):
            shape, fortran, dtype = npf._read_array_header(fp, version)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except _PASSED_ON:
        raise  # the zip member's stream itself is damaged: read_npz says so
    except Exception as exc:  # noqa: BLE001 - numpy parses bytes it cannot trust (see below)
        # The header is a Python literal that numpy tokenizes and evaluates: a damaged one fails
        # as Python fails on bad source (tokenize.TokenError for an unclosed bracket or string,
        # IndexError, RecursionError), not only with ValueError or SyntaxError.
        what = _one_line(exc)
        if not isinstance(exc, (ValueError, OSError, SyntaxError, EOFError)):
            what = f"{type(exc).__name__}: {what}"
        raise LayoutError(f"{where}: not a readable .npy array ({what})") from None
    if dtype.hasobject:
        raise LayoutError(
            f"{where}: holds Python objects (dtype {dtype}); numpyrnn never unpickles, so it refuses "
            f"object arrays: save the weights as a float array (e.g. np.asarray(x, dtype=np.float32))"
        )
    return tuple(int(n) for n in shape), bool(fortran), dtype


def _check_size(where: str, shape: tuple[int, ...], dtype: np.dtype, available: int) -> None:
    need = math.prod(shape) * dtype.itemsize
    if need > available:
        raise LayoutError(
            f"{where}: the header declares shape {shape} of {dtype} ({need} bytes), but only {available} bytes "
            f"follow it: the file is truncated or corrupted"
        )


def read_npy(path: str | os.PathLike, *, mmap: bool = True) -> np.ndarray:
    """One ``.npy`` array, memory-mapped read-only when ``mmap`` (no pickle, no copy).

    The header is read first and checked against the file size, so a header
    that declares a huge shape is refused without allocating anything.

    Raises:
        LayoutError: object dtype, truncated data, or not a ``.npy`` file.
    """
    path = Path(path)
    with safeio.open_regular(path) as fp:
        size = os.fstat(fp.fileno()).st_size
        shape, _, dtype = _npy_header(fp, path.name)
        offset = fp.tell()
    _check_size(path.name, shape, dtype, size - offset)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(path, f"not a readable .npy array ({_one_line(exc)})") from None


def _stored_at(zf: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> int | None:
    """Where a member's bytes start in the archive, if they lie there as they are.

    Only for members stored without compression or encryption whose local header
    agrees with the central directory; ``None`` otherwise (the member is then read
    through :mod:`zipfile`).
    """
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or info.compress_size != info.file_size:
        return None
    fp = zf.fp
    if fp is None:
        return None
    fp.seek(info.header_offset)
    local = fp.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04" or int.from_bytes(local[8:10], "little") != 0:
        return None
    name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    return start if start + info.file_size <= size else None


def _prefault(mapped: Any) -> None:
    """Ask the kernel to start reading all of ``mapped`` into the page cache (a hint: failures
    are ignored). ``MADV_WILLNEED`` reads ahead without mapping the pages into this process:
    the engine maps them as it copies and gives them back behind it (see :mod:`numpyrnn.pages`),
    so a large build never holds the file and the module at once."""
    import mmap as mmap_module

    advice = getattr(mmap_module, "MADV_WILLNEED", None)
    if advice is None or not hasattr(mapped, "madvise"):
        return
    try:
        mapped.madvise(advice)
    except (OSError, ValueError):
        pass


def read_npz(path: str | os.PathLike, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, each checked before it is read.

    With ``mmap``, members stored without compression (what ``np.savez`` writes)
    are memory-mapped read-only: no copy, and pages are read as they are used.
    Compressed members are read into memory. The zip CRC of a mapped member is
    not verified (that would read every byte once more); its header, size and
    offsets are.

    Raises:
        LayoutError: not a zip archive, a member that is not ``.npy``, an object
            array, or a member whose header does not fit its size.
    """
    path = Path(path)
    try:
        safeio.regular_file(path)
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise _fail(path, f"not a readable .npz archive ({_zip_why(exc)})") from None
    out: dict[str, np.ndarray] = {}
    mapped: Any = None
    size = path.stat().st_size
    with zf:
        for info in zf.infolist():
            if not info.filename:  # zipfile cuts a name at its first NUL byte (``is_dir`` then fails)
                raise _fail(path, "a member of the archive has an empty name (in its central directory); the "
                                  "archive is corrupted")
            if info.filename.endswith("/"):  # a folder
                continue
            if not info.filename.endswith(".npy"):
                raise _fail(path, f"member {info.filename!r} is not an .npy array")
            key = info.filename[: -len(".npy")]
            where = f"{path.name}[{key!r}]"
            safeio.check_zip_member(where, info)
            try:
                with zf.open(info) as fp:
                    shape, fortran, dtype = _npy_header(fp, where)
                    header = fp.tell()
                    _check_size(where, shape, dtype, info.file_size - header)
                    start = _stored_at(zf, info, size) if mmap and math.prod(shape) > 0 else None
                    if start is None:
                        data = fp.read(math.prod(shape) * dtype.itemsize)
                if start is not None:
                    if mapped is None:
                        import mmap as mmap_module

                        with open(path, "rb") as f:
                            mapped = mmap_module.mmap(f.fileno(), 0, access=mmap_module.ACCESS_READ)
                        pages.register(mapped)
                        _prefault(mapped)
                    arr = np.frombuffer(mapped, dtype=dtype, count=math.prod(shape), offset=start + header)
                else:
                    arr = np.frombuffer(data, dtype=dtype)
            except _MEMBER_ERRORS as exc:
                if isinstance(exc, LayoutError):
                    raise
                if isinstance(exc, NotImplementedError):
                    raise LayoutError(f"{where}: is stored in a way Python's zipfile cannot read ({_one_line(exc)}); "
                                      "the archive is damaged, or was written by another zip tool: write it with "
                                      "np.savez or np.savez_compressed") from None
                raise LayoutError(f"{where}: cannot be read ({_zip_why(exc)}); the archive is corrupted") from None
            out[key] = arr.reshape(shape, order="F" if fortran else "C")
    return out


# --------------------------------------------------------------------------------------
# torch state_dicts: .pt and .safetensors
# --------------------------------------------------------------------------------------

def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A ``state_dict`` from ``.pt`` (``weights_only=True``) or ``.safetensors``.

    Accepts ``{"state_dict": {...}}`` wrappers and a common key prefix such as
    ``"rnn."`` (stripped).

    Raises:
        LayoutError: the file would need pickle code, is corrupted, or holds no
            tensors.
    """
    path = Path(path)
    sd = read_safetensors(path) if path.suffix.lower() == ".safetensors" else load_torch(path)
    return state_dict_of(path, sd)


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a ``.safetensors`` file, keys as written (a regular file only).

    Raises:
        LayoutError: the safetensors package is missing, or the file is not readable.
    """
    path = Path(path)
    safeio.regular_file(path)
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise _fail(path, "reading .safetensors needs the safetensors package: pip install \"numpyrnn[files]\"") from None
    try:
        return dict(load_file(str(path)))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _fail(path, f"not a readable safetensors file ({_one_line(exc)})") from None


def load_torch(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` of a regular file (memory-mapped where the format allows).

    A file that would run pickled code is refused in numpyrnn's words: torch's
    advice to retry with ``weights_only=False`` is never passed on.

    Raises:
        LayoutError: not a regular file, pickled code, or not a readable torch file.
    """
    import pickle

    path = Path(path)
    safeio.regular_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" in str(exc):  # legacy (non-zip) serialization: no mmap
            return _torch_load_plain(path)
        raise _fail(path, f"not a readable torch file ({_one_line(exc)})") from None
    except pickle.UnpicklingError as exc:
        raise _fail(path, _pickle_refusal(exc)) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - see _unreadable_torch
        raise _fail(path, _unreadable_torch(exc)) from None


def _unreadable_torch(exc: Exception) -> str:
    """Why ``torch.load`` could not read a file, in one line.

    ``torch.load`` parses bytes it cannot trust: a damaged pickle stream makes torch's
    weights-only unpickler fail as Python fails on bad data (a ``KeyError`` for a memo
    entry that was never stored, an ``IndexError`` on an empty stack, a ``TypeError``,
    ``struct.error`` or ``UnicodeDecodeError`` from a torn opcode), and a damaged zip
    container as zipfile and zlib do. Each of them means the same thing to the caller.
    """
    what = _one_line(exc)
    if not isinstance(exc, (OSError, EOFError, ValueError, RuntimeError, zipfile.BadZipFile)):
        what = f"{type(exc).__name__}: {what}"
    return f"not a readable torch file ({what}); the file is damaged or not a torch file"


def state_dict_of(path: str | os.PathLike, sd: Any) -> dict[str, torch.Tensor]:
    """What :func:`load_torch` or :func:`read_safetensors` gave, as a ``state_dict``.

    Accepts a ``{"state_dict": {...}}`` wrapper and strips a common key prefix.

    Raises:
        LayoutError: not a mapping of names to tensors.
    """
    path = Path(path)
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping) or not sd:
        raise _fail(path, f"expected a state_dict (a mapping of names to tensors), got {type(sd).__name__}"
                          + (" (empty)" if isinstance(sd, Mapping) else ""))
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise _fail(path, f"entry {bad[0]!r} is a {type(sd[bad[0]]).__name__}, not a tensor; expected a state_dict")
    return _strip_prefix(dict(sd))


def _torch_load_plain(path: Path) -> Any:
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _fail(path, _pickle_refusal(exc)) from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - see _unreadable_torch
        raise _fail(path, _unreadable_torch(exc)) from None


def _pickle_refusal(exc: Exception) -> str:
    """numpyrnn's own words for torch's refusal: torch's advice to retry unsafely is never relayed."""
    text = str(exc)
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return (f"refused: loading it would run pickled code (Unsupported global: GLOBAL {m.group(1)}); numpyrnn loads tensors only "
                f"(torch.load with weights_only=True) and never runs code from a file: save model.state_dict() instead")
    m = re.search(r"Unsupported operand[^\n]*", text)
    detail = m.group(0) if m else next(
        (line.strip() for line in text.splitlines()
         if line.strip() and not re.search(r"weights.only|trusted source|pytorch\.org", line, re.IGNORECASE)),
        "the pickle holds something other than tensors")
    return f"not a readable torch file (corrupted or not a state_dict: {detail})"


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prefixes = {k.rsplit(".", 1)[0] + "." if "." in k else "" for k in sd}
    if len(prefixes) == 1 and (p := prefixes.pop()):
        return {k[len(p):]: v for k, v in sd.items()}
    return sd


def write_state_dict(path: str | os.PathLike, state: Mapping[str, torch.Tensor],
                     metadata: Mapping[str, str] | None = None, *,
                     made: Iterator[tuple[str, memoryview]] | None = None) -> int:
    """Write a ``state_dict`` as ``.pt`` (loads with ``weights_only=True``) or ``.safetensors``.

    ``.safetensors`` files are written by :func:`write_safetensors`, straight from
    the tensors' memory; reading them back needs the ``safetensors`` package,
    which is therefore required here as well. ``made``: see :func:`write_safetensors`
    (``.safetensors`` only).

    Returns:
        The number of bytes written.
    """
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        try:
            import safetensors  # noqa: F401 - what reads the file back
        except ImportError:
            raise _fail(path, "writing .safetensors needs the safetensors package: pip install \"numpyrnn[files]\"") from None
        return write_safetensors(path, state, metadata, made=made)
    if made is not None:
        raise TypeError("made= applies to .safetensors files only")
    tensors = {k: v.detach().contiguous() for k, v in state.items()}

    saved: Any = tensors
    if getattr(state, "_metadata", None) is not None:  # a state_dict's own record travels with it
        from collections import OrderedDict

        saved = OrderedDict(tensors)
        saved._metadata = state._metadata  # type: ignore[attr-defined]

    def write(tmp: str) -> None:
        with safeio.RecordingFile(tmp) as f:  # a failed write is reported as itself, not as torch's "enforce fail"
            torch.save(saved, f)

    return atomic_write(path, write)


# safetensors, written here: an 8-byte little-endian header length, the JSON header
# (dtype, shape, data_offsets per tensor; "__metadata__": str -> str), padded with spaces
# to a multiple of 8, then every tensor's raw little-endian bytes, in header order.
_SAFETENSORS_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
# One write() moves at most this many bytes: the loop returns to Python between chunks, so
# a signal is handled (and the temporary file removed) within one chunk's time. Chunks that
# fit in a core's cache also move faster: writing 2 GB from memory took 0.7-0.9 s in chunks of
# 64-512 KB against 1.8-4 s in chunks of 1-64 MB (Linux, ext4, 2 cores).
_WRITE_CHUNK = 256 << 10


def safetensors_header(state: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The length prefix and the padded JSON header of a ``.safetensors`` file of ``state``.

    Tensors are laid out in ``state``'s order. Raises ``TypeError`` for a value that
    is not a tensor, a dtype safetensors has no name for, non-string metadata.
    """
    import json

    header: dict[str, Any] = {}
    meta = dict(metadata or {})
    bad_meta = [k for k, v in meta.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad_meta:
        raise TypeError(f"safetensors metadata must map str to str; {bad_meta[0]!r} does not")
    if meta:
        header["__metadata__"] = meta
    offset = 0
    for name, t in state.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise TypeError(f"{name!r}: a safetensors tensor name must be a string other than '__metadata__'")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        code = _SAFETENSORS_DTYPES.get(t.dtype)
        if code is None:
            raise TypeError(f"{name}: safetensors has no dtype for {t.dtype}")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def _raw_bytes(t: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, as a view of its memory (no copy)."""
    flat = t.reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    if flat.dtype == torch.bfloat16:
        flat = flat.view(torch.int16)
    return flat.numpy().data.cast("B")


def write_safetensors(path: str | os.PathLike, state: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None, *,
                      made: Iterator[tuple[str, memoryview]] | None = None) -> int:
    """Write ``state`` as a ``.safetensors`` file, through :func:`atomic_write`.

    Each tensor's bytes go from its own memory into the file in bounded chunks
    (tensors already contiguous on the CPU are not copied; others are made so one
    at a time). The file reads back with ``safetensors.safe_open`` and
    ``safetensors.torch.load_file``, metadata included.

    The bytes of tensors on the ``meta`` device (shapes without values) come from
    ``made``: ``(name, bytes)`` pairs in ``state``'s order, each tensor's bytes whole
    (see :func:`numpyrnn.streaming.parameter_bytes`). A thread of its own writes
    them, one chunk at a time, while the next chunk is made. Whatever ``made``
    raises is raised, and nothing is written.

    Returns:
        The number of bytes written.

    Raises:
        TypeError: a value is not a tensor, or has a dtype safetensors cannot name.
        LayoutError: the file cannot be written (see :func:`atomic_write`).
    """
    path = Path(path)
    tensors = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    head = safetensors_header(tensors, metadata)  # every check before anything is created

    def write(tmp: str) -> None:
        def put(data: memoryview) -> None:
            for start in range(0, len(data), _WRITE_CHUNK):
                chunk = data[start:start + _WRITE_CHUNK]
                while chunk:
                    chunk = chunk[f.write(chunk):]

        with safeio.open_fresh(tmp, buffering=0) as f:
            f.write(head)
            behind = _Behind(put) if made is not None else None
            try:
                _write_tensors(tensors, made, put, behind)
            finally:
                if behind is not None:
                    behind.close()

    if sys.byteorder != "little" and made is not None:
        raise TypeError("made= needs a little-endian machine (safetensors stores little-endian bytes)")
    return atomic_write(path, write)


def _write_tensors(tensors: Mapping[str, torch.Tensor], made: Iterator[tuple[str, memoryview]] | None,
                   put: Callable[[memoryview], None], behind: _Behind | None) -> None:
    """The data part of :func:`write_safetensors`: every tensor's bytes in order."""
    for name, t in tensors.items():
        if t.device.type == "meta":
            _put_made(name, t.numel() * t.element_size(), made, behind.put if behind is not None else put)
            continue
        if behind is not None:
            behind.wait()  # the file's order
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        if sys.byteorder != "little" and t.element_size() > 1:
            t = torch.from_numpy(t.numpy().byteswap()) if t.dtype != torch.bfloat16 else \
                torch.from_numpy(t.view(torch.int16).numpy().byteswap()).view(torch.bfloat16)
        put(_raw_bytes(t))
    if behind is not None:
        behind.wait()
    if made is not None and next(made, None) is not None:
        raise RuntimeError("internal error: bytes made for no tensor of the file")


class _Behind:
    """Writes one chunk at a time on a thread of its own while the caller makes the next one:
    :meth:`put` waits until the chunk before is written, so a chunk must stay valid until the
    one after it is put. A failed write is raised by the next :meth:`put` or :meth:`wait`."""

    def __init__(self, write: Callable[[memoryview], None]):
        self._write = write
        self._job: memoryview | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="numpyrnn-writer", daemon=True)
        self._thread.start()

    def put(self, data: memoryview) -> None:
        self.wait()
        with self._cv:
            self._job = data
            self._cv.notify_all()

    def wait(self) -> None:
        with self._cv:
            while self._job is not None:
                self._cv.wait()
            if self._error is not None:
                error, self._error = self._error, None
                raise error

    def close(self) -> None:
        """Wait for the chunk being written (at most one), then end the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._closed:
                    self._cv.wait()
                if self._job is None:
                    return
                data = self._job
            try:
                if self._error is None:
                    self._write(data)
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                self._error = exc
            with self._cv:
                self._job = None
                self._cv.notify_all()


def _put_made(name: str, nbytes: int, made: Iterator[tuple[str, memoryview]] | None,
              put: Callable[[memoryview], None]) -> None:
    """Write the ``nbytes`` bytes that ``made`` gives for the tensor ``name``."""
    if made is None:
        raise TypeError(f"{name}: a tensor on the meta device holds no values to write")
    left = nbytes
    while left:
        got = next(made, None)
        if got is None or got[0] != name or len(got[1]) > left:
            raise RuntimeError(f"internal error: the bytes made for {name} do not match its {nbytes} bytes")
        put(got[1])
        left -= len(got[1])


# --------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------

def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> int:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``.

    If ``write`` raises, or SIGTERM, SIGHUP or SIGINT arrives, the temporary
    file is removed and ``path`` is untouched: no partial output, and an
    existing file keeps its content. A replaced file keeps its permission bits,
    and its owner and group where the process may set them.

    Returns:
        The size of the written file in bytes.

    Raises:
        LayoutError: ``path`` is a folder or not a regular file, its folder does
            not exist, or the write failed (a full disk, say).
        KeyboardInterrupt, safeio.Interrupted: a signal arrived.
    """
    path = Path(path)
    if path.is_dir():
        raise _fail(path, "is a folder; give a file name for the output")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise _fail(path, f"the output folder {str(folder)!r} does not exist")
    try:
        old: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        old = None
    if old is not None and not stat.S_ISREG(old.st_mode):
        raise _fail(path, "exists and is not a regular file; numpyrnn writes regular files only")
    with safeio.guard_signals():
        with safeio.blocked_signals():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
            os.close(fd)
            safeio.register_temp(tmp)
        try:
            write(tmp)
            safeio.raise_if_interrupted()
            if old is not None:
                os.chmod(tmp, stat.S_IMODE(old.st_mode))
                try:
                    os.chown(tmp, old.st_uid, old.st_gid)
                except PermissionError:
                    with contextlib.suppress(PermissionError):
                        os.chown(tmp, -1, old.st_gid)
            else:
                mask = os.umask(0)
                os.umask(mask)
                os.chmod(tmp, 0o666 & ~mask)
            with safeio.blocked_signals():  # replaced and recorded as one step
                os.replace(tmp, path)
                safeio.record_written(str(path))
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            safeio.raise_if_interrupted(exc)
            if isinstance(exc, OSError):
                raise _fail(path, f"cannot be written ({_one_line(exc)}); nothing was written") from None
            raise
        finally:
            safeio.unregister_temp(tmp)
    return path.stat().st_size


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> int:
    """Write arrays to an uncompressed ``.npz`` (``None`` values are left out).

    Returns:
        The number of bytes written.
    """
    payload = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
    bad = [k for k, v in payload.items() if v.dtype.hasobject]
    if bad:
        raise TypeError(f"{bad[0]}: object arrays are not written (they would need pickle to read back)")

    def write(tmp: str) -> None:
        with safeio.open_fresh(tmp) as f:
            np.savez(f, **payload)  # type: ignore[arg-type]

    return atomic_write(path, write)


# --------------------------------------------------------------------------------------
# listing, for ``numpyrnn inspect``
# --------------------------------------------------------------------------------------

def listing(tree: Any, prefix: str = "") -> Iterator[tuple[str, tuple[int, ...], str]]:
    """``(key path, shape, dtype)`` of every array in a nested structure."""
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            yield from listing(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from listing(v, f"{prefix}[{i}]")
    elif hasattr(tree, "shape") and hasattr(tree, "dtype"):
        dtype = str(tree.dtype).replace("torch.", "")
        yield prefix, tuple(int(n) for n in tree.shape), dtype


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _zip_why(exc: BaseException) -> str:
    """What a zip reader's error says, in one line; a name that does not decode is said to be one."""
    if isinstance(exc, UnicodeDecodeError):
        return f"a member name flagged as UTF-8 is not UTF-8: {_one_line(exc)}"
    return _one_line(exc)



# --------------------------------------------------------------------------------------
# whole files, byte ranges, zip members, HDF5
# --------------------------------------------------------------------------------------

def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole content of a regular file (a FIFO or device is refused without blocking).

    Raises:
        LayoutError: not a regular file, or it cannot be read.
    """
    path = Path(path)
    try:
        with safeio.open_regular(path) as fp:
            return fp.read()
    except OSError as exc:
        raise _fail(path, f"cannot be read ({_one_line(exc)})") from None


def read_beside(model: str | os.PathLike, location: str, offset: int = 0, length: int | None = None,
                *, what: str = "data file") -> bytes:
    """Bytes of a data file that ``model`` names, which must lie in ``model``'s own folder.

    Refuses absolute names, names with ``..``, names (or symlinks) that
    resolve outside the model's folder, and anything but a regular file, so a
    model cannot make numpyrnn read other files of the machine or hang on a FIFO.

    Raises:
        LayoutError: a refused name, a missing file, or a range outside the file.
    """
    model = Path(model)
    folder = model.resolve().parent
    pure = Path(location)
    if not location or pure.is_absolute() or location.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", location):
        raise _fail(model, f"{what} {location!r}: an absolute name; numpyrnn reads data files in the model's "
                           f"own folder only (relative names such as {pure.name!r})")
    if ".." in re.split(r"[\\/]", location):
        raise _fail(model, f"{what} {location!r}: names a parent folder ('..'); numpyrnn reads data files in "
                           f"the model's own folder only")
    target = (folder / location).resolve()
    if folder not in target.parents:
        raise _fail(model, f"{what} {location!r}: resolves to a file outside the model's folder (a symlink?); "
                           f"numpyrnn reads data files in the model's own folder only")
    if not target.exists():
        raise _fail(model, f"{what} {location!r}: no such file next to the model")
    try:
        with safeio.open_regular(target, f"{model.name}: {what} {location!r}") as fp:
            size = os.fstat(fp.fileno()).st_size
            if offset < 0 or (length is not None and length < 0) or offset + (length or 0) > size:
                raise _fail(model, f"{what} {location!r}: the model asks for bytes {offset}..{offset + (length or 0)}, "
                                   f"but the file holds {size} bytes: truncated or not this model's data")
            fp.seek(offset)
            return fp.read(size - offset if length is None else length)
    except OSError as exc:
        raise _fail(model, f"{what} {location!r}: cannot be read ({_one_line(exc)})") from None


def zip_names(path: str | os.PathLike, *, what: str = "zip archive") -> list[str]:
    """The member names of a zip archive (``what`` names the kind of archive in messages).

    Raises:
        LayoutError: not a regular file, or not a readable zip archive.
    """
    path = Path(path)
    try:
        safeio.regular_file(path)
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except _ZIP_ERRORS as exc:
        raise _fail(path, f"not a readable {what} ({_zip_why(exc)})") from None


def read_zip_member(path: str | os.PathLike, name: str, *, cap: int | None = None) -> bytes:
    """The bytes of one member of a zip archive, never inflated past the resource limits.

    A member that declares far more than it stores is refused before it is
    inflated (:func:`numpyrnn.safeio.check_zip_member`); ``cap`` bounds its size
    outright (``config.json``: the ``config`` limit).

    Raises:
        LayoutError: not a readable archive, no such member, or a member beyond the limits.
    """
    path = Path(path)
    try:
        safeio.regular_file(path)
        with zipfile.ZipFile(path) as zf:
            if name not in zf.namelist():
                raise _fail(path, f"the archive holds no {name!r} (it holds {', '.join(zf.namelist()) or 'nothing'})")
            return safeio.read_zip_member(zf, name, f"{path.name}[{name}]", cap=cap)
    except _ZIP_ERRORS as exc:
        raise _fail(path, f"not a readable zip archive ({_zip_why(exc)})") from None


def read_json_member(path: str | os.PathLike, name: str) -> Any:
    """A zip member decoded as JSON, within the ``config`` size limit and the depth limit."""
    raw = read_zip_member(path, name, cap=safeio.current_limits().config_bytes)
    return safeio.load_json(raw, f"{Path(path).name}[{name}]")


@contextlib.contextmanager
def open_h5(source: str | os.PathLike | bytes, *, name: str | None = None) -> Iterator[Any]:
    """An HDF5 file opened read-only with ``h5py`` (a path, or the bytes of one), checked before any read.

    Every dataset must be stored inside the file itself: external storage,
    external links, virtual datasets, soft links leaving the file and
    decompression bombs are refused by :func:`numpyrnn.safeio.check_h5`, naming
    the dataset. ``name`` is the file named in messages (the archive for bytes
    taken from it).

    Raises:
        LayoutError: h5py is missing, the file is not HDF5, or a dataset is refused.
    """
    import io

    where = Path(name) if name is not None else Path(str(source) if not isinstance(source, bytes) else "hdf5")
    try:
        import h5py  # noqa: F401 - only to say it is missing
    except ImportError:
        raise _fail(where, "reading Keras files needs the h5py package: pip install \"numpyrnn[files]\"") from None
    if isinstance(source, bytes):
        src: Any = io.BytesIO(source)
        size = len(source)
    else:
        size = safeio.regular_file(source, where.name).st_size
        src = str(source)
    with safeio.open_h5(src, where.name, size) as f:
        yield f


def write_bytes(path: str | os.PathLike, data: bytes) -> int:
    """Write ``data`` to ``path`` through :func:`atomic_write`; returns the bytes written."""

    def write(tmp: str) -> None:
        with safeio.open_fresh(tmp) as f:
            f.write(data)

    return atomic_write(path, write)


def __getattr__(name: str) -> Any:
    """Readers and writers that moved to :mod:`numpyrnn.formats`, still reachable here."""
    moved = {
        "read_blocks": "blocks", "BLOCK_KEYS": "blocks",
        "read_keras": "keras", "keras_arrays": "keras",
        "read_onnx": "onnx", "write_onnx": "onnx",
        "read_msgpack": "flax", "flax_layers": "flax", "write_msgpack": "flax",
        "tf1_structure": "tf1", "tf1_arrays": "tf1",
    }
    if name in moved:
        from importlib import import_module

        return getattr(import_module(f".formats.{moved[name]}", __package__), name)
    if name in ("FORMATS", "guess_format"):
        from . import formats

        return getattr(formats, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
