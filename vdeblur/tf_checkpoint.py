"""Read TensorFlow "bundle" checkpoints (``PREFIX.index`` + ``PREFIX.data-NNNNN-of-NNNNN``) without TensorFlow.

The ``.index`` file is a LevelDB-format table (sorted key/value blocks, an index block, a
48-byte footer with a magic number) that maps each variable name to a ``BundleEntryProto``:
dtype, shape, shard, byte offset and size in the data file, and the tensor's masked CRC-32C.
The empty key holds a ``BundleHeaderProto`` (shard count, endianness). The data files are the
raw little-endian tensors back to back. Everything is parsed here with the standard library
and numpy, and every block and tensor checksum is verified, so a damaged download is reported
instead of silently producing a broken model.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .crc32c import crc32c, mask
from .errors import VdeblurError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked crc32c

# TensorFlow DataType enum -> numpy dtype (little-endian), for the numeric types a bundle can hold.
DTYPES = {
    1: np.dtype("<f4"),   # DT_FLOAT
    2: np.dtype("<f8"),   # DT_DOUBLE
    3: np.dtype("<i4"),   # DT_INT32
    4: np.dtype("u1"),    # DT_UINT8
    5: np.dtype("<i2"),   # DT_INT16
    6: np.dtype("i1"),    # DT_INT8
    9: np.dtype("<i8"),   # DT_INT64
    10: np.dtype("?"),    # DT_BOOL
    14: np.dtype("<u2"),  # DT_BFLOAT16 (raw bits)
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
               9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 19: "float16", 22: "uint32", 23: "uint64"}


@dataclass(frozen=True)
class TensorEntry:
    """One variable as the index describes it (a decoded BundleEntryProto)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    masked_crc32c: int
    sliced: bool = False

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, f"dtype {self.dtype}")


@dataclass(frozen=True)
class BundleHeader:
    num_shards: int = 1
    big_endian: bool = False
    producer: int = 0


def resolve_prefix(path: str | os.PathLike) -> Path:
    """Accept the checkpoint prefix, the path of its ``.index`` or ``.data-*`` file, or a folder
    holding exactly one checkpoint (the authors' ``checkpoints/RDAN/checkpoints/``)."""
    p = str(path)
    if os.path.isdir(p):
        indexes = sorted(Path(p).glob("*.index"))
        if len(indexes) != 1:
            found = ", ".join(i.name for i in indexes[:4]) if indexes else "no .index file"
            raise VdeblurError(f"{p}: is a folder with {found}; give the checkpoint prefix, "
                               f"e.g. {p.rstrip('/')}/deblur.model-675000")
        return indexes[0].with_suffix("")
    if p.endswith(".index"):
        return Path(p[: -len(".index")])
    marker = p.rfind(".data-")
    if marker > 0 and "-of-" in p[marker:]:
        return Path(p[:marker])
    return Path(p)


def data_path(prefix: Path, shard: int, num_shards: int) -> Path:
    return Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")


# -- protobuf wire format -------------------------------------------------------------------

