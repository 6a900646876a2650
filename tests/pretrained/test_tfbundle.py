"""The TF tensor-bundle reader: the real musicnn checkpoint, bundles written here by a tiny
independent writer (dtypes, byte order, shards), and corrupt files that must fail clearly."""

from __future__ import annotations

import shutil
import time
import zipfile

import numpy as np
import pytest

from coaudio.features.musicnn import TENSOR_SHAPES
from coaudio.pretrained.tfbundle import crc32c, masked_crc32c, read_bundle, read_index
from tests.downloads import musicnn_wheel

CHECKPOINT = "musicnn/MSD_musicnn/"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """The MSD_musicnn bundle prefix (a folder plus "/") extracted from the real wheel."""
    folder = tmp_path_factory.mktemp("wheel")
    with zipfile.ZipFile(musicnn_wheel()) as wheel:
        for suffix in (".index", ".data-00000-of-00001"):
            wheel.extract(CHECKPOINT + suffix, folder)
    return f"{folder}/{CHECKPOINT}"


def _copy(prefix: str, tmp_path) -> str:
    """A writable copy of a bundle; returns its prefix."""
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(prefix + suffix, f"{tmp_path}/{suffix}")
    return f"{tmp_path}/"


# ---------------------------------------------------------------------------------- crc32c


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"123456789", 0xE3069283),  # the standard check value
        (bytes(32), 0x8A9136AA),  # RFC 3720 B.4 (iSCSI) test vectors
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (b"", 0),
    ],
)
def test_crc32c_known_values(data, expected):
    assert crc32c(data) == expected


def _crc_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


@pytest.mark.parametrize("size", [1, 4, 255, 256, 257, 1000, 4096, 4097, 70001])
def test_crc32c_vectorised_equals_bitwise(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    assert crc32c(data) == crc32c(data.tobytes()) == _crc_bitwise(data.tobytes())


# ------------------------------------------------------------------- the real checkpoint


def test_reads_the_real_musicnn_checkpoint(checkpoint):
    started = time.perf_counter()
    tensors = read_bundle(checkpoint)
    elapsed = time.perf_counter() - started
    assert len(tensors) == 150
    for name, shape in TENSOR_SHAPES.items():
        assert tensors[name].shape == shape and tensors[name].dtype == np.float32, name
    extra = set(tensors) - set(TENSOR_SHAPES)
    assert extra == {n for n in tensors if "/Adam" in n} | {"beta1_power", "beta2_power"}
    assert len(extra) == 86
    assert sum(int(np.prod(s)) for s in TENSOR_SHAPES.values()) == 792_079
    assert sum(t.nbytes for t in tensors.values()) == 9_465_596  # the whole data file
    assert abs(float(tensors["batch_normalization/moving_mean"][0]) - 2.198) < 1e-3
    assert abs(float(tensors["conv2d/kernel"].std()) - 0.018) < 1e-3
    assert elapsed < 5  # measured ~0.1 s with every crc checked


def test_index_alone_describes_the_tensors(checkpoint):
    entries = read_index(checkpoint)
    assert len(entries) == 150
    assert entries["dense/kernel"].shape == (1506, 200)
    assert entries["dense/kernel"].size == 1506 * 200 * 4
    assert {e.dtype for e in entries.values()} == {1}  # DT_FLOAT
    spans = sorted((e.offset, e.offset + e.size) for e in entries.values())
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, no gaps


def test_without_crc_gives_the_same_tensors(checkpoint):
    checked, unchecked = read_bundle(checkpoint), read_bundle(checkpoint, check_crc=False)
    assert checked.keys() == unchecked.keys()
    assert all(np.array_equal(checked[k], unchecked[k]) for k in checked)


def test_a_flipped_data_byte_is_a_crc_error_naming_the_tensor(checkpoint, tmp_path):
    prefix = _copy(checkpoint, tmp_path)
    entry = read_index(prefix)["dense/kernel"]
    data = bytearray(open(prefix + ".data-00000-of-00001", "rb").read())
    data[entry.offset + 1234] ^= 0x10
    open(prefix + ".data-00000-of-00001", "wb").write(bytes(data))
    with pytest.raises(ValueError, match=r"data-00000-of-00001: crc mismatch of tensor 'dense/kernel'"):
        read_bundle(prefix)
    assert not np.array_equal(
        read_bundle(prefix, check_crc=False)["dense/kernel"], read_bundle(checkpoint)["dense/kernel"]
    )


def test_a_truncated_data_file_names_the_tensor(checkpoint, tmp_path):
    prefix = _copy(checkpoint, tmp_path)
    data = open(prefix + ".data-00000-of-00001", "rb").read()
    open(prefix + ".data-00000-of-00001", "wb").write(data[:-100])
    with pytest.raises(ValueError, match=r"data-00000-of-00001: truncated: tensor '.*' needs bytes"):
        read_bundle(prefix, check_crc=False)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda b: b[: len(b) // 2], "bad magic.*or truncated"),
        (lambda b: b[:20], "truncated: 20 bytes"),
        (lambda b: b[:-8] + b"\0" * 8, "bad magic"),
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "crc mismatch in the table block"),
    ],
    ids=["truncated", "stub", "wrong-magic", "flipped-index-byte"],
)
def test_a_damaged_index_is_a_clear_error(checkpoint, tmp_path, damage, message):
    prefix = _copy(checkpoint, tmp_path)
    index = open(prefix + ".index", "rb").read()
    open(prefix + ".index", "wb").write(damage(index))
    with pytest.raises(ValueError, match=message) as caught:
        read_bundle(prefix)
    assert str(tmp_path) in str(caught.value)  # the message names the file


