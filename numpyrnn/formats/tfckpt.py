r"""TensorFlow's TensorBundle checkpoint format, read without TensorFlow.

A checkpoint ``model.ckpt`` is an index file ``model.ckpt.index`` and data shards
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LayoutError

__all__ = ["BundleEntry", "Bundle", "open_bundle", "crc32c", "checkpoint_prefix"]

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
    _, pos = _varint(footer, pos, where + " footer")        # metaindex offset (unused)
    _, pos = _varint(footer, pos, where + " footer")        # metaindex size
    ioff, pos = _varint(footer, pos, where + " footer")
    isize, pos = _varint(footer, pos, where + " footer")
    body = data[:-FOOTER_SIZE]
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
            m = re.search(r'^model_checkpoint_path:\s*"([^"\n]+)"', state.read_text(errors="replace"), re.M)
            if m:
                q = Path(m.group(1))
                return q if q.is_absolute() else p / q
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
        with open(shard, "rb") as fp:
            fp.seek(e.offset)
            raw = fp.read(e.size)
        if len(raw) != e.size:
            raise LayoutError(f"{where}: read {len(raw)} of {e.size} bytes from {shard.name}")
        if check_crc and e.crc is not None and masked(crc32c(raw)) != e.crc:
            raise LayoutError(f"{where}: CRC32C of its {e.size} bytes in {shard.name} does not match the index; the data is corrupt")
        order = ">" if self.big_endian else "<"
        if dtype == "bfloat16":
            bits = np.frombuffer(raw, order + "u2").astype(np.uint32) << np.uint32(16)
            return bits.view(np.float32).reshape(e.shape)
        arr = np.frombuffer(raw, np.dtype(dtype).newbyteorder(order) if itemsize > 1 else dtype)
        return arr.astype(np.dtype(dtype).newbyteorder("="), copy=True).reshape(e.shape)


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
    data = index.read_bytes()
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
        if not shards[k].is_file():
            raise LayoutError(f"{where}: data shard {shards[k].name} is missing")
        sizes[k] = shards[k].stat().st_size
    for e in entries.values():
        if e.numeric and e.offset + e.size > sizes[e.shard]:
            raise LayoutError(f"{where}: tensor {e.name!r}: bytes {e.offset}..{e.offset + e.size} lie outside "
                              f"{shards[e.shard].name} ({sizes[e.shard]} bytes)")
    return Bundle(prefix, entries, shards, big)
