"""Reading and writing weight files without ever running code from them.

A weight file is untrusted input. Every reader here refuses to unpickle:

* ``.npy``/``.npz``: ``np.load(..., allow_pickle=False)``, after the header has
  been checked against the file size (a header that declares a huge shape is
  refused before anything is allocated) and object dtypes have been refused;
  large ``.npy`` files are memory-mapped (``mmap_mode="r"``), never read twice;
* ``.pt``: ``torch.load(..., weights_only=True)``;
* ``.safetensors``: the ``safetensors`` package (an optional extra);
* Keras ``.keras``/``.weights.h5``: read with ``h5py``, never with Keras itself;
* ``.onnx``: ``onnx.load`` without external data;
* Flax ``.msgpack``: decoded with ``msgpack`` directly; array records are
  checked (dtype, shape against the byte count) before they become arrays.

Every writer goes through :func:`atomic_write`: the bytes go to a temporary
file in the output's folder, which is renamed over the output only when it is
complete. A failed run leaves no partial output and an existing file keeps its
content.

Problems with a file raise :class:`~numpyrnn.errors.LayoutError` whose message
starts with the file's name.
"""

from __future__ import annotations

import json
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
    "FORMATS",
    "guess_format",
    "read_npy",
    "read_npz",
    "read_blocks",
    "read_state_dict",
    "read_keras",
    "read_onnx",
    "read_msgpack",
    "flax_layers",
    "tf1_structure",
    "tf1_arrays",
    "keras_arrays",
    "atomic_write",
    "write_npz",
    "write_state_dict",
    "write_onnx",
    "write_msgpack",
    "listing",
]

#: The formats ``numpyrnn convert --from`` and ``numpyrnn export --to`` know.
FORMATS = ("blocks", "keras", "onnx", "flax", "tf1")

#: Keys of the block layout, in the order :func:`numpyrnn.to_numpy` returns them.
BLOCK_KEYS = ("w0", "w", "b0", "b", "proj")

_FLOAT_NAMES = {"float16", "float32", "float64", "bfloat16"}


def _fail(path: Any, message: str) -> LayoutError:
    return LayoutError(f"{Path(path).name}: {message}")


def guess_format(path: str | os.PathLike) -> str | None:
    """The ``--from`` format a file name implies, or ``None``.

    ``.npz`` files and folders mean ``blocks`` (a TF1 ``.npz`` must be named
    explicitly), ``.onnx`` means ``onnx``, ``.keras``/``.h5`` mean ``keras`` and
    ``.msgpack`` means ``flax``.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir() or suffix in (".npz", ".npy"):
        return "blocks"
    return {".onnx": "onnx", ".keras": "keras", ".h5": "keras", ".msgpack": "flax"}.get(suffix)


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
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise _fail(path, f"not a readable .npz archive ({_one_line(exc)})") from None
    out: dict[str, np.ndarray] = {}
    mapped: Any = None
    size = path.stat().st_size
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
                    start = _stored_at(zf, info, size) if mmap and math.prod(shape) > 0 else None
                    if start is None:
                        data = fp.read(math.prod(shape) * dtype.itemsize)
                if start is not None:
                    if mapped is None:
                        import mmap as mmap_module

                        with open(path, "rb") as f:
                            mapped = mmap_module.mmap(f.fileno(), 0, access=mmap_module.ACCESS_READ)
                    arr = np.frombuffer(mapped, dtype=dtype, count=math.prod(shape), offset=start + header)
                else:
                    arr = np.frombuffer(data, dtype=dtype)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                if isinstance(exc, LayoutError):
                    raise
                raise LayoutError(f"{where}: cannot be read ({_one_line(exc)}); the archive is corrupted") from None
            out[key] = arr.reshape(shape, order="F" if fortran else "C")
    return out


def read_blocks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Block-layout arrays from an ``.npz`` or from a folder of ``.npy`` files.

    Keys are ``w0``, ``w``, ``b0``, ``b`` and ``proj``; ``w0`` is required. A
    folder's ``.npy`` files are memory-mapped.

    Raises:
        LayoutError: a missing ``w0``, an unknown key, or a bad file.
    """
    path = Path(path)
    if path.is_dir():
        found = {p.stem: p for p in sorted(path.glob("*.npy"))}
        unknown = [k for k in found if k not in BLOCK_KEYS]
        if unknown:
            raise _fail(path, f"unexpected file(s) {', '.join(k + '.npy' for k in unknown)}; "
                              f"the block layout uses {', '.join(k + '.npy' for k in BLOCK_KEYS)}")
        arrays = {k: read_npy(p) for k, p in found.items()}
    else:
        if path.suffix.lower() != ".npz":
            raise _fail(path, f"the block layout reads an .npz or a folder of .npy files, got a {path.suffix or 'suffix-less'} "
                              f"file; a single .npy holds one array: put w0.npy (and w.npy, b0.npy, ...) in a folder")
        arrays = read_npz(path)
        unknown = [k for k in arrays if k not in BLOCK_KEYS]
        if unknown:
            raise _fail(path, f"unexpected key(s) {', '.join(map(repr, unknown))}; the block layout uses "
                              f"{', '.join(map(repr, BLOCK_KEYS))} (TF1 variable names need --from tf1)")
    if "w0" not in arrays:
        raise _fail(path, f"no 'w0'; the block layout needs w0 of shape (directions, hidden, G*(input+hidden)), "
                          f"found {', '.join(map(repr, arrays)) or 'nothing'}")
    return arrays


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
            raise _fail(path, "reading .safetensors needs the safetensors package: pip install 'numpyrnn[files]'") from None
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
            raise _fail(path, "writing .safetensors needs the safetensors package: pip install 'numpyrnn[files]'") from None
        return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=dict(metadata or {})))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            torch.save(tensors, f)

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
# Keras
# --------------------------------------------------------------------------------------

