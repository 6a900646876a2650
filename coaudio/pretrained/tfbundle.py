"""Read TensorFlow 2 tensor bundles (the V2 checkpoint format) with numpy alone.

A bundle with prefix ``P`` is two kinds of file:

* ``P.index``: a LevelDB-style sorted table (TF's fork, no filter blocks). Its last 48 bytes
  are the footer: the metaindex and index block handles (varint64 offset and size each),
  zero-padded to 40 bytes, then the fixed64 magic ``0xdb4775248b80fb57``. Each block is
  followed by a 5-byte trailer (compression type, masked crc32c of block + type). Block
  entries are ``varint32 shared, varint32 unshared, varint32 value length, key suffix,
  value``, then uint32 restart offsets and their uint32 count. The index block maps a
  separator key to the handle of each data block. In the data blocks the key ``""`` holds the
  ``BundleHeaderProto`` (number of shards, endianness of the tensor bytes) and every other key
  is a tensor name whose value is a ``BundleEntryProto`` (dtype, shape, shard, offset, size,
  masked crc32c of the tensor bytes).
* ``P.data-SSSSS-of-NNNNN``: the shards: raw row-major tensor bytes, back to back.

Both protos are decoded here by hand (a few varint fields), so neither TensorFlow nor protobuf
is needed. String and partitioned ("sliced") tensors are refused.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48  # two block handles padded to 40 bytes, then the 8-byte magic
TRAILER_BYTES = 5  # compression type + masked crc32c after every block
CRC_MASK_DELTA = 0xA282EAD8

# DataType enum values (tensorflow/core/framework/types.proto) -> numpy dtype (little endian).
# A *_REF type (value + 100) is stored like its base type.
DTYPES = {
    1: "f4",  # DT_FLOAT
    2: "f8",  # DT_DOUBLE
    3: "i4",  # DT_INT32
    4: "u1",  # DT_UINT8
    5: "i2",  # DT_INT16
    6: "i1",  # DT_INT8
    8: "c8",  # DT_COMPLEX64
    9: "i8",  # DT_INT64
    10: "?",  # DT_BOOL
    17: "u2",  # DT_UINT16
    18: "c16",  # DT_COMPLEX128
    19: "f2",  # DT_HALF
    22: "u4",  # DT_UINT32
    23: "u8",  # DT_UINT64
}
DT_BFLOAT16 = 14  # no numpy dtype: widened exactly to float32
DTYPE_NAMES = {7: "DT_STRING", 20: "DT_RESOURCE", 21: "DT_VARIANT", DT_BFLOAT16: "DT_BFLOAT16"}


# crc32c (Castagnoli), vectorised with numpy --------------------------------------------

CRC_POLY = 0x82F63B78  # reflected Castagnoli polynomial
LANE_BYTES = 64  # bytes each numpy lane runs through the byte-wise loop
SMALL_BYTES = 256  # below this a plain Python loop is faster than the lanes


@functools.cache
def _byte_table() -> np.ndarray:
    """``(256,)`` uint32: the CRC register after shifting in one byte from a zero register."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(CRC_POLY), table >> 1).astype(np.uint32)
    return table


def _apply(columns: list[int], value: int) -> int:
    """A 32x32 GF(2) matrix (``columns[i]`` = image of bit i) times ``value``."""
    out, bit = 0, 0
    while value:
        if value & 1:
            out ^= columns[bit]
        value >>= 1
        bit += 1
    return out


