r"""TensorFlow checkpoints (TF1 ``Saver``, TF2 ``tf.train.Checkpoint``, SavedModel variables), read without TensorFlow.

Two parts: a reader of the TensorBundle files (names -> arrays), and the mapping
of the variable names it finds to numpyrnn modules (see the TF checkpoints page
of the documentation for every scope that is recognised and what is refused).

**The files.** A checkpoint ``model.ckpt`` is an index file ``model.ckpt.index`` and data shards
``model.ckpt.data-00000-of-00001`` ... The index is a LevelDB-style sorted string
table (blocks of prefix-compressed key/value entries, an index block and a
48-byte footer ending in a magic number). Its values are protocol buffers:

- key ``""``: ``BundleHeaderProto`` ``{1: num_shards, 2: endianness, 3: version}``;
- every other key is a tensor name and holds ``BundleEntryProto``
  ``{1: dtype, 2: shape, 3: shard_id, 4: offset, 5: size, 6: crc32c, 7: slices}``,
  ``shape`` being ``TensorShapeProto`` ``{2: dim {1: size}, 3: unknown_rank}``.

Nothing here runs generated protobuf code: the few fields above are decoded by
hand from their varints, every length is checked against what is left of the
buffer, every tensor's byte range against its shard's size, and the stored
masked CRC32C of each block and each tensor against the bytes read. Only
numeric tensors are read; strings (the TF2 object graph), resources and
variants are listed as skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import LayoutError
from ..safeio import open_regular, regular_file

__all__ = ["BundleEntry", "Bundle", "open_bundle", "crc32c", "checkpoint_prefix", "read_checkpoint",
           "scan", "read", "load_all_from_checkpoint", "sniff", "FORMAT"]

#: The footer's magic number (LevelDB's table magic, as TensorFlow's table writes it).
TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48

#: TensorFlow ``DataType`` enum -> numpy dtype, for the numeric types read here.
DTYPES: dict[int, str] = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 9: "int64", 10: "bool",
    14: "bfloat16", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64",
}
#: Types that are never read, by name, for messages.
OTHER_DTYPES: dict[int, str] = {
    7: "string", 8: "complex64", 11: "qint8", 12: "quint8", 13: "qint32", 15: "qint16", 16: "quint16",
    18: "complex128", 20: "resource", 21: "variant",
}
_ITEMSIZE = {"bfloat16": 2}


# --------------------------------------------------------------------------------------
# CRC32C (Castagnoli), vectorised over lanes with numpy
# --------------------------------------------------------------------------------------

def _table() -> np.ndarray:
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(0x82F63B78), t >> 1).astype(np.uint32)
    return t


_T = _table()
_TL = [int(v) for v in _T]


def _apply(op: list[int], x: int) -> int:
    out, b = 0, 0
    while x:
        if x & 1:
            out ^= op[b]
        x >>= 1
        b += 1
    return out


def _zeros_op(n: int) -> list[int]:
    """The linear map 'run the CRC register over ``n`` zero bytes', as the images of the 32 bits."""
    one = [_TL[(1 << b) & 0xFF] ^ ((1 << b) >> 8) for b in range(32)]
    result = [1 << b for b in range(32)]
    while n:
        if n & 1:
            result = [_apply(one, v) for v in result]
        one = [_apply(one, v) for v in one]
        n >>= 1
    return result


def _raw(data: np.ndarray) -> int:
    """The CRC register after ``data`` from state 0 (no pre/post inversion)."""
    n = int(data.size)
    if n == 0:
        return 0
    lanes = min(4096, n)
    width = -(-n // lanes)
    padded = np.zeros(lanes * width, np.uint8)
    padded[lanes * width - n:] = data  # leading zeros do not move a zero register
    cols = padded.reshape(lanes, width).T.copy()
    state = np.zeros(lanes, np.uint32)
    for j in range(width):
        state = _T[(state ^ cols[j]) & 0xFF] ^ (state >> np.uint32(8))
    if lanes == 1:
        return int(state[0])
    op = _zeros_op(width)
    tabs = [[_apply(op, v << (8 * k)) for v in range(256)] for k in range(4)]
    total = 0
    for s in state.tolist():
        total = (tabs[0][total & 0xFF] ^ tabs[1][(total >> 8) & 0xFF] ^ tabs[2][(total >> 16) & 0xFF]
                 ^ tabs[3][total >> 24]) ^ s
    return total


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """CRC32C of ``data`` (the checksum TensorFlow stores, before masking)."""
    arr = np.frombuffer(memoryview(data).cast("B"), np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).ravel()
    n = int(arr.size)
    return (_apply(_zeros_op(n), 0xFFFFFFFF) ^ _raw(arr) ^ 0xFFFFFFFF) & 0xFFFFFFFF


def masked(crc: int) -> int:
    """TensorFlow's (and LevelDB's) masked CRC as stored in files."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------
# protobuf wire format, by hand
# --------------------------------------------------------------------------------------

def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    value, shift = 0, 0
    for _ in range(10):
        if pos >= len(buf):
            raise LayoutError(f"{where}: truncated varint at byte {pos} of {len(buf)}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise LayoutError(f"{where}: varint longer than 10 bytes at byte {pos - 10}")


def _fields(buf: bytes, where: str) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)``: an int for varint/fixed, bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, where)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise LayoutError(f"{where}: field number 0 at byte {pos}; not a protocol buffer")
        if wire == 0:
            value, pos = _varint(buf, pos, where)
            yield field, wire, value
        elif wire == 1 or wire == 5:
            n = 8 if wire == 1 else 4
            if pos + n > len(buf):
                raise LayoutError(f"{where}: field {field}: {n}-byte value runs past the end ({len(buf)} bytes)")
            yield field, wire, int.from_bytes(buf[pos:pos + n], "little")
            pos += n
        elif wire == 2:
            n, pos = _varint(buf, pos, where)
            if pos + n > len(buf):
                raise LayoutError(f"{where}: field {field}: length {n} runs past the end ({len(buf) - pos} bytes left)")
            yield field, wire, bytes(buf[pos:pos + n])
            pos += n
        else:
            raise LayoutError(f"{where}: field {field} has wire type {wire}, which protocol buffers 3 do not write")