_KERAS_RNN = {"GRU", "LSTM", "SimpleRNN"}
_KERAS_NPZ_KEY = re.compile(r"^layer_(\d+)_(\d+)$")


def keras_arrays(layers: list) -> dict[str, np.ndarray]:
    """``to_keras()``'s lists as flat ``.npz`` keys: ``layer_{k}_{j}`` is ``layers[k][j]``."""
    return {f"layer_{k}_{j}": np.asarray(a) for k, ws in enumerate(layers) for j, a in enumerate(ws)}


def read_keras(path: str | os.PathLike) -> tuple[list[list[np.ndarray]], dict]:
    """Recurrent layers' weights from ``.keras``, ``.weights.h5`` or a ``layer_{k}_{j}`` ``.npz``.

    The ``.keras`` archive's ``config.json`` gives the layer order and settings;
    its ``model.weights.h5`` is read with ``h5py`` (Keras is not needed). A bare
    ``.weights.h5`` does not record the layer order, so it must hold one
    recurrent layer.

    Returns:
        ``(layers, info)``: one ``get_weights()``-style list per recurrent layer,
        bottom first (6 arrays for a ``Bidirectional``), and ``info`` with
        ``"names"`` and ``"activation"`` (``"relu"`` or ``"tanh"``).

    Raises:
        LayoutError: no recurrent layer, settings ``torch.nn`` cannot represent
            (``recurrent_activation``, ``go_backwards``, merge modes), an
            ambiguous layer order, or a bad file.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = read_npz(path)
        table: dict[int, dict[int, np.ndarray]] = {}
        for key, arr in arrays.items():
            m = _KERAS_NPZ_KEY.match(key)
            if not m:
                raise _fail(path, f"unexpected key {key!r}; a Keras .npz holds layer_<k>_<j> = layer k's get_weights()[j]")
            table.setdefault(int(m.group(1)), {})[int(m.group(2))] = arr
        if not table or sorted(table) != list(range(len(table))):
            raise _fail(path, f"layer numbers must run 0..N-1, got {sorted(table)}")
        layers = [[t[j] for j in sorted(t)] for _, t in sorted(table.items())]
        return layers, {"names": [f"layer_{k}" for k in range(len(layers))], "activation": None}
    try:
        import h5py
    except ImportError:
        raise _fail(path, "reading Keras files needs h5py: pip install h5py") from None
    config = None
    if suffix == ".keras":
        try:
            zf = zipfile.ZipFile(path)
            with zf:
                names = zf.namelist()
                if "model.weights.h5" not in names:
                    raise _fail(path, f"a .keras archive holds model.weights.h5, this one holds {names}")
                config = json.loads(zf.read("config.json")) if "config.json" in names else None
                blob = zf.read("model.weights.h5")
        except (zipfile.BadZipFile, OSError, json.JSONDecodeError, EOFError) as exc:
            raise _fail(path, f"not a readable .keras archive ({_one_line(exc)})") from None
        import io

        h5src: Any = io.BytesIO(blob)
        size = len(blob)
    else:
        h5src = str(path)
        size = path.stat().st_size
    try:
        with h5py.File(h5src, "r") as f:
            return _keras_from_h5(path, f, config, size)
    except OSError as exc:
        raise _fail(path, f"not a readable HDF5 file ({_one_line(exc)})") from None


def _h5_vars(path: Path, group: Any, where: str, size: int) -> list[np.ndarray]:
    vars_ = group.get("cell/vars")
    if vars_ is None:
        raise _fail(path, f"{where}: no cell/vars group; not a Keras 3 recurrent layer")
    out = []
    for j in sorted(vars_.keys(), key=int):
        ds = vars_[j]
        if ds.dtype.kind != "f":
            raise _fail(path, f"{where}/cell/vars/{j}: dtype {ds.dtype} cannot hold weights")
        nbytes = math.prod(ds.shape) * ds.dtype.itemsize
        if ds.compression is None and nbytes > size:
            raise _fail(path, f"{where}/cell/vars/{j}: declares shape {ds.shape} ({nbytes} bytes), "
                              f"more than the file's {size} bytes: corrupted")
        out.append(np.asarray(ds[()]))
    return out


def _is_rnn_group(g: Any) -> bool:
    return "cell" in g or ("forward_layer" in g and "backward_layer" in g)


def _keras_from_h5(path: Path, f: Any, config: dict | None, size: int) -> tuple[list[list[np.ndarray]], dict]:
    layers_group = f.get("layers")
    if layers_group is None:
        raise _fail(path, "no 'layers' group: not a Keras 3 weights file")
    activation = None
    if config is not None:
        entries = [e for e in config.get("config", {}).get("layers", []) if isinstance(e, dict)]
        groups = _keras_group_names(entries)
        rnn = [(e, g) for e, g in zip(entries, groups) if e.get("class_name") in _KERAS_RNN | {"Bidirectional"}]
        names = [e.get("config", {}).get("name", g) for e, g in rnn]
        groups = [g for _, g in rnn]
        acts = {_keras_check(path, e) for e, _ in rnn}
        if len(acts) > 1:
            raise _fail(path, f"the recurrent layers mix activations {sorted(acts)}; nn.RNN has one nonlinearity")
        activation = acts.pop() if acts else None
    else:
        found = [n for n in layers_group if _is_rnn_group(layers_group[n])]
        kinds = sorted({re.sub(r"_\d+$", "", n) for n in found})
        if len(kinds) > 1:
            raise _fail(path, f"holds recurrent layers of {len(kinds)} kinds ({', '.join(sorted(found))}) and a "
                              f".weights.h5 file does not record their order; convert the .keras file of the model instead")
        # Keras names the groups gru, gru_1, gru_2, ... in the order of model.layers
        names = groups = sorted(found, key=lambda n: int(m.group(1)) if (m := re.search(r"_(\d+)$", n)) else 0)
    if not names:
        raise _fail(path, "holds no GRU, LSTM, SimpleRNN or Bidirectional layer")
    layers = []
    for name, group in zip(names, groups):
        g = layers_group.get(group)
        if g is None:
            raise _fail(path, f"layer {name!r} of config.json has no weights (group layers/{group}) in model.weights.h5")
        if "forward_layer" in g:
            layers.append(_h5_vars(path, g["forward_layer"], f"layers/{group}/forward_layer", size)
                          + _h5_vars(path, g["backward_layer"], f"layers/{group}/backward_layer", size))
        else:
            layers.append(_h5_vars(path, g, f"layers/{group}", size))
    return layers, {"names": names, "activation": activation}


def _keras_group_names(entries: list[dict]) -> list[str]:
    """The h5 group of each layer: Keras names them by class, not by layer name.

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