class _Malformed(ValueError):
    pass


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("bad varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: ints for varint/fixed, bytes for length-delimited."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise _Malformed("truncated fixed64")
            (value,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _Malformed("truncated field")
            value = bytes(buf[pos:pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise _Malformed("truncated fixed32")
            (value,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        else:
            raise _Malformed(f"wire type {wire}")
        out.append((number, value))
    return out


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in _fields(buf):
        if number == 2:  # TensorShapeProto.Dim
            size = 0
            for n, v in _fields(value):
                if n == 1:
                    size = _int64(v)
            dims.append(size)
        elif number == 3 and value:
            raise _Malformed("unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    f = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "crc": 0, "sliced": False}
    for number, value in _fields(buf):
        if number == 1:
            f["dtype"] = value
        elif number == 2:
            f["shape"] = _parse_shape(value)
        elif number == 3:
            f["shard_id"] = value
        elif number == 4:
            f["offset"] = _int64(value)
        elif number == 5:
            f["size"] = _int64(value)
        elif number == 6:
            f["crc"] = value
        elif number == 7:
            f["sliced"] = True
    if f["offset"] < 0 or f["size"] < 0 or any(d < 0 for d in f["shape"]):
        raise _Malformed("negative offset, size or dimension")
    return TensorEntry(name, f["dtype"], f["shape"], f["shard_id"], f["offset"], f["size"], f["crc"], f["sliced"])


def _parse_header(buf: bytes) -> BundleHeader:
    num_shards, big, producer = 1, False, 0
    for number, value in _fields(buf):
        if number == 1:
            num_shards = value
        elif number == 2:
            big = value == 1
        elif number == 3:
            producer = dict(_fields(value)).get(1, 0)
    return BundleHeader(num_shards, big, producer)


# -- LevelDB table ---------------------------------------------------------------------------

class _Table:
    """The sorted (key, value) pairs of an SSTable held in memory (index files are small)."""

    def __init__(self, data: bytes, name: str):
        self.data = data
        self.name = name

    def fail(self, why: str) -> VdeblurError:
        return VdeblurError(f"{self.name}: {why}")

    def items(self) -> list[tuple[bytes, bytes]]:
        data = self.data
        if len(data) < FOOTER_SIZE or struct.unpack_from("<Q", data, len(data) - 8)[0] != TABLE_MAGIC:
            raise self.fail("not a TensorFlow checkpoint index (no table footer: another file type, or truncated)")
        footer = data[-FOOTER_SIZE:]
        try:
            _meta_off, pos = _varint(footer, 0)
            _meta_size, pos = _varint(footer, pos)
            index_off, pos = _varint(footer, pos)
            index_size, pos = _varint(footer, pos)
        except _Malformed:
            raise self.fail("damaged TensorFlow checkpoint index (bad footer)") from None
        items = []
        for separator, handle in self._block_entries(index_off, index_size, "index block"):
            try:
                off, p = _varint(handle, 0)
                size, _ = _varint(handle, p)
            except _Malformed:
                raise self.fail("damaged TensorFlow checkpoint index (bad block handle)") from None
            items.extend(self._block_entries(off, size, "data block"))
        keys = [k for k, _ in items]
        if any(a >= b for a, b in zip(keys, keys[1:])):
            raise self.fail("damaged TensorFlow checkpoint index (keys out of order)")
        return items

    def _block(self, offset: int, size: int, what: str) -> bytes:
        end = offset + size + BLOCK_TRAILER_SIZE
        if end > len(self.data) - FOOTER_SIZE:
            raise self.fail(f"damaged TensorFlow checkpoint index ({what} runs past the end of the file)")
        contents = self.data[offset:offset + size]
        kind = self.data[offset + size]
        (stored,) = struct.unpack_from("<I", self.data, offset + size + 1)
        if mask(crc32c(contents + bytes([kind]))) != stored:
            raise self.fail(f"checksum mismatch in the index's {what} at byte {offset}: the file is corrupt")
        if kind == 1:
            raise self.fail("index blocks are snappy-compressed, which this reader does not support "
                            "(TensorFlow writes checkpoint indexes uncompressed)")
        if kind != 0:
            raise self.fail(f"unknown block compression type {kind}: not a TensorFlow checkpoint index")
        return contents

    def _block_entries(self, offset: int, size: int, what: str) -> list[tuple[bytes, bytes]]:
        block = self._block(offset, size, what)
        bad = self.fail(f"damaged TensorFlow checkpoint index (malformed {what} at byte {offset})")
        if len(block) < 4:
            raise bad
        (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
        limit = len(block) - 4 - 4 * num_restarts
        if limit < 0:
            raise bad
        entries = []
        key = b""
        pos = 0
        try:
            while pos < limit:
                shared, pos = _varint(block, pos)
                unshared, pos = _varint(block, pos)
                vlen, pos = _varint(block, pos)
                if shared > len(key) or pos + unshared + vlen > limit:
                    raise _Malformed("entry out of bounds")
                key = key[:shared] + block[pos:pos + unshared]
                pos += unshared
                entries.append((key, block[pos:pos + vlen]))
                pos += vlen
        except _Malformed:
            raise bad from None
        return entries


# -- the checkpoint ----------------------------------------------------------------------------

class TFCheckpoint:
    """A TF bundle checkpoint: ``entries`` (name -> TensorEntry) from the index; ``read(name)``
    loads one tensor from the data file and verifies its size and CRC-32C."""

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = resolve_prefix(prefix)
        self.index_path = Path(f"{self.prefix}.index")
        try:
            raw = self.index_path.read_bytes()
        except FileNotFoundError:
            raise VdeblurError(f"{self.index_path}: no such file (give the checkpoint prefix, e.g. "
                               f"'deblur.model-675000', with its .index and .data-00000-of-00001 files beside it)") from None
        except IsADirectoryError:
            raise VdeblurError(f"{self.index_path}: is a folder, not a checkpoint index") from None
        except OSError as e:
            raise VdeblurError(f"{self.index_path}: cannot read ({e.strerror})") from None
        self.header = BundleHeader()
        self.entries: dict[str, TensorEntry] = {}
        name = str(self.index_path)
        has_header = False
        for key, value in _Table(raw, name).items():
            try:
                if key == b"":
                    self.header = _parse_header(value)
                    has_header = True
                else:
                    k = key.decode("utf-8")
                    self.entries[k] = _parse_entry(k, value)
            except (_Malformed, UnicodeDecodeError):
                raise VdeblurError(f"{name}: damaged TensorFlow checkpoint index (bad entry {key[:60]!r})") from None
        if not has_header:
            raise VdeblurError(f"{name}: not a TensorFlow checkpoint index (a LevelDB table without a bundle header)")
        if self.header.big_endian:
            raise VdeblurError(f"{name}: big-endian checkpoints are not supported")
        if self.header.num_shards < 1:
            raise VdeblurError(f"{name}: damaged TensorFlow checkpoint index (num_shards = {self.header.num_shards})")

    def data_paths(self) -> list[Path]:
        return [data_path(self.prefix, s, self.header.num_shards) for s in range(self.header.num_shards)]

    def check_data_files(self) -> None:
        """Fail early, naming the file, when a data shard is missing."""
        for p in self.data_paths():
            if not p.is_file():
                raise VdeblurError(f"{p}: missing data file (download it from the same place as {self.index_path.name} "
                                   f"and put it beside it)")

    def read(self, name: str) -> np.ndarray:
        e = self.entries[name]
        where = f"{self.prefix}: tensor {name}"
        if e.sliced:
            raise VdeblurError(f"{where} is partitioned into slices, which is not supported")
        if e.dtype not in DTYPES:
            raise VdeblurError(f"{where} has unsupported dtype {e.dtype_name}")
        if e.shard_id >= self.header.num_shards:
            raise VdeblurError(f"{where} is in shard {e.shard_id}, the header says {self.header.num_shards} shards")
        dt = DTYPES[e.dtype]
        count = int(np.prod(e.shape, dtype=np.int64))
        if count * dt.itemsize != e.size:
            raise VdeblurError(f"{where}: index says {e.size} bytes, shape {list(e.shape)} of {e.dtype_name} needs "
                               f"{count * dt.itemsize}")
        path = data_path(self.prefix, e.shard_id, self.header.num_shards)
        raw = _read_range(path, e.offset, e.size)
        if mask(crc32c(raw)) != e.masked_crc32c:
            raise VdeblurError(f"{path}: checksum mismatch in tensor {name}: the file is corrupt "
                               f"(download it again)")
        return np.frombuffer(raw, dtype=dt).reshape(e.shape).copy()


def _read_range(path: Path, offset: int, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            raw = f.read(size)
            total = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        raise VdeblurError(f"{path}: missing data file") from None
    except OSError as e:
        raise VdeblurError(f"{path}: cannot read ({e.strerror})") from None
    if len(raw) != size:
        raise VdeblurError(f"{path}: truncated ({total} bytes, the index needs at least {offset + size}); "
                           f"download it again")
    return raw