def _int(v: int | bytes, where: str, field: str) -> int:
    if not isinstance(v, int):
        raise LayoutError(f"{where}: {field} is length-delimited; expected a number")
    return v


@dataclass(frozen=True)
class BundleEntry:
    """One tensor of a bundle, as its index records it."""

    name: str
    dtype: int          # TensorFlow DataType enum
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int | None     # masked CRC32C, when stored
    sliced: bool

    @property
    def dtype_name(self) -> str:
        return DTYPES.get(self.dtype) or OTHER_DTYPES.get(self.dtype) or f"DataType {self.dtype}"

    @property
    def numeric(self) -> bool:
        return self.dtype in DTYPES and not self.sliced


def _entry(name: str, buf: bytes, where: str) -> BundleEntry:
    dtype = shard = offset = size = 0
    crc: int | None = None
    shape: list[int] = []
    sliced = False
    for field, _, value in _fields(buf, where):
        if field == 1:
            dtype = _int(value, where, "dtype")
        elif field == 2:
            if not isinstance(value, bytes):
                raise LayoutError(f"{where}: shape is not a message")
            for f2, _, v2 in _fields(value, where + " shape"):
                if f2 == 3 and v2:
                    raise LayoutError(f"{where}: the tensor's shape has unknown rank")
                if f2 == 2:
                    if not isinstance(v2, bytes):
                        raise LayoutError(f"{where}: a shape dim is not a message")
                    dim = 0
                    for f3, _, v3 in _fields(v2, where + " dim"):
                        if f3 == 1:
                            dim = _int(v3, where, "dim size")
                    if dim >= 1 << 63:
                        raise LayoutError(f"{where}: a dimension is negative ({dim - (1 << 64)})")
                    shape.append(dim)
        elif field == 3:
            shard = _int(value, where, "shard_id")
        elif field == 4:
            offset = _int(value, where, "offset")
        elif field == 5:
            size = _int(value, where, "size")
        elif field == 6:
            crc = _int(value, where, "crc32c")
        elif field == 7:
            sliced = True
    if len(shape) > 32:
        raise LayoutError(f"{where}: {len(shape)} dimensions; TensorFlow allows at most 32")
    return BundleEntry(name, dtype, tuple(shape), shard, offset, size, crc, sliced)


# --------------------------------------------------------------------------------------
# the sorted string table
# --------------------------------------------------------------------------------------

def _block(data: bytes, offset: int, size: int, where: str) -> list[tuple[bytes, bytes]]:
    """The entries of one table block, its trailer's type and CRC checked."""
    end = offset + size
    if offset < 0 or size < 4 or end + 5 > len(data):
        raise LayoutError(f"{where}: block at {offset} of {size} bytes (+5 trailer) lies outside the {len(data)}-byte index")
    contents, kind = data[offset:end], data[end]
    stored = int.from_bytes(data[end + 1:end + 5], "little")
    if masked(crc32c(data[offset:end + 1])) != stored:
        raise LayoutError(f"{where}: block at byte {offset}: CRC32C does not match; the index is corrupt")
    if kind != 0:
        raise LayoutError(f"{where}: block at byte {offset} is compressed (type {kind}); TensorFlow writes bundle indexes uncompressed")
    restarts = int.from_bytes(contents[-4:], "little")
    limit = len(contents) - 4 - 4 * restarts
    if restarts < 1 or limit < 0:
        raise LayoutError(f"{where}: block at byte {offset}: {restarts} restart points do not fit its {size} bytes")
    out: list[tuple[bytes, bytes]] = []
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(contents, pos, where)
        fresh, pos = _varint(contents, pos, where)
        vlen, pos = _varint(contents, pos, where)
        if shared > len(key) or pos + fresh + vlen > limit:
            raise LayoutError(f"{where}: block at byte {offset}: entry at {pos} runs past the block or shares more than the previous key")
        key = key[:shared] + contents[pos:pos + fresh]
        pos += fresh
        out.append((key, contents[pos:pos + vlen]))
        pos += vlen
    return out


