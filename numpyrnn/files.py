"""Safe file primitives that belong to no format: nothing here ever runs code from a file.

A weight file is untrusted input. The readers of every format
(:mod:`numpyrnn.formats`) reach files only through these functions:

* ``.npy``/``.npz``: ``np.load(..., allow_pickle=False)``, after the header has
  been checked against the file size (a header that declares a huge shape is
  refused before anything is allocated) and object dtypes have been refused;
  large ``.npy`` files are memory-mapped (``mmap_mode="r"``), never read twice;
* ``.pt``: ``torch.load(..., weights_only=True)``;
* ``.safetensors``: the ``safetensors`` package (an optional extra);
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
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import LayoutError

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
    "atomic_write",
    "write_npz",
    "write_bytes",
    "write_state_dict",
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
    except (ValueError, OSError, SyntaxError, EOFError) as exc:
        raise LayoutError(f"{where}: not a readable .npy array ({_one_line(exc)})") from None
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
    size = path.stat().st_size
    with open(path, "rb") as fp:
        shape, _, dtype = _npy_header(fp, path.name)
        offset = fp.tell()
    _check_size(path.name, shape, dtype, size - offset)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise _fail(path, f"not a readable .npy array ({_one_line(exc)})") from None


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, each checked before it is read.

    Raises:
        LayoutError: not a zip archive, a member that is not ``.npy``, an object
            array, or a member whose header does not fit its size.
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _fail(path, f"not a readable .npz archive ({_one_line(exc)})") from None
    out: dict[str, np.ndarray] = {}
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            if not info.filename.endswith(".npy"):
                raise _fail(path, f"member {info.filename!r} is not an .npy array")
            key = info.filename[: -len(".npy")]
            where = f"{path.name}[{key!r}]"
            try:
                with zf.open(info) as fp:
                    shape, fortran, dtype = _npy_header(fp, where)
                    header = fp.tell()
                    _check_size(where, shape, dtype, info.file_size - header)
                    data = fp.read(math.prod(shape) * dtype.itemsize)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                if isinstance(exc, LayoutError):
                    raise
                raise LayoutError(f"{where}: cannot be read ({_one_line(exc)}); the archive is corrupted") from None
            arr = np.frombuffer(data, dtype=dtype)
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
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError:
            raise _fail(path, "reading .safetensors needs the safetensors package: pip install \"numpyrnn[files]\"") from None
        try:
            sd: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise _fail(path, f"not a readable safetensors file ({_one_line(exc)})") from None
    else:
        import pickle

        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" in str(exc):  # legacy (non-zip) serialization: no mmap
                sd = _torch_load_plain(path)
            else:
                raise _fail(path, f"not a readable torch file ({_one_line(exc)})") from None
        except pickle.UnpicklingError as exc:
            raise _fail(path, _pickle_refusal(exc)) from None
        except (EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
            raise _fail(path, f"not a readable torch file ({_one_line(exc)})") from None
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
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise _fail(path, f"not a readable torch file ({_one_line(exc)})") from None


def _pickle_refusal(exc: Exception) -> str:
    text = str(exc)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return (f"refused: loading it would run pickled code ({m.group(0)}); numpyrnn loads tensors only "
                f"(torch.load with weights_only=True): save model.state_dict() instead")
    m = re.search(r"Unsupported operand[^\n]*", text)
    return f"not a readable torch file (corrupted or not a state_dict: {m.group(0) if m else _one_line(exc)})"


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prefixes = {k.rsplit(".", 1)[0] + "." if "." in k else "" for k in sd}
    if len(prefixes) == 1 and (p := prefixes.pop()):
        return {k[len(p):]: v for k, v in sd.items()}
    return sd


def write_state_dict(path: str | os.PathLike, state: Mapping[str, torch.Tensor],
                     metadata: Mapping[str, str] | None = None) -> int:
    """Write a ``state_dict`` as ``.pt`` (loads with ``weights_only=True``) or ``.safetensors``.

    Returns:
        The number of bytes written.
    """
    path = Path(path)
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import save_file
        except ImportError:
            raise _fail(path, "writing .safetensors needs the safetensors package: pip install \"numpyrnn[files]\"") from None
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=dict(metadata or {})))

    saved: Any = tensors
    if getattr(state, "_metadata", None) is not None:  # a state_dict's own record travels with it
        from collections import OrderedDict

        saved = OrderedDict(tensors)
        saved._metadata = state._metadata  # type: ignore[attr-defined]

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(saved, f)

    return atomic_write(path, write)


# --------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------

def atomic_write(path: str | os.PathLike, write: Callable[[str], Any]) -> int:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``.

    If ``write`` raises, the temporary file is removed and ``path`` is untouched:
    no partial output, and an existing file keeps its content.

    Returns:
        The size of the written file in bytes.

    Raises:
        LayoutError: ``path`` is a folder, or its folder does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise _fail(path, "is a folder; give a file name for the output")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise _fail(path, f"the output folder {str(folder)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
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
        with open(tmp, "wb") as f:
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



# --------------------------------------------------------------------------------------
# whole files, byte ranges, zip members, HDF5
# --------------------------------------------------------------------------------------

def read_bytes(path: str | os.PathLike) -> bytes:
    """The whole content of a file.

    Raises:
        LayoutError: the file cannot be read.
    """
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot be read ({_one_line(exc)})") from None


def read_beside(model: str | os.PathLike, location: str, offset: int = 0, length: int | None = None,
                *, what: str = "data file") -> bytes:
    """Bytes of a data file that ``model`` names, which must lie in ``model``'s own folder.

    Refuses absolute names, names with ``..``, and names (or symlinks) that
    resolve outside the model's folder, so a model cannot make numpyrnn read
    other files of the machine.

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
    if not target.is_file():
        raise _fail(model, f"{what} {location!r}: no such file next to the model")
    size = target.stat().st_size
    if offset < 0 or (length is not None and length < 0) or offset + (length or 0) > size:
        raise _fail(model, f"{what} {location!r}: the model asks for bytes {offset}..{offset + (length or 0)}, "
                           f"but the file holds {size} bytes: truncated or not this model's data")
    try:
        with open(target, "rb") as fp:
            fp.seek(offset)
            data = fp.read(size - offset if length is None else length)
    except OSError as exc:
        raise _fail(model, f"{what} {location!r}: cannot be read ({_one_line(exc)})") from None
    return data