@functools.cache
def _zeros_operator(n_bytes: int) -> tuple[int, ...]:
    """The linear map "run the register through ``n_bytes`` zero bytes", as 32 columns.

    Built by squaring: the map for 2n bytes is the map for n bytes applied twice.
    """
    if n_bytes == 1:
        table = _byte_table()
        return tuple(int(table[(1 << bit) & 0xFF]) ^ ((1 << bit) >> 8) for bit in range(32))
    half = list(_zeros_operator(n_bytes // 2))
    twice = [_apply(half, c) for c in half]
    if n_bytes % 2:
        twice = [_apply(list(_zeros_operator(1)), c) for c in twice]
    return tuple(twice)


@functools.cache
def _operator_tables(n_bytes: int) -> np.ndarray:
    """``(4, 256)`` uint32 lookup tables applying :func:`_zeros_operator` a byte at a time."""
    columns = np.array(_zeros_operator(n_bytes), dtype=np.uint32)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for part in range(4):
        for bit in range(8):  # entries with this bit as the highest set bit
            low = tables[part, : 1 << bit]
            tables[part, 1 << bit : 2 << bit] = low ^ columns[8 * part + bit]
    return tables


def _shift_zeros(registers: np.ndarray, n_bytes: int) -> np.ndarray:
    """Each uint32 register run through ``n_bytes`` zero bytes."""
    tables = _operator_tables(n_bytes)
    out = np.zeros_like(registers)
    for part in range(4):
        out ^= tables[part][(registers >> np.uint32(8 * part)) & np.uint32(0xFF)]
    return out


def _crc_small(data: memoryview) -> int:
    """crc32c the textbook way, a table lookup per byte: fastest for short inputs."""
    table, register = _byte_table().tolist(), 0xFFFFFFFF
    for byte in data:
        register = (register >> 8) ^ table[(register ^ byte) & 0xFF]
    return register ^ 0xFFFFFFFF


def _crc_lanes(data: np.ndarray) -> int:
    """crc32c of ``data`` (uint8, at least 4 bytes) with one numpy operation per byte
    position instead of per byte.

    The standard CRC starts from an all-ones register; for a reflected CRC that equals
    starting from zero with the first four bytes inverted. From a zero register, leading zero
    bytes change nothing, so the data is zero-padded at the front to ``LANE_BYTES * 2**k``
    bytes and cut into ``2**k`` lanes that run the byte loop side by side. Neighbouring lanes
    are then merged pairwise, ``crc(AB) = zeros_len(B)(crc(A)) ^ crc(B)``, level by level.
    """
    lanes = 1 << max(0, math.ceil(math.log2(len(data) / LANE_BYTES)))
    padded = np.zeros(lanes * LANE_BYTES, dtype=np.uint8)
    start = len(padded) - len(data)
    padded[start:] = data
    padded[start : start + 4] ^= 0xFF
    columns = np.ascontiguousarray(padded.reshape(lanes, LANE_BYTES).T)  # (LANE_BYTES, lanes)
    table = _byte_table()
    register = np.zeros(lanes, dtype=np.uint32)
    for row in columns:
        index = register.astype(np.uint8) ^ row  # the register's low byte xor the next byte
        register >>= 8
        register ^= table[index]
    span = LANE_BYTES
    while len(register) > 1:
        register = _shift_zeros(np.ascontiguousarray(register[0::2]), span) ^ register[1::2]
        span *= 2
    return int(register[0]) ^ 0xFFFFFFFF


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """The crc32c (Castagnoli) checksum of ``data``, e.g. ``crc32c(b"123456789") == 0xE3069283``."""
    array = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    array = array.reshape(-1).view(np.uint8)
    if len(array) < SMALL_BYTES:
        return _crc_small(memoryview(array))
    return _crc_lanes(array)


def masked_crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """crc32c as LevelDB and TF store it: rotated right by 15 bits, plus a constant."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + CRC_MASK_DELTA) & 0xFFFFFFFF


# The index table -----------------------------------------------------------------------


class _Reader:
    """Varints and fixed-width integers from a byte string; overruns raise ValueError."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            if self.pos >= len(self.data) or shift > 63:
                raise ValueError(f"{self.what}: truncated or malformed varint")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"{self.what}: truncated ({n} bytes wanted at {self.pos} of {len(self.data)})")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def done(self) -> bool:
        return self.pos >= len(self.data)


def _read_block(index: bytes, offset: int, size: int, name: str, check_crc: bool) -> bytes:
    """The contents of the table block at ``offset`` (its trailer checked)."""
    if offset + size + TRAILER_BYTES > len(index) - FOOTER_BYTES:
        raise ValueError(f"{name}: truncated: block [{offset}, {offset + size}) is past the end")
    block = index[offset : offset + size]
    kind = index[offset + size]
    if kind != 0:
        raise ValueError(f"{name}: compressed table blocks (type {kind}) are not supported")
    stored = int.from_bytes(index[offset + size + 1 : offset + size + TRAILER_BYTES], "little")
    if check_crc and masked_crc32c(index[offset : offset + size + 1]) != stored:
        raise ValueError(f"{name}: crc mismatch in the table block at offset {offset}")
    return block


def _block_entries(block: bytes, name: str) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` pairs of one table block, in order."""
    if len(block) < 4:
        raise ValueError(f"{name}: corrupt table block (only {len(block)} bytes)")
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise ValueError(f"{name}: corrupt table block ({restarts} restarts do not fit)")
    reader, key, out = _Reader(block[:end], f"{name}: table block"), b"", []
    while not reader.done():
        shared, unshared, length = reader.varint(), reader.varint(), reader.varint()
        if shared > len(key):
            raise ValueError(f"{name}: corrupt table block (key shares {shared} of {len(key)} bytes)")
        key = key[:shared] + reader.take(unshared)
        out.append((key, reader.take(length)))
    return out


def _handle(value: bytes, name: str) -> tuple[int, int]:
    reader = _Reader(value, f"{name}: block handle")
    return reader.varint(), reader.varint()


def _table(index: bytes, name: str, check_crc: bool) -> dict[str, bytes]:
    """All key -> value entries of the ``.index`` table."""
    if len(index) < FOOTER_BYTES:
        raise ValueError(f"{name}: truncated: {len(index)} bytes, shorter than the table footer")
    if int.from_bytes(index[-8:], "little") != TABLE_MAGIC:
        raise ValueError(f"{name}: bad magic: not a TensorFlow tensor-bundle index, or truncated")
    footer = _Reader(index[-FOOTER_BYTES:-8], f"{name}: footer")
    footer.varint(), footer.varint()  # the metaindex handle: no filter blocks in bundles
    top = _read_block(index, footer.varint(), footer.varint(), name, check_crc)
    entries: dict[str, bytes] = {}
    for _separator, value in _block_entries(top, name):
        block = _read_block(index, *_handle(value, name), name, check_crc)
        for key, entry in _block_entries(block, name):
            text = key.decode("utf-8", errors="replace")
            if text in entries:
                raise ValueError(f"{name}: corrupt table: key {text!r} appears twice")
            entries[text] = entry
    return entries


# The protos ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """Where one tensor lives: BundleEntryProto, decoded."""

    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc: int | None  # masked crc32c of the bytes; None when the writer left it out
    sliced: bool


def _fields(data: bytes, what: str):
    """``(field number, value)`` of a protobuf message: ints for varint/fixed, bytes else."""
    reader = _Reader(data, what)
    while not reader.done():
        tag = reader.varint()
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            yield number, reader.varint()
        elif wire == 1:
            yield number, int.from_bytes(reader.take(8), "little")
        elif wire == 2:
            yield number, reader.take(reader.varint())
        elif wire == 5:
            yield number, int.from_bytes(reader.take(4), "little")
        else:
            raise ValueError(f"{what}: unsupported protobuf wire type {wire}")


def _shape(data: bytes, what: str) -> tuple[int, ...]:
    dims = []
    for number, value in _fields(data, what):
        if number == 2:  # dim { size = 1; name = 2 }
            if not isinstance(value, bytes):
                raise ValueError(f"{what}: malformed shape")
            size = dict((n, v) for n, v in _fields(value, what) if n == 1).get(1, 0)
            dims.append(size - (1 << 64) if size >= 1 << 63 else size)
        elif number == 3 and value:
            raise ValueError(f"{what}: unknown rank")
    return tuple(dims)


def _entry(data: bytes, what: str) -> Entry:
    fields = {1: 0, 2: b"", 3: 0, 4: 0, 5: 0, 6: None}
    sliced = False
    for number, value in _fields(data, what):
        if number == 7:
            sliced = True
        elif number in fields:
            fields[number] = value
    if not isinstance(fields[2], bytes) or any(not isinstance(fields[k], int) for k in (1, 3, 4, 5)):
        raise ValueError(f"{what}: malformed entry")
    return Entry(fields[1], _shape(fields[2], what), fields[3], fields[4], fields[5], fields[6], sliced)


def _header(data: bytes, name: str) -> tuple[int, str]:
    """``(num_shards, byte order '<' or '>')`` from BundleHeaderProto."""
    shards, endian = 0, 0
    for number, value in _fields(data, f"{name}: header"):
        if number == 1:
            shards = value
        elif number == 2:
            endian = value
    if endian not in (0, 1):
        raise ValueError(f"{name}: header: unknown endianness {endian}")
    if shards < 1:
        raise ValueError(f"{name}: header: {shards} shards")
    return shards, "<>"[endian]


# Tensors -------------------------------------------------------------------------------


def _base_dtype(code: int) -> int:
    """The DataType a ``*_REF`` type (value + 100) is stored as."""
    return code - 100 if code > 100 else code


def _dtype(entry: Entry, key: str, name: str) -> np.dtype:
    code = _base_dtype(entry.dtype)
    if code == DT_BFLOAT16:
        return np.dtype("u2")
    if code not in DTYPES:
        label = DTYPE_NAMES.get(code, f"DataType {code}")
        raise ValueError(f"{name}: tensor {key!r} has unsupported dtype {label}")
    return np.dtype(DTYPES[code])


def _tensor(shard: bytes, entry: Entry, key: str, order: str, files: tuple[str, str], check_crc: bool):
    name, data_name = files
    if entry.sliced:
        raise ValueError(f"{name}: tensor {key!r} is partitioned (sliced); not supported")
    dtype = _dtype(entry, key, name).newbyteorder(order)
    if any(d < 0 for d in entry.shape):
        raise ValueError(f"{name}: tensor {key!r} has unknown dimensions {entry.shape}")
    expected = math.prod(entry.shape) * dtype.itemsize
    if entry.size != expected:
        raise ValueError(f"{name}: tensor {key!r}: {entry.size} bytes for shape {entry.shape}")
    if entry.offset + entry.size > len(shard):
        raise ValueError(
            f"{data_name}: truncated: tensor {key!r} needs bytes "
            f"[{entry.offset}, {entry.offset + entry.size}) of {len(shard)}"
        )
    raw = memoryview(shard)[entry.offset : entry.offset + entry.size]
    if check_crc and entry.crc is not None and masked_crc32c(raw) != entry.crc:
        raise ValueError(f"{data_name}: crc mismatch of tensor {key!r}")
    array = np.frombuffer(raw, dtype=dtype).reshape(entry.shape)
    if _base_dtype(entry.dtype) == DT_BFLOAT16:  # the top half of a float32
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(dtype.newbyteorder("="))  # a native-order copy that owns its memory


def _index(prefix: str | Path, check_crc: bool) -> tuple[int, str, dict[str, Entry]]:
    """``(num_shards, byte order, entries)`` of the bundle's ``.index``."""
    name = str(prefix) + ".index"
    entries = _table(Path(name).read_bytes(), name, check_crc)
    if "" not in entries:
        raise ValueError(f"{name}: corrupt table: no bundle header (empty key)")
    shards, order = _header(entries.pop(""), name)
    parsed = {key: _entry(value, f"{name}: entry {key!r}") for key, value in entries.items()}
    stray = sorted(k for k, e in parsed.items() if e.shard >= shards)
    if stray:
        raise ValueError(f"{name}: tensors {stray} point to shards beyond the {shards} declared")
    return shards, order, parsed


def read_index(prefix: str | Path, check_crc: bool = True) -> dict[str, Entry]:
    """What the bundle at ``prefix`` holds, tensor name -> :class:`Entry`, from its
    ``.index`` alone (the data shards are not read). Errors as :func:`read_bundle`."""
    return _index(prefix, check_crc)[2]


def read_bundle(prefix: str | Path, check_crc: bool = True) -> dict[str, np.ndarray]:
    """All tensors of the bundle at ``prefix``, by name, as native-order numpy arrays.

    The files are ``str(prefix) + ".index"`` and ``str(prefix) + ".data-SSSSS-of-NNNNN"``
    (for musicnn the prefix is the model directory plus ``"/"``, so they are dotfiles).
    bfloat16 tensors come back as float32 (exactly). ``check_crc`` verifies the masked
    crc32c of every table block and tensor.

    Raises:
        FileNotFoundError: a file of the bundle is missing.
        ValueError: a file is truncated or corrupt (bad magic, crc mismatch of a tensor,
            malformed table) or holds what this reader does not support (compressed blocks,
            string or partitioned tensors); the message names the file and the tensor.
    """
    name = str(prefix) + ".index"
    shards, order, parsed = _index(prefix, check_crc)
    out: dict[str, np.ndarray] = {}
    for shard in range(shards):
        keys = [k for k, e in parsed.items() if e.shard == shard]
        if not keys:
            continue
        data_name = f"{prefix}.data-{shard:05d}-of-{shards:05d}"
        data = Path(data_name).read_bytes()
        for key in keys:
            out[key] = _tensor(data, parsed[key], key, order, (name, data_name), check_crc)
    log.debug("read %d tensors from %s", len(out), prefix)
    return dict(sorted(out.items()))