def _table_entries(data: bytes, where: str) -> list[tuple[bytes, bytes]]:
    if len(data) < FOOTER_SIZE:
        raise LayoutError(f"{where}: {len(data)} bytes, shorter than a table footer ({FOOTER_SIZE}); not a TensorFlow checkpoint index")
    footer = data[-FOOTER_SIZE:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise LayoutError(f"{where}: no table magic number at the end; not a TensorFlow checkpoint index")
    pos = 0
    moff, pos = _varint(footer, pos, where + " footer")
    msize, pos = _varint(footer, pos, where + " footer")
    ioff, pos = _varint(footer, pos, where + " footer")
    isize, pos = _varint(footer, pos, where + " footer")
    if pos > FOOTER_SIZE - 8 or any(footer[pos:-8]):
        raise LayoutError(f"{where}: the footer's padding is not zero; the index is corrupt")
    body = data[:-FOOTER_SIZE]
    _block(body, moff, msize, where + " metaindex block")  # unused, but checked like the others
    entries: list[tuple[bytes, bytes]] = []
    for _, handle in _block(body, ioff, isize, where + " index block"):
        boff, p = _varint(handle, 0, where + " block handle")
        bsize, _ = _varint(handle, p, where + " block handle")
        entries.extend(_block(body, boff, bsize, where))
    for (a, _), (b, _) in zip(entries, entries[1:]):
        if not a < b:
            raise LayoutError(f"{where}: keys out of order or repeated ({a!r}, {b!r}); the index is corrupt")
    return entries


# --------------------------------------------------------------------------------------
# a bundle
# --------------------------------------------------------------------------------------

def checkpoint_prefix(path: str | os.PathLike) -> Path:
    """The checkpoint prefix for a path given as the prefix, its ``.index``, a ``.data-*`` shard,
    a directory holding a ``checkpoint`` file, or a SavedModel directory."""
    p = Path(path)
    if p.is_dir():
        if (p / "variables" / "variables.index").is_file():
            return p / "variables" / "variables"
        state = p / "checkpoint"
        if state.is_file():
            with open_regular(state, str(state)) as fp:
                text = fp.read(1 << 20).decode("utf-8", "replace")
            m = re.search(r'^model_checkpoint_path:\s*"([^"\n]+)"', text, re.M)
            if m:
                return _inside(p, Path(m.group(1)), state)
        found = sorted(p.glob("*.index"))
        if len(found) == 1:
            return found[0].with_suffix("")
        raise LayoutError(f"{p}: a directory without a 'checkpoint' file, a SavedModel 'variables/' folder or a single "
                          f"*.index file ({len(found)} found); pass the checkpoint prefix, e.g. model.ckpt")
    if p.suffix == ".index":
        return p.with_suffix("")
    m = re.fullmatch(r"(.*)\.data-\d{5}-of-\d{5}", p.name)
    if m:
        return p.with_name(m.group(1))
    return p


class _Outside(LayoutError):
    """A folder's ``checkpoint`` file names a checkpoint outside the folder."""


def _inside(folder: Path, named: Path, state: Path) -> Path:
    """The prefix a ``checkpoint`` file names, which must lie in its own folder.

    An absolute name that points elsewhere (TF1 savers record absolute paths) is
    taken by its file name in this folder when the checkpoint is there; anything
    else is refused, so that a folder cannot make numpyrnn read other files.
    """
    target = named if named.is_absolute() else folder / named
    base = folder.resolve()
    if base == target.resolve().parent or base in target.resolve().parents:
        return target
    here = folder / named.name
    if named.is_absolute() and here.with_name(here.name + ".index").is_file():
        return here
    raise _Outside(f"{state}: names the checkpoint {str(named)!r}, outside its folder; numpyrnn reads "
                      f"checkpoints inside the folder given (pass the checkpoint prefix itself to read another)")


class Bundle:
    """An opened checkpoint: its entries, read lazily (see :func:`open_bundle`)."""

    def __init__(self, prefix: Path, entries: dict[str, BundleEntry], shards: list[Path], big_endian: bool):
        self.prefix, self.entries, self.shards, self.big_endian = prefix, entries, shards, big_endian

    def read(self, name: str, *, check_crc: bool = True) -> np.ndarray:
        """One numeric tensor, its bytes range and checksum checked."""
        e = self.entries[name]
        where = f"{self.prefix}: tensor {name!r}"
        if e.sliced:
            raise LayoutError(f"{where}: a partitioned variable (saved as slices); re-save it unpartitioned")
        if e.dtype not in DTYPES:
            raise LayoutError(f"{where}: dtype {e.dtype_name}; only numeric tensors are read")
        dtype = DTYPES[e.dtype]
        itemsize = _ITEMSIZE.get(dtype) or np.dtype(dtype).itemsize
        count = 1
        for d in e.shape:
            count *= d
        if count * itemsize != e.size:
            raise LayoutError(f"{where}: shape {e.shape} of {dtype} is {count * itemsize} bytes, but the index records {e.size}")
        shard = self.shards[e.shard]
        have = shard.stat().st_size
        if e.offset + e.size > have:
            raise LayoutError(f"{where}: bytes {e.offset}..{e.offset + e.size} lie outside {shard.name} ({have} bytes)")
        with open_regular(shard, str(shard)) as fp:
            fp.seek(e.offset)
            raw = fp.read(e.size)
        if len(raw) != e.size:
            raise LayoutError(f"{where}: read {len(raw)} of {e.size} bytes from {shard.name}")
        if check_crc and e.crc is not None and masked(crc32c(raw)) != e.crc:
            raise LayoutError(f"{where}: CRC32C of its {e.size} bytes in {shard.name} does not match the index; the data is corrupt")
        order = ">" if self.big_endian else "<"
        if dtype == "bfloat16":
            bits = np.frombuffer(raw, np.dtype(order + "u2")).astype(np.uint32) << np.uint32(16)
            return bits.view(np.float32).reshape(e.shape)
        stored = np.dtype(dtype).newbyteorder(">" if self.big_endian else "<")
        return np.frombuffer(raw, stored).astype(np.dtype(dtype), copy=True).reshape(e.shape)


def object_graph_names(bundle: Bundle) -> dict[str, str]:
    """TF2 checkpoints: each variable's key -> its path through named children of the object graph.

    A SavedModel's ``variables/`` names its variables ``variables/<n>/...``; the
    ``_CHECKPOINTABLE_OBJECT_GRAPH`` (a ``TrackableObjectGraph`` message in a string
    tensor) also records that the same variable is ``layer_with_weights-0/cell/kernel``.
    Paths through list wrappers (``variables``, ``trainable_variables``, ``keras_api``)
    are not taken. Empty when there is no object graph.
    """
    e = bundle.entries.get("_CHECKPOINTABLE_OBJECT_GRAPH")
    if e is None or e.dtype != 7 or e.shape != () or e.shard >= len(bundle.shards):
        return {}
    where = f"{bundle.prefix}: _CHECKPOINTABLE_OBJECT_GRAPH"
    shard = bundle.shards[e.shard]
    if e.offset + e.size > shard.stat().st_size:
        raise LayoutError(f"{where}: bytes {e.offset}..{e.offset + e.size} lie outside {shard.name}")
    with open_regular(shard, str(shard)) as fp:
        fp.seek(e.offset)
        raw = fp.read(e.size)
    # a string tensor: varint64 length per element, 4 bytes of checksum over the lengths, the bytes
    n, pos = _varint(raw, 0, where)
    if pos + 4 + n != len(raw):
        raise LayoutError(f"{where}: a string of {n} bytes does not fill its {len(raw)}-byte entry")
    graph = raw[pos + 4:]
    nodes: list[tuple[list[tuple[int, str]], list[tuple[str, str]]]] = []
    for field, _, node in _fields(graph, where):
        if field != 1 or not isinstance(node, bytes):
            continue
        children: list[tuple[int, str]] = []
        attributes: list[tuple[str, str]] = []
        for f2, _, v in _fields(node, where):
            if f2 in (1, 2) and isinstance(v, bytes):
                got = {f3: v3 for f3, _, v3 in _fields(v, where)}
                if f2 == 1 and isinstance(got.get(1, 0), int) and isinstance(got.get(2, b""), bytes):
                    children.append((int(got.get(1, 0)), bytes(got.get(2, b"")).decode("utf-8", "replace")))  # type: ignore[arg-type]
                elif f2 == 2 and isinstance(got.get(1, b""), bytes) and isinstance(got.get(3, b""), bytes):
                    attributes.append((bytes(got.get(1, b"")).decode("utf-8", "replace"),  # type: ignore[arg-type]
                                       bytes(got.get(3, b"")).decode("utf-8", "replace")))  # type: ignore[arg-type]
        nodes.append((children, attributes))
    paths: dict[int, str] = {0: ""}
    queue = [0]
    while queue:
        node = queue.pop(0)
        for child, local in nodes[node][0] if node < len(nodes) else []:
            if child in paths or not 0 <= child < len(nodes) or local in _WRAPPERS:
                continue
            paths[child] = f"{paths[node]}/{local}" if paths[node] else local
            queue.append(child)
    names = {}
    for node, path in paths.items():
        for attr, key in nodes[node][1]:
            if key in bundle.entries and path:
                names[key] = f"{path}/.ATTRIBUTES/{attr}"
    return names


#: Object-graph children that only list other objects again.
_WRAPPERS = {"variables", "trainable_variables", "non_trainable_variables", "keras_api",
             "_self_saveable_object_factories", "signatures"}


def open_bundle(path: str | os.PathLike) -> Bundle:
    """Parse a checkpoint's index and check its shards exist.

    Raises:
        LayoutError: no index, a malformed or corrupt index, a missing shard, or an
            entry that points outside its shard.
    """
    prefix = checkpoint_prefix(path)
    index = prefix.with_name(prefix.name + ".index")
    if not index.is_file():
        raise LayoutError(f"{path}: no checkpoint index {index.name} next to it; a TensorFlow checkpoint is "
                          f"<prefix>.index plus <prefix>.data-NNNNN-of-NNNNN")
    where = str(index)
    with open_regular(index, where) as fp:
        data = fp.read()
    raw = _table_entries(data, where)
    if not raw or raw[0][0] != b"":
        raise LayoutError(f"{where}: no bundle header (empty key); not a TensorBundle index")
    num_shards, big = 1, False
    for field, _, value in _fields(raw[0][1], where + " header"):
        if field == 1:
            num_shards = _int(value, where, "num_shards")
        elif field == 2:
            big = _int(value, where, "endianness") == 1
    if not 1 <= num_shards <= 1 << 16:
        raise LayoutError(f"{where}: header records {num_shards} shards")
    shards = [prefix.with_name(f"{prefix.name}.data-{k:05d}-of-{num_shards:05d}") for k in range(num_shards)]
    entries: dict[str, BundleEntry] = {}
    for key, value in raw[1:]:
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            raise LayoutError(f"{where}: tensor name {key[:40]!r} is not UTF-8") from None
        e = _entry(name, value, f"{where}: tensor {name!r}")
        if e.shard >= num_shards:
            raise LayoutError(f"{where}: tensor {name!r} is in shard {e.shard}, but the header records {num_shards}")
        entries[name] = e
    used = sorted({e.shard for e in entries.values() if e.numeric})
    sizes = {}
    for k in used:
        if not shards[k].exists():
            raise LayoutError(f"{where}: data shard {shards[k].name} is missing")
        sizes[k] = regular_file(shards[k], str(shards[k])).st_size  # a FIFO or a device: refused
    for e in entries.values():
        if e.numeric and e.offset + e.size > sizes[e.shard]:
            raise LayoutError(f"{where}: tensor {e.name!r}: bytes {e.offset}..{e.offset + e.size} lie outside "
                              f"{shards[e.shard].name} ({sizes[e.shard]} bytes)")
    return Bundle(prefix, entries, shards, big)


def read_checkpoint(path: str | os.PathLike, *, check_crc: bool = True) -> dict[str, np.ndarray]:
    """Every numeric tensor of a checkpoint, by its name in the checkpoint.

    Strings (such as TF2's ``_CHECKPOINTABLE_OBJECT_GRAPH``), resources and variants
    are left out.

    Args:
        path: the checkpoint prefix (``model.ckpt``), its ``.index`` or a ``.data-*`` shard,
            a directory holding a ``checkpoint`` file, or a SavedModel directory.
        check_crc: compare each tensor's bytes with the CRC32C stored in the index.

    Raises:
        LayoutError: the files are missing, malformed or corrupt (the message names the file and tensor).
    """
    bundle = open_bundle(path)
    return {n: bundle.read(n, check_crc=check_crc) for n, e in bundle.entries.items() if e.numeric}


# --------------------------------------------------------------------------------------
# from variable names to modules
# --------------------------------------------------------------------------------------

#: Variable leaves a cell scope may hold, longest first (TF1 cells, then Keras cells).
LEAVES = tuple(sorted((
    "kernel", "bias", "projection/kernel", "w_i_diag", "w_f_diag", "w_o_diag",
    "gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias",
    "candidate/input_projection/kernel", "candidate/input_projection/bias",
    "candidate/hidden_projection/kernel", "candidate/hidden_projection/bias",
    "w_ru", "b_ru", "w_c", "b_c", "recurrent_kernel",
), key=len, reverse=True))

#: TF1 cell scopes, by the cell's default name (``lstm_cell_1`` for a second one in a scope).
LSTM_SCOPE = re.compile(r"(basic_)?lstm_(block_|fused_)?cell(_\d+)?|cudnn_compatible_lstm_cell(_\d+)?")
GRU_SCOPE = re.compile(r"(cudnn_compatible_)?gru_(block_)?cell(_\d+)?")
RNN_SCOPE = re.compile(r"basic_rnn_cell(_\d+)?")
#: Path components that place a cell in a stack (``cell_<k>``) or a direction.
_LAYER = re.compile(r"cell_(\d+)")
_STRUCTURE = re.compile(r"cell_\d+|multi_rnn_cell|fw|bw")
#: TF2 object-graph suffix of a variable's value, and the markers of what is not a model weight.
_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
_SLOTS = (".OPTIMIZER_SLOT", "/.ATTRIBUTES/", "save_counter")

REFUSES = {
    "GRUCell": (
        "TF1's GRUCell (gates/kernel, candidate/kernel) and GRUBlockCell (w_ru, w_c) apply the reset gate "
        "before the candidate matmul, concat([x, r * h]) @ K_c, but nn.GRU applies it after: r * (W_hn h + b_hn); "
        "no choice of weights makes the two equal. CudnnGRU and CudnnCompatibleGRUCell weights "
        "(candidate/input_projection, candidate/hidden_projection) are read"
    ),
    "peepholes": (
        "LSTMCell(use_peepholes=True) adds w_i_diag * c, w_f_diag * c and w_o_diag * c to the gates; "
        "nn.LSTM has no peephole connections"
    ),
    "reset_after=False": (
        "a Keras GRU bias of shape (3*units,) is a GRU with reset_after=False (the Keras 2 default), which "
        "applies the reset gate before the recurrent matmul; nn.GRU applies it after"
    ),
}

CUDNN_NOTE = ("CudnnLSTM/CudnnGRU save the sum of cuDNN's input and recurrent biases; as TensorFlow does when it "
              "restores them, each of bias_ih and bias_hh gets half of the sum (split_bias=False puts it all in bias_ih)")
KERAS_NOTE = ("a checkpoint does not record a Keras layer's activations: the module computes Keras's defaults "
              "(tanh, recurrent sigmoid); a layer built with recurrent_activation='hard_sigmoid' (the old Keras 2 "
              "default) or other activations computes something else")


@dataclass
class _Cell:
    prefix: str               # the cell's scope in the checkpoint
    kind: str                 # "tf1" | "keras"
    cell: str                 # "LSTM" | "GRU" | "RNN"
    names: dict[str, str]     # leaf -> tensor name in the checkpoint
    cudnn: bool = False
    variant: str = ""         # the numpyrnn.variants class it needs (with variants=True), or ""


@dataclass
class _Module:
    name: str
    kind: str
    cell: str
    cudnn: bool
    slots: dict[tuple[int, str], _Cell]  # (layer, "" | "fw" | "bw") -> cell
    note: str = ""
    cudnn_layer: str = ""                # Keras 2 "CuDNNLSTM" / "CuDNNGRU"
    variant: str = ""                    # the numpyrnn.variants class it builds, or ""


def _variant_hint(what: str) -> str:
    from . import option

    return f"; {option('variants', True)} builds {what} (numpyrnn.variants), which computes it"


def _classify(prefix: str, leaves: dict[str, str], variants: bool = False) -> tuple[_Cell | None, str | None]:
    """``(cell, None)``, ``(None, refusal)`` or ``(None, None)`` for variables that are no recurrent cell.

    With ``variants``, TF1's ``GRUCell`` and ``LSTMCell(use_peepholes=True)`` are cells
    of the :mod:`numpyrnn.variants` modules that compute them.
    """
    token = prefix.rsplit("/", 1)[-1]
    grucell = {"gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"} == set(leaves)
    if "recurrent_kernel" in leaves:
        if not {"kernel", "recurrent_kernel"} <= set(leaves) or set(leaves) - {"kernel", "recurrent_kernel", "bias"}:
            return None, None
        return _Cell(prefix, "keras", "", leaves), None
    if grucell and GRU_SCOPE.fullmatch(token) and not token.startswith("cudnn_compatible"):
        if variants:
            return _Cell(prefix, "tf1", "GRU", leaves, variant="ResetBeforeGRU"), None
        return None, REFUSES["GRUCell"] + _variant_hint("ResetBeforeGRU")
    if {"candidate/kernel", "w_ru", "w_c"} & set(leaves):
        return None, REFUSES["GRUCell"]
    if "gates/kernel" in leaves and "candidate/input_projection/kernel" in leaves and GRU_SCOPE.fullmatch(token):
        return _Cell(prefix, "tf1", "GRU", leaves, cudnn=True), None
    if {"kernel", "bias"} <= set(leaves):
        if LSTM_SCOPE.fullmatch(token):
            peep = sorted(set(leaves) & {"w_i_diag", "w_f_diag", "w_o_diag"})
            if len(peep) == 3 and LSTM_SCOPE.fullmatch(token) and token.startswith("lstm_cell"):
                if variants:
                    return _Cell(prefix, "tf1", "LSTM", leaves, variant="PeepholeLSTM"), None
                return None, f"{peep}: " + REFUSES["peepholes"] + _variant_hint("PeepholeLSTM")
            if peep:
                return None, f"{peep}: " + REFUSES["peepholes"]
            return _Cell(prefix, "tf1", "LSTM", leaves, cudnn=token.startswith("cudnn_compatible")), None
        if RNN_SCOPE.fullmatch(token):
            return _Cell(prefix, "tf1", "RNN", leaves), None
    return None, None


def _place(prefix: str) -> tuple[str, int, int, str]:
    """``(module name, outer layer, inner layer, direction)`` of a TF1 cell scope."""
    parts = prefix.split("/")[:-1]
    first = next((i for i, p in enumerate(parts) if _STRUCTURE.fullmatch(p)), len(parts))
    name = "/".join(parts[:first]) or prefix.rsplit("/", 1)[-1]
    d = next((i for i in range(len(parts) - 1, -1, -1) if parts[i] in ("fw", "bw")), None)
    outer = [int(m.group(1)) for p in parts[:d] if (m := _LAYER.fullmatch(p))] if d is not None else []
    inner = [int(m.group(1)) for p in (parts[d + 1:] if d is not None else parts) if (m := _LAYER.fullmatch(p))]
    return name, (outer[-1] if outer else -1), (inner[-1] if inner else -1), (parts[d] if d is not None else "")


def _keras_place(prefix: str) -> tuple[str, str]:
    parts = prefix.split("/")
    if parts[-1] == "cell" or parts[-1].endswith("_cell"):
        parts = parts[:-1]  # the layer's cell ("cell", "lstm_cell", ...); cuDNN layers hold their weights directly
    if parts and parts[-1] in ("forward_layer", "backward_layer"):
        return "/".join(parts[:-1]), "fw" if parts[-1] == "forward_layer" else "bw"
    return "/".join(parts) or prefix, ""


def _gather(bundle: Bundle, variants: bool = False) -> tuple[list[_Module], list[tuple[str, str]], list[str]]:
    groups: dict[str, dict[str, str]] = {}
    skipped: list[tuple[str, str]] = []
    problems: list[str] = []
    aliases = object_graph_names(bundle)
    for name, e in bundle.entries.items():
        if not e.numeric:
            skipped.append((name, f"{e.dtype_name} tensor" + (" (partitioned)" if e.sliced else "")))
            continue
        clean = aliases.get(name, name)
        clean = clean[: -len(_VALUE)] if clean.endswith(_VALUE) else clean
        if any(s in clean for s in _SLOTS) or clean.endswith("/.ATTRIBUTES"):
            continue
        leaf = next((f for f in LEAVES if clean == f or clean.endswith("/" + f)), None)
        if leaf is None:
            continue
        groups.setdefault(clean[: len(clean) - len(leaf)].rstrip("/"), {})[leaf] = name
    modules: dict[str, _Module] = {}
    stacks: dict[str, list[tuple[_Cell, int, int, str]]] = {}
    for prefix in sorted(groups, key=_natural):
        cell, refusal = _classify(prefix, groups[prefix], variants)
        if refusal:
            skipped.append((prefix, "refused"))
            problems.append(f"{prefix}: cannot be loaded into torch: {refusal}")
            continue
        if cell is None:
            skipped.append((prefix, "not a recurrent cell"))
            continue
        if cell.kind == "keras":
            name, d = _keras_place(prefix)
            m = modules.setdefault(name, _Module(name, "keras", "", False, {}, KERAS_NOTE))
            if (0, d) in m.slots or m.kind != "keras":
                problems.append(f"{prefix}: a second cell for {name!r}{' ' + d if d else ''}; skipped")
                continue
            m.slots[(0, d)] = cell
        else:
            name, outer, inner, d = _place(prefix)
            stacks.setdefault(name, []).append((cell, outer, inner, d))
    for name, cells in stacks.items():
        if any(o >= 0 for _, o, _, _ in cells) and any(i > 0 for _, o, i, _ in cells if o >= 0):
            problems.append(f"{name}: each layer of a stack_bidirectional_rnn holds a multi-layer stack per direction; "
                            f"torch cannot represent it; skipped")
            skipped.append((name, "refused"))
            continue
        independent = any(d for _, _, _, d in cells) and any(i > 0 for _, o, i, _ in cells if o < 0)
        for cell, outer, inner, d in cells:
            layer = outer if outer >= 0 else max(inner, 0)
            key, slot_d, note = name, d, ""
            if independent:
                # bidirectional_dynamic_rnn over two MultiRNNCells: two independent stacks
                key, slot_d = f"{name}/{d}", ""
                if d == "bw":
                    note = ("the backward stack of bidirectional_dynamic_rnn: feed it the time-reversed input "
                            "(tf.reverse_sequence) and reverse its output again")
            found = modules.get(key)
            if found is not None and found.kind == "tf1" and found.cell == cell.cell and found.cudnn == cell.cudnn \
                    and found.variant == cell.variant and (layer, slot_d) not in found.slots:
                m = found
            else:
                if found is not None:
                    key = cell.prefix
                m = modules.setdefault(key, _Module(key, "tf1", cell.cell, cell.cudnn, {}, note, variant=cell.variant))
                if (layer, slot_d) in m.slots:
                    problems.append(f"{cell.prefix}: a second cell for layer {layer} of {key!r}; skipped")
                    continue
            m.slots[(layer, slot_d)] = cell
    out: list[_Module] = []
    for m in modules.values():
        layers = sorted({k for k, _ in m.slots})
        dirs = {k: sorted(d for kk, d in m.slots if kk == k) for k in layers}
        if layers != list(range(len(layers))):
            problems.append(f"{m.name}: layers {layers} do not run 0..{len(layers) - 1}; skipped")
            skipped.append((m.name, "incomplete stack"))
            continue
        if any(v not in ([""], ["bw", "fw"]) for v in dirs.values()) or len({tuple(v) for v in dirs.values()}) > 1:
            problems.append(f"{m.name}: directions per layer {dirs}; every layer needs one direction or both fw and bw; skipped")
            skipped.append((m.name, "incomplete stack"))
            continue
        out.append(m)
    return out, skipped, problems


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _shape(bundle: Bundle, cell: _Cell, leaf: str) -> tuple[int, ...]:
    return bundle.entries[cell.names[leaf]].shape


def _config(bundle: Bundle, m: _Module) -> dict:
    first = m.slots[(0, "fw")] if (0, "fw") in m.slots else m.slots[(0, "")]
    where = f"{bundle.prefix}: {m.name}"
    proj = 0
    if m.kind == "keras":
        k, rk = _shape(bundle, first, "kernel"), _shape(bundle, first, "recurrent_kernel")
        if len(k) != 2 or len(rk) != 2 or rk[0] < 1 or rk[1] % rk[0] or rk[1] // rk[0] not in (1, 3, 4):
            raise LayoutError(f"{where}: kernel {k} and recurrent_kernel {rk} are not (input, G*units) and "
                              f"(units, G*units) for G = 1, 3 or 4")
        hidden, inp = rk[0], k[0]
        cell = {1: "RNN", 3: "GRU", 4: "LSTM"}[rk[1] // rk[0]]
        G = rk[1] // rk[0]
        if G > 1 and "bias" in first.names and _shape(bundle, first, "bias") == (2 * G * hidden,):
            m.cudnn_layer = "CuDNNLSTM" if G == 4 else "CuDNNGRU"  # Keras 2's flat double bias
        elif cell == "GRU" and "bias" in first.names and len(_shape(bundle, first, "bias")) == 1:
            raise LayoutError(f"{bundle.prefix}: {first.prefix}/bias: shape {_shape(bundle, first, 'bias')}: "
                              f"cannot be loaded into torch: " + REFUSES["reset_after=False"])
        bias = "bias" in first.names
    else:
        cell, bias = m.cell, True
        k = _shape(bundle, first, "gates/kernel" if cell == "GRU" else "kernel")
        G = {"LSTM": 4, "GRU": 2, "RNN": 1}[cell]
        if len(k) != 2 or k[1] % G or k[1] < G:
            raise LayoutError(f"{where}: kernel of shape {k} is not [input+units, {G}*units]")
        hidden = k[1] // G
        if "projection/kernel" in first.names:
            pk = _shape(bundle, first, "projection/kernel")
            proj = pk[1] if len(pk) == 2 else 0
        inp = k[0] - (proj or hidden)
    dtype = bundle.entries[first.names["kernel" if "kernel" in first.names else "gates/kernel"]].dtype_name
    config = dict(cell=cell.lower(), input_size=inp, hidden_size=hidden, num_layers=1 + max(k for k, _ in m.slots),
                  bidirectional=(0, "fw") in m.slots, bias=bias, proj_size=proj,
                  batch_first=m.kind == "keras", dtype=dtype, source=m.name,
                  scopes=[c.prefix for _, c in sorted(m.slots.items())])
    if m.kind == "tf1" and cell == "LSTM":
        config["forget_bias"] = 0.0 if m.cudnn else 1.0
    if m.cudnn:
        config["bias_split"] = "half"
    if m.note:
        config["note"] = m.note
    if m.cudnn_layer:
        config["keras_layer"] = m.cudnn_layer
    if m.variant:  # as numpyrnn.variants.loading.variant_config records it
        options: dict[str, Any] = {"recurrent_activation": "sigmoid", "activation": "tanh"}
        if m.variant == "PeepholeLSTM":
            options["peepholes"] = True
        config["variant"] = {"class": m.variant, "options": options, "merge_mode": "concat", "time": "forward"}
    return config


class CellArrays(Mapping):
    """One cell's variables, ``{leaf: array}`` as TF1 names them (``kernel``, ``gates/kernel``, ...),
    each read from the checkpoint (its CRC checked) when asked for, so that listing a file reads no weights."""

    def __init__(self, bundle: Bundle, names: dict[str, str]):
        self._bundle, self._names = bundle, dict(names)

    def __getitem__(self, leaf: str) -> np.ndarray:
        return self._bundle.read(self._names[leaf])

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class LayerArrays(Sequence):
    """A Keras layer's weights in ``get_weights()`` order (``kernel, recurrent_kernel, bias``, forward then
    backward), each read from the checkpoint when asked for."""

    def __init__(self, bundle: Bundle, names: list[str]):
        self._bundle, self._names = bundle, list(names)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._bundle.read(n) for n in self._names[i]]
        return self._bundle.read(self._names[i])

    def __len__(self) -> int:
        return len(self._names)


def _arrays(bundle: Bundle, m: _Module, config: dict) -> Any:
    """What the checkpoint stores for a module, in the form ``from_tf1`` (TF1 cells: a cell's
    ``{leaf: array}``, ``{"fw": ..., "bw": ...}`` per layer, a list per stack) or ``from_keras``
    (Keras layers: the weights list; a Keras 2 cuDNN layer's flat double bias as stored) takes it."""
    if m.kind == "keras":
        names = []
        for d in (("fw", "bw") if config["bidirectional"] else ("",)):
            cell = m.slots[(0, d)]
            names += [cell.names[n] for n in ("kernel", "recurrent_kernel", "bias") if n in cell.names]
        return LayerArrays(bundle, names)
    layers: list[Any] = []
    for k in range(config["num_layers"]):
        if config["bidirectional"]:
            layers.append({d: CellArrays(bundle, m.slots[(k, d)].names) for d in ("fw", "bw")})
        else:
            layers.append(CellArrays(bundle, m.slots[(k, "")].names))
    return layers if len(layers) > 1 else layers[0]


def _build(bundle: Bundle, m: _Module, config: dict) -> Callable[..., Any]:
    from ..modules import NumpyGRU, NumpyLSTM, NumpyRNN

    classes: dict[str, Any] = {"gru": NumpyGRU, "lstm": NumpyLSTM, "rnn": NumpyRNN}

    def build(*, forget_bias: float | None = None, split_bias: bool = True, check_crc: bool = True,
              batch_first: bool | None = None, dropout: float = 0.0, device: Any = None,
              dtype: Any = None, freeze: bool = False, nonlinearity: str | None = None, **_: Any) -> Any:
        cls = classes[config["cell"]]
        common = dict(batch_first=config["batch_first"] if batch_first is None else batch_first, dropout=dropout,
                      device=device, dtype=dtype, freeze=freeze)
        if config["cell"] == "rnn" and nonlinearity is not None:
            common["nonlinearity"] = nonlinearity

        def arrays(cell: _Cell) -> dict[str, np.ndarray]:
            return {leaf: bundle.read(n, check_crc=check_crc) for leaf, n in cell.names.items()}

        layers = range(config["num_layers"])
        if m.kind == "keras":
            order = ("kernel", "recurrent_kernel", "bias")
            weights: list[np.ndarray] = []
            for d in (("fw", "bw") if config["bidirectional"] else ("",)):
                a = arrays(m.slots[(0, d)])
                weights += [a[n] for n in order if n in a]
            if m.cudnn_layer:
                from .keras2 import build_cudnn

                return build_cudnn(m.cudnn_layer, weights, where=f"{bundle.prefix}: {m.name}", **common)
            return cls.from_keras(weights, **common)
        source: list[Any] = []
        for k in layers:
            if config["bidirectional"]:
                source.append({"fw": arrays(m.slots[(k, "fw")]), "bw": arrays(m.slots[(k, "bw")])})
            else:
                source.append(arrays(m.slots[(k, "")]))
        extra: dict[str, Any] = {}
        if config["cell"] == "lstm":
            recorded = config["forget_bias"]
            if m.cudnn and forget_bias not in (None, 0, 0.0):
                raise LayoutError(f"{bundle.prefix}: {m.name}: forget_bias={forget_bias}, but these are "
                                  f"CudnnLSTM/CudnnCompatibleLSTMCell weights, which add no forget bias (0)")
            extra["forget_bias"] = recorded if forget_bias is None else forget_bias
        if m.variant:  # the warning names the checkpoint and the module
            import warnings

            from ..variants import loading

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", loading.VariantWarning)
                module = cls.from_tf1(source if len(source) > 1 else source[0], **extra, variants=True, **common)
            warnings.warn(f"{bundle.prefix.name}: module {m.name!r}: built {loading.describe(module)} "
                          f"(numpyrnn.variants): the source computes what torch.nn.{config['cell'].upper()} cannot",
                          loading.VariantWarning, stacklevel=3)
            return module
        module = cls.from_tf1(source if len(source) > 1 else source[0], **extra, **common)
        if m.cudnn and split_bias:
            _split_halves(module, config)
        return module

    build.arrays = _arrays(bundle, m, config)  # type: ignore[attr-defined]  # the registry's Entry.arrays
    return build


def _split_halves(module: Any, config: dict) -> None:
    """Give ``bias_ih`` and ``bias_hh`` half of the summed bias each, as TensorFlow restores CudnnLSTM/CudnnGRU."""
    import torch

    rows = 2 * config["hidden_size"] if config["cell"] == "gru" else None  # GRU: r, z only; n keeps b_in / b_hn
    with torch.no_grad():
        for k in range(config["num_layers"]):
            for s in ("", "_reverse")[: 1 + config["bidirectional"]]:
                bih, bhh = getattr(module, f"bias_ih_l{k}{s}"), getattr(module, f"bias_hh_l{k}{s}")
                total = bih[:rows] + bhh[:rows]
                bih[:rows].copy_(total * 0.5)
                bhh[:rows].copy_(total * 0.5)


def scan(path: str | os.PathLike, **options: Any) -> tuple[list[tuple[str, str, dict, Callable[..., Any]]],
                                                            list[tuple[str, str]], list[str]]:
    """The recurrent modules a checkpoint holds, what was skipped and the problems found.

    Returns:
        ``(modules, skipped, problems)``: ``modules`` as :func:`read` returns them;
        ``skipped`` the ``(name, kind)`` of what is not converted; ``problems`` one line each.

    Raises:
        LayoutError: the files are malformed, or no cell can be loaded (the message
            gives every refusal with its reason).
    """
    bundle = open_bundle(path)
    found, skipped, problems = _gather(bundle, bool(options.get("variants", False)))
    out = []
    for m in found:
        config = _config(bundle, m)
        out.append((m.name, config["cell"], config, _build(bundle, m, config)))
    if any(m.cudnn for m in found):
        problems.append(CUDNN_NOTE)
    if any(m.kind == "keras" for m in found):
        problems.append(KERAS_NOTE)
    problems += [f"{m.name}: {m.note}" for m in found if m.note and m.kind != "keras"]
    if not out:
        numeric = [n for n, e in bundle.entries.items() if e.numeric]
        raise LayoutError(
            f"{bundle.prefix}: no recurrent cell that torch can compute"
            + (": " + "; ".join(p for p in problems) if problems else
               f" among {len(numeric)} variables ({', '.join(numeric[:5])}{', ...' if len(numeric) > 5 else ''}); "
               f"expected TF1 cell scopes (.../lstm_cell/kernel, .../cudnn_compatible_gru_cell/gates/kernel, ...) "
               f"or Keras layers (.../cell/recurrent_kernel)")
        )
    return out, skipped, problems


def read(path: str | os.PathLike, **options: Any) -> list[tuple[str, str, dict, Callable[..., Any]]]:
    """``(name, cell, config, build)`` for every recurrent module of a checkpoint, in name order.

    ``build(**options)`` reads the arrays and returns the module. Options:
    ``forget_bias`` (TF1 ``LSTMCell``: the run-time forget bias, default 1.0; not
    stored in checkpoints), ``split_bias`` (CudnnLSTM/CudnnGRU: halve the summed bias
    into ``bias_ih`` and ``bias_hh``, default True), ``batch_first``, ``dropout``,
    ``device``, ``dtype``, ``freeze``, ``nonlinearity`` (``NumpyRNN``), ``check_crc``.
    """
    return scan(path, **options)[0]


def load_all_from_checkpoint(path: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """Every recurrent module of a checkpoint, built: ``{name: NumpyLSTM/NumpyGRU/NumpyRNN}``."""
    return {name: build(**options) for name, _, _, build in read(path, **options)}


def sniff(path: str | os.PathLike) -> bool:
    """True for a checkpoint prefix, its ``.index``/``.data-*`` files or a directory holding one."""
    try:
        prefix = checkpoint_prefix(path)
    except _Outside:
        raise  # a checkpoint folder that names one elsewhere: refused, not taken for another format
    except (LayoutError, OSError):
        return False
    index = prefix.with_name(prefix.name + ".index")
    try:
        with open_regular(index) as fp:  # a FIFO is refused, never waited on
            fp.seek(0, 2)
            if fp.tell() < FOOTER_SIZE:
                return False
            fp.seek(-8, 2)
            return int.from_bytes(fp.read(8), "little") == TABLE_MAGIC
    except OSError:
        return False


FORMAT = dict(name="tfckpt", suffixes=(".index", ".ckpt"), sniff=sniff, read=read, scan=scan)



def _register() -> None:
    from . import register_scanner

    register_scanner('tfckpt', (".index", ".ckpt"), sniff, scan, 'TensorFlow checkpoints (.index + .data-*) and SavedModel variables, read without TensorFlow')


_register()