def test_a_missing_data_file_is_file_not_found(checkpoint, tmp_path):
    shutil.copy(checkpoint + ".index", f"{tmp_path}/.index")
    with pytest.raises(FileNotFoundError):
        read_bundle(f"{tmp_path}/")


# --------------------------------------------------- bundles written by an independent writer


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return _varint(number << 3 | 2) + _varint(len(value)) + value
    return _varint(number << 3) + _varint(value)


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A table block with no key sharing (every entry a restart point) and its trailer."""
    body, restarts = b"", []
    for key, value in entries:
        restarts.append(len(body))
        body += _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    restarts = restarts or [0]
    body += b"".join(r.to_bytes(4, "little") for r in restarts) + len(restarts).to_bytes(4, "little")
    return body + b"\0" + masked_crc32c(body + b"\0").to_bytes(4, "little")


def _write_bundle(prefix: str, tensors: dict, order: str = "<", shards: int = 1, **overrides) -> None:
    """``tensors``: name -> (TF dtype code, numpy array, shard). ``overrides``: name -> extra
    BundleEntryProto bytes appended to its entry."""
    data = [b""] * shards
    entries = [(b"", _field(1, shards) + _field(2, order == ">") + _field(3, _field(1, 1)))]
    for name, (code, array, shard) in sorted(tensors.items()):
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder(order)).tobytes()
        shape = b"".join(_field(2, _field(1, d)) for d in array.shape)
        proto = _field(1, code) + _field(2, shape) + _field(3, shard) + _field(4, len(data[shard]))
        proto += _field(5, len(raw)) + b"\x35" + masked_crc32c(raw).to_bytes(4, "little")
        entries.append((name.encode(), proto + overrides.get(name, b"")))
        data[shard] += raw
    table = _block(entries)
    index_block = _block([(b"\xff", _varint(0) + _varint(len(table) - 5))])
    meta_block = _block([])
    meta_at = len(table) + len(index_block)
    handles = (
        _varint(meta_at) + _varint(len(meta_block) - 5) + _varint(len(table)) + _varint(len(index_block) - 5)
    )
    footer = handles.ljust(40, b"\0") + (0xDB4775248B80FB57).to_bytes(8, "little")
    with open(prefix + ".index", "wb") as f:
        f.write(table + index_block + meta_block + footer)
    for shard, blob in enumerate(data):
        with open(f"{prefix}.data-{shard:05d}-of-{shards:05d}", "wb") as f:
            f.write(blob)


MIXED = {
    "a/float": (1, np.arange(6, dtype=np.float32).reshape(2, 3) / 7, 0),
    "b/double": (2, np.linspace(-1, 1, 5), 0),
    "c/int32": (3, np.array([-5, 7, 2**31 - 1], dtype=np.int32), 0),
    "d/uint8": (4, np.arange(250, 256, dtype=np.uint8), 0),
    "e/int64": (9, np.array([[-(2**40)], [3]], dtype=np.int64), 0),
    "f/bool": (10, np.array([True, False, True]), 0),
    "g/half": (19, np.array([1.5, -65504, 6e-8], dtype=np.float16), 0),
    "h/scalar": (1, np.array(3.25, dtype=np.float32), 0),
    "i/empty": (1, np.zeros((0, 4), dtype=np.float32), 0),
    "j/complex": (8, np.array([1 + 2j, -3j], dtype=np.complex64), 0),
    "k/ref_float": (101, np.array([0.5], dtype=np.float32), 0),
}


@pytest.mark.parametrize("order", ["<", ">"], ids=["little-endian", "big-endian"])
def test_dtypes_shapes_and_byte_orders_round_trip(tmp_path, order):
    _write_bundle(f"{tmp_path}/m", MIXED, order=order)
    got = read_bundle(f"{tmp_path}/m")
    assert got.keys() == MIXED.keys()
    for name, (_, array, _) in MIXED.items():
        assert got[name].dtype == array.dtype.newbyteorder("=") and got[name].shape == array.shape, name
        assert np.array_equal(got[name], array), name
        assert got[name].dtype.isnative and got[name].flags.writeable


def test_bfloat16_is_widened_to_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 2.0**100], dtype=np.float32)
    top_halves = (values.view(np.uint32) >> 16).astype(np.uint16)  # exact bfloat16 values
    _write_bundle(f"{tmp_path}/m", {"w": (14, top_halves, 0)})
    got = read_bundle(f"{tmp_path}/m")["w"]
    assert got.dtype == np.float32 and np.array_equal(got, values)


def test_several_shards(tmp_path):
    tensors = {"x": (1, np.ones(3, np.float32), 0), "y": (3, np.arange(4, dtype=np.int32), 2)}
    _write_bundle(f"{tmp_path}/m", tensors, shards=3)
    got = read_bundle(f"{tmp_path}/m")
    assert np.array_equal(got["x"], np.ones(3)) and np.array_equal(got["y"], np.arange(4))


def test_string_tensors_are_refused_by_name(tmp_path):
    _write_bundle(f"{tmp_path}/m", {"names": (7, np.zeros(4, dtype=np.uint8), 0)})
    with pytest.raises(ValueError, match=r"tensor 'names' has unsupported dtype DT_STRING"):
        read_bundle(f"{tmp_path}/m")


def test_partitioned_tensors_are_refused(tmp_path):
    tensors = {"part": (1, np.ones(2, np.float32), 0)}
    _write_bundle(f"{tmp_path}/m", tensors, part=_field(7, b""))
    with pytest.raises(ValueError, match=r"'part' is partitioned"):
        read_bundle(f"{tmp_path}/m")


def test_a_size_that_does_not_match_the_shape_is_refused(tmp_path):
    tensors = {"w": (1, np.ones(4, np.float32), 0)}
    _write_bundle(f"{tmp_path}/m", tensors, w=_field(5, 12))  # a later field wins in protobuf
    with pytest.raises(ValueError, match=r"tensor 'w': 12 bytes for shape \(4,\)"):
        read_bundle(f"{tmp_path}/m")