def _keras_check(path: Path, entry: dict) -> str:
    """Refuse Keras settings that ``torch.nn`` computes differently; return the activation."""
    cfg = entry.get("config", {})
    name = cfg.get("name", "?")
    if entry.get("class_name") == "Bidirectional":
        mode = cfg.get("merge_mode", "concat")
        if mode != "concat":
            raise _fail(path, f"layer {name!r}: Bidirectional merge_mode={mode!r}; torch concatenates "
                              f"[forward, backward], so only merge_mode='concat' converts")
        inner = cfg.get("layer", {})
        return _keras_check(path, {"class_name": inner.get("class_name"), "config": {**inner.get("config", {}), "name": name, "go_backwards": False}})
    act = cfg.get("activation", "tanh")
    rec = cfg.get("recurrent_activation", "sigmoid")
    cls = entry.get("class_name")
    if cls == "SimpleRNN":
        if act not in ("tanh", "relu"):
            raise _fail(path, f"layer {name!r}: activation={act!r}; nn.RNN supports 'tanh' and 'relu' only")
    elif act != "tanh":
        raise _fail(path, f"layer {name!r}: activation={act!r}; nn.{cls} uses tanh")
    if cls in ("GRU", "LSTM") and rec != "sigmoid":
        raise _fail(path, f"layer {name!r}: recurrent_activation={rec!r}; nn.{cls} uses sigmoid "
                          f"(old Keras defaulted to 'hard_sigmoid', which torch cannot compute)")
    if cfg.get("go_backwards"):
        raise _fail(path, f"layer {name!r}: go_backwards=True returns a time-reversed sequence, which a torch "
                          f"module does not; flip the input yourself, or wrap the layer in Bidirectional")
    return act