def zip_names(path: str | os.PathLike) -> list[str]:
    """The member names of a zip archive.

    Raises:
        LayoutError: not a readable zip archive.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _fail(path, f"not a readable zip archive ({_one_line(exc)})") from None


def read_zip_member(path: str | os.PathLike, name: str) -> bytes:
    """The bytes of one member of a zip archive.

    Raises:
        LayoutError: not a readable archive, or no such member.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            if name not in zf.namelist():
                raise _fail(path, f"the archive holds no {name!r} (it holds {', '.join(zf.namelist()) or 'nothing'})")
            return zf.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _fail(path, f"not a readable zip archive ({_one_line(exc)})") from None


@contextlib.contextmanager
def open_h5(source: str | os.PathLike | bytes, *, name: str | None = None) -> Iterator[Any]:
    """An HDF5 file opened read-only with ``h5py`` (a path, or the bytes of one).

    ``name`` is the file named in messages (the archive for bytes taken from it).

    Raises:
        LayoutError: h5py is missing or the file is not HDF5.
    """
    import io

    where = Path(name) if name is not None else Path(str(source) if not isinstance(source, bytes) else "hdf5")
    try:
        import h5py
    except ImportError:
        raise _fail(where, "reading Keras files needs the h5py package: pip install \"numpyrnn[files]\"") from None
    src: Any = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    try:
        f = h5py.File(src, "r")
    except OSError as exc:
        raise _fail(where, f"not a readable HDF5 file ({_one_line(exc)})") from None
    with f:
        yield f


def write_bytes(path: str | os.PathLike, data: bytes) -> int:
    """Write ``data`` to ``path`` through :func:`atomic_write`; returns the bytes written."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
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
