"""TFDS's records: a `tf.train.Example` {file_name, image, label} as protobuf wire bytes, and the
TFRecord framing around it.

The Example is assembled here rather than through the protobuf library: its length must be known
from the file name, the image's size and the label before a byte of the image is read (the shard
plan and every record's offset depend on it), and the image then goes to the file between a
fixed head and tail without being copied into a message. The bytes are those of
`SerializeToString(deterministic=True)` (map entries in key order); the tests check them against
the protobuf library. TFDS itself serializes the three entries in an order that varies from
process to process, so its records equal these once parsed (or re-serialized deterministically).

TFRecord: u64le length, u32le masked crc32c(length), data, u32le masked crc32c(data).
"""
from __future__ import annotations

import struct
from functools import lru_cache
from typing import BinaryIO, Iterator, NamedTuple

OVERHEAD = 16  # TFRecord bytes around each record
_MASK_DELTA = 0xA282EAD8
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _head(field: int, length: int) -> bytes:
    """The tag and length of a length-delimited field (field numbers below 16: one tag byte)."""
    return _SMALL[field << 3 | 2] + _varint(length)


def _ld(field: int, payload: bytes) -> bytes:
    return _head(field, len(payload)) + payload


def _entry(key: bytes, feature: bytes) -> bytes:
    """One `Features.feature` map entry: {1: key, 2: Feature}."""
    return _ld(1, _ld(1, key) + _ld(2, feature))


_IMAGE_KEY = _ld(1, b"image")


@lru_cache(maxsize=4096)
def _label_entry(label: int) -> bytes:
    return _entry(b"label", _ld(3, _ld(1, _varint(label))))


def example_parts(file_name: str, size: int, label: int) -> tuple[bytes, bytes]:
    """(head, tail) such that head + image + tail is the Example for an image of `size` bytes:
    Example{1: Features{1: entries file_name, image, label}}; Feature bytes_list=1, int64_list=3
    (packed); BytesList / Int64List value=1."""
    name = _entry(b"file_name", _ld(1, _ld(1, file_name.encode("utf-8"))))
    tail = _label_entry(label)
    value = _head(1, size)  # BytesList.value
    feature = _head(1, len(value) + size)  # Feature.bytes_list
    feature_len = len(feature) + len(value) + size
    middle = _IMAGE_KEY + _head(2, feature_len) + feature + value
    image_head = _head(1, len(middle) + size) + middle
    return _head(1, len(name) + len(image_head) + size + len(tail)) + name + image_head, tail


def _vlen(n: int) -> int:
    return (n.bit_length() + 6) // 7 or 1


def _ld_len(n: int) -> int:
    return 1 + _vlen(n) + n


@lru_cache(maxsize=None)
def _fixed_length(name_bytes: int, label: int) -> int:
    """The bytes of the file_name and label map entries."""
    name = _ld_len(_ld_len(9) + _ld_len(_ld_len(_ld_len(name_bytes))))
    return name + _ld_len(_ld_len(5) + _ld_len(_ld_len(_ld_len(_vlen(label)))))


def record_length(file_name: str, size: int, label: int) -> int:
    """len(head + image + tail) of `example_parts`, by arithmetic alone (a plan makes one per
    example)."""
    feature = _ld_len(_ld_len(size))
    image_payload = 8 + _vlen(feature) + feature  # the key "image" (7 bytes) and the feature
    name_bytes = len(file_name) if file_name.isascii() else len(file_name.encode("utf-8"))
    entries = _fixed_length(name_bytes, label) + 1 + _vlen(image_payload) + image_payload
    return 1 + _vlen(entries) + entries


def masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data_crc: int, length: int, crc32c) -> tuple[bytes, bytes]:
    """The TFRecord bytes before and after a record of `length` bytes whose crc32c is
    `data_crc`; `crc32c` computes a checksum (google_crc32c.value)."""
    size = _U64.pack(length)
    return size + _U32.pack(masked(crc32c(size))), _U32.pack(masked(data_crc))


class Damaged(Exception):
    """A TFRecord file that does not frame or check out."""


def read_records(f: BinaryIO, crc32c) -> Iterator[bytes]:
    """Every record of a TFRecord file, both checksums checked."""
    while True:
        head = f.read(12)
        if not head:
            return
        if len(head) < 12:
            raise Damaged("ends inside a record header")
        length = _U64.unpack_from(head)[0]
        if _U32.unpack_from(head, 8)[0] != masked(crc32c(head[:8])):
            raise Damaged("a record length fails its checksum")
        data = f.read(length)
        tail = f.read(4)
        if len(data) < length or len(tail) < 4:
            raise Damaged("ends inside a record")
        if _U32.unpack(tail)[0] != masked(crc32c(data)):
            raise Damaged("a record fails its checksum")
        yield data


class Example(NamedTuple):
    file_name: str
    image: bytes
    label: int


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise Damaged("a malformed varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, bytes]]:
    """(field number, payload) of each length-delimited field; anything else is damage here."""
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        if tag & 7 != 2:
            raise Damaged(f"an unexpected wire type {tag & 7}")
        length, pos = _read_varint(buf, pos)
        if pos + length > len(buf):
            raise Damaged("a field runs past its message")
        yield tag >> 3, buf[pos:pos + length]
        pos += length


def parse_example(record: bytes) -> Example:
    """The three features of an imagenet_lt Example, whatever the order of its map entries."""
    found: dict[str, tuple[int, bytes]] = {}
    for field, features in _fields(record):
        for _, entry in (_fields(features) if field == 1 else ()):
            parts = dict(_fields(entry))
            kind, values = next(_fields(parts.get(2, b"")), (0, b""))
            found[parts.get(1, b"").decode("utf-8", "replace")] = (kind, next(_fields(values), (0, b""))[1])
    try:
        (k1, name), (k2, image), (k3, label) = found["file_name"], found["image"], found["label"]
    except KeyError as e:
        raise Damaged(f"no {e.args[0]} feature") from None
    if (k1, k2, k3) != (1, 1, 3) or set(found) != {"file_name", "image", "label"}:
        raise Damaged(f"features {sorted(found)} of unexpected kinds")
    value, end = _read_varint(label, 0)
    if end != len(label):
        raise Damaged("a label that is not one int64")
    return Example(name.decode("utf-8", "surrogateescape"), image, value)