# --------------------------------------------------------------------------------------
# ONNX
# --------------------------------------------------------------------------------------

def read_onnx(path: str | os.PathLike) -> Any:
    """An ``onnx.ModelProto``, without loading external data.

    Raises:
        LayoutError: the onnx package is missing, the file is not a model, or
            tensors live in external files.
    """
    path = Path(path)
    try:
        import onnx
    except ImportError:
        raise _fail(path, "reading .onnx needs the onnx package: pip install onnx") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError and friends
        raise _fail(path, f"not a readable ONNX model ({_one_line(exc)})") from None
    if not model.graph.node:
        raise _fail(path, "not an ONNX model with a graph (no nodes; the file may be corrupted)")
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise _fail(path, f"initializer {t.name!r} keeps its data in an external file; numpyrnn reads "
                              f"self-contained models only: save with onnx.save(model, path, save_as_external_data=False)")
    return model


_ONNX_OPS = {"GRU": "GRU", "LSTM": "LSTM", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}


def write_onnx(path: str | os.PathLike, layers: list[Mapping[str, np.ndarray]], *, mode: str,
               opset: int = 14) -> int:
    """A runnable ONNX model from ``to_onnx()``'s per-layer ``{"W", "R", "B"}`` dicts.

    The graph takes ``X`` of shape ``(T, N, I)`` and returns ``Y`` of shape
    ``(T, N, D*H)`` as a torch module does (seq-major): one ONNX node per
    layer, each output transposed and reshaped to feed the next.

    Returns:
        The number of bytes written.
    """
    import onnx
    from onnx import helper, numpy_helper

    first = layers[0]
    dtype = np.asarray(first["W"]).dtype
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    D, _, I = (int(n) for n in np.asarray(first["W"]).shape)
    H = int(np.asarray(first["R"]).shape[-1])
    op = _ONNX_OPS[mode]
    nodes, inits = [], [numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), "flat_shape")]
    x = "X"
    for k, layer in enumerate(layers):
        names = []
        for key in ("W", "R", "B"):
            if layer.get(key) is None:
                names.append("")
                continue
            inits.append(numpy_helper.from_array(np.ascontiguousarray(layer[key]), f"{key}_{k}"))
            names.append(f"{key}_{k}")
        while names and names[-1] == "":
            names.pop()
        attrs: dict[str, Any] = dict(hidden_size=H, direction="bidirectional" if D == 2 else "forward")
        if op == "GRU":
            attrs["linear_before_reset"] = 1
        if mode == "RNN_RELU":
            attrs["activations"] = ["Relu"] * D
        nodes.append(helper.make_node(op, [x, *names], [f"Y4_{k}"], name=f"{op.lower()}_{k}", **attrs))
        nodes.append(helper.make_node("Transpose", [f"Y4_{k}"], [f"Yt_{k}"], perm=[0, 2, 1, 3]))
        x = "Y" if k == len(layers) - 1 else f"Y_{k}"
        nodes.append(helper.make_node("Reshape", [f"Yt_{k}", "flat_shape"], [x]))
    graph = helper.make_graph(
        nodes, "numpyrnn",
        [helper.make_tensor_value_info("X", elem, ["T", "N", I])],
        [helper.make_tensor_value_info("Y", elem, ["T", "N", D * H])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="numpyrnn")
    onnx.checker.check_model(model)
    return atomic_write(path, lambda tmp: onnx.save(model, tmp))


# --------------------------------------------------------------------------------------
# Flax msgpack
# --------------------------------------------------------------------------------------

def _msgpack() -> Any:
    try:
        import msgpack
    except ImportError:
        raise LayoutError("reading or writing Flax .msgpack files needs msgpack: pip install msgpack") from None
    return msgpack


def _decode_array(data: bytes, where: str) -> np.ndarray:
    msgpack = _msgpack()
    try:
        shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
        name = dtype_name.decode() if isinstance(dtype_name, bytes) else str(dtype_name)
        shape = tuple(int(n) for n in shape)
    except Exception as exc:  # noqa: BLE001 - any malformed record
        raise LayoutError(f"{where}: malformed array record ({_one_line(exc)})") from None
    if name not in _FLOAT_NAMES and not re.fullmatch(r"u?int(8|16|32|64)|bool", name):
        raise LayoutError(f"{where}: array dtype {name!r} is not a plain numeric type; refused")
    if name == "bfloat16":
        dtype = np.dtype(np.uint16)
    else:
        dtype = np.dtype(name)
    if math.prod(shape) * dtype.itemsize != len(buffer):
        raise LayoutError(f"{where}: array record declares shape {shape} of {name} "
                          f"({math.prod(shape) * dtype.itemsize} bytes) but holds {len(buffer)} bytes: corrupted")
    arr = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    if name == "bfloat16":  # keep the values: widen to float32 exactly
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def read_msgpack(path: str | os.PathLike) -> dict:
    """A Flax ``msgpack`` checkpoint (``flax.serialization.to_bytes``) as a nested dict of arrays.

    Decoded with ``msgpack`` directly: Flax and jax are not imported. Chunked
    large arrays are joined back.

    Raises:
        LayoutError: the file is not such a checkpoint, or an array record is bad.
    """
    path = Path(path)
    msgpack = _msgpack()

    def ext_hook(code: int, data: bytes) -> Any:
        if code in (1, 3):  # ndarray, numpy scalar
            return _decode_array(data, path.name)
        raise LayoutError(f"{path.name}: unsupported msgpack extension type {code}")

    try:
        tree = msgpack.unpackb(path.read_bytes(), ext_hook=ext_hook, raw=False, strict_map_key=False)
    except LayoutError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises several unrelated types
        raise _fail(path, f"not a readable Flax msgpack checkpoint ({_one_line(exc)})") from None
    if not isinstance(tree, dict):
        raise _fail(path, f"expected a tree of parameters, got {type(tree).__name__}")
    return _unchunk(tree, path)


def _unchunk(node: Any, path: Path) -> Any:
    if isinstance(node, dict):
        if node.get("__msgpack_chunked_array__"):
            try:
                shape = tuple(int(node["shape"][str(i)]) for i in range(len(node["shape"])))
                chunks = [node["chunks"][str(i)] for i in range(len(node["chunks"]))]
                flat = np.concatenate(chunks) if chunks else np.zeros(0)
                return flat.reshape(shape)
            except (KeyError, ValueError, TypeError) as exc:
                raise _fail(path, f"malformed chunked array ({_one_line(exc)})") from None
        return {str(k): _unchunk(v, path) for k, v in node.items()}
    return node


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


_CELL_KEYS = ({"ir", "iz", "in", "hr", "hz", "hn"}, {"ii", "if", "ig", "io", "hi", "hf", "hg", "ho"}, {"i", "h"})


def _is_flax_layer(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    keys = set(node)
    return "cell" in keys or {"forward_rnn", "backward_rnn"} <= keys or any(keys == c for c in _CELL_KEYS)


def flax_layers(tree: dict) -> list:
    """The recurrent layers of a Flax param tree, bottom first.

    Accepts one cell/``nn.RNN``/``nn.Bidirectional`` tree, flax's form of a list
    (``{"0": ..., "1": ...}``), an optional ``"params"`` wrapper, or a model tree
    whose layers are submodules (ordered by their names' numbers, e.g.
    ``RNN_0``, ``RNN_1``).

    Raises:
        LayoutError: no recurrent layer is found.
    """
    if set(tree) == {"params"} and isinstance(tree["params"], dict):
        tree = tree["params"]
    if _is_flax_layer(tree):
        return [tree]
    found: list = []

    def walk(node: dict) -> None:
        for key in sorted(node, key=_natural):
            v = node[key]
            if _is_flax_layer(v):
                found.append(v)
            elif isinstance(v, dict):
                walk(v)

    walk(tree)
    if not found:
        raise LayoutError(
            "no recurrent layer found: expected cell params (GRUCell ir/iz/in/hr/hz/hn, LSTMCell ii/if/ig/io/hi/hf/hg/ho, "
            f"SimpleCell i/h), {{'cell': ...}} from nn.RNN or {{'forward_rnn', 'backward_rnn'}}; top-level keys: {sorted(tree)}"
        )
    return found


def write_msgpack(path: str | os.PathLike, tree: Any) -> int:
    """Write a tree of arrays as ``flax.serialization.to_bytes`` would (lists become ``{"0": ...}``).

    Returns:
        The number of bytes written.
    """
    msgpack = _msgpack()

    def norm(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {str(k): norm(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return {str(i): norm(v) for i, v in enumerate(node)}
        arr = np.ascontiguousarray(node)
        record = msgpack.packb((arr.shape, arr.dtype.name, arr.tobytes("C")), use_bin_type=True)
        return msgpack.ExtType(1, record)

    data = msgpack.packb(norm(tree), use_bin_type=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


# --------------------------------------------------------------------------------------
# TF1 variable names
# --------------------------------------------------------------------------------------

#: Variable names inside a TF1 cell's scope, longest first (so "gates/kernel" wins over "kernel").
_TF1_LEAVES = tuple(sorted((
    "kernel", "bias", "projection/kernel", "w_i_diag", "w_f_diag", "w_o_diag",
    "gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias",
    "candidate/input_projection/kernel", "candidate/input_projection/bias",
    "candidate/hidden_projection/kernel", "candidate/hidden_projection/bias",
), key=len, reverse=True))

#: The cell scope ``numpyrnn export --to tf1`` writes for each mode.
_TF1_SCOPES = {"LSTM": "lstm_cell", "GRU": "cudnn_compatible_gru_cell", "RNN_TANH": "basic_rnn_cell",
               "RNN_RELU": "basic_rnn_cell"}


def tf1_structure(arrays: Mapping[str, np.ndarray], *, where: str = "tf1") -> tuple[Any, list[str]]:
    """Group TF1 variables (``.../cell_0/lstm_cell/kernel``) into what ``from_tf1`` takes.

    Variables are grouped by the cell scope their names share; what a cell
    may hold (and what is refused, such as peepholes) is the TF1 layout's to
    judge.

    The layer is the ``cell_<k>`` path component (else the order of the names),
    the direction a ``fw``/``bw`` component. Other variables (optimizer slots,
    ``global_step``) are ignored and returned.

    Returns:
        ``(source, ignored)``: one mapping (one layer) or a list of mappings,
        bottom first, each ``{"kernel", "bias"[, "projection/kernel"]}`` or
        ``{"fw": ..., "bw": ...}``; and the names that were ignored.

    Raises:
        LayoutError: no TF1 cell variables, or two groups for one layer.
    """
    groups: dict[str, dict[str, np.ndarray]] = {}
    ignored = []
    for name, arr in arrays.items():
        for leaf in _TF1_LEAVES:
            if name == leaf or name.endswith("/" + leaf):
                groups.setdefault(name[: len(name) - len(leaf)].rstrip("/"), {})[leaf] = arr
                break
        else:
            ignored.append(name)
    if not groups:
        raise LayoutError(f"{where}: no TF1 cell variables (names ending in /kernel and /bias) among "
                          f"{', '.join(list(arrays)[:6]) or 'no arrays'}")
    layers: dict[int, dict[str, dict]] = {}
    counters: dict[str, int] = {}
    for prefix in sorted(groups, key=_natural):
        parts = prefix.split("/")
        cells = [int(m.group(1)) for p in parts if (m := re.fullmatch(r"cell_(\d+)", p))]
        direction = "bw" if "bw" in parts else ("fw" if "fw" in parts else "")
        if cells:
            layer = cells[-1]
        else:
            layer = counters.get(direction, 0)
            counters[direction] = layer + 1
        slot = layers.setdefault(layer, {})
        if direction in slot:
            raise LayoutError(f"{where}: two variable groups for layer {layer}{' ' + direction if direction else ''}: "
                              f"{slot[direction]['_prefix']!r} and {prefix!r}")
        slot[direction] = {**groups[prefix], "_prefix": prefix}
    if sorted(layers) != list(range(len(layers))):
        raise LayoutError(f"{where}: layer numbers must run 0..N-1, got cell_{sorted(layers)}")
    out = []
    for k in sorted(layers):
        slot = {d: {kk: v for kk, v in g.items() if kk != "_prefix"} for d, g in layers[k].items()}
        if set(slot) == {""}:
            out.append(slot[""])
        elif set(slot) == {"fw", "bw"}:
            out.append(slot)
        else:
            raise LayoutError(f"{where}: layer {k} has directions {sorted(slot)}; expected one unnamed or both fw and bw")
    return (out[0] if len(out) == 1 else out), ignored


def tf1_arrays(layers: list, mode: str = "LSTM") -> dict[str, np.ndarray]:
    """``to_tf1()``'s per-layer mappings as TF1 variable names.

    One unidirectional layer: ``rnn/<cell>/kernel``; a stack:
    ``rnn/multi_rnn_cell/cell_<k>/<cell>/...``; bidirectional:
    ``stack_bidirectional_rnn/cell_<k>/bidirectional_rnn/{fw,bw}/<cell>/...``, where
    ``<cell>`` is ``lstm_cell``, ``cudnn_compatible_gru_cell`` or ``basic_rnn_cell``.
    """
    scope = _TF1_SCOPES[mode]
    out: dict[str, np.ndarray] = {}
    for k, layer in enumerate(layers):
        if "fw" in layer:
            for d in ("fw", "bw"):
                for leaf, arr in layer[d].items():
                    out[f"stack_bidirectional_rnn/cell_{k}/bidirectional_rnn/{d}/{scope}/{leaf}"] = np.asarray(arr)
        else:
            base = f"rnn/{scope}" if len(layers) == 1 else f"rnn/multi_rnn_cell/cell_{k}/{scope}"
            for leaf, arr in layer.items():
                out[f"{base}/{leaf}"] = np.asarray(arr)
    return out


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

