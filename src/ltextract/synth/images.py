"""Tiny valid images for synthetic archives: 8x8 JPEGs (RGB and CMYK) and PNGs, each made unique
by a comment, optionally padded to a realistic size with cheap pseudo-random bytes."""
from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass
from typing import Union

MAX_COM = 65_533  # data bytes a JPEG segment length (16 bits, counting itself) allows
NOISE_BYTES = 1 << 22

# An 8x8 RGB baseline JPEG and an 8x8 CMYK (Adobe APP14) one, both written by Pillow.
_RGB = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300100b0c0e0c0a100e0d0e1211101318281a181616"
    "183123251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d71797064785c656763ff"
    "db0043011112121815182f1a1a2f63423842636363636363636363636363636363636363636363636363636363"
    "6363636363636363636363636363636363636363636363ffc00011080008000803012200021101031101ffc400"
    "1500010100000000000000000000000000000005ffc40014100100000000000000000000000000000000ffc400"
    "1501010100000000000000000000000000000406ffc40014110100000000000000000000000000000000ffda00"
    "0c03010002110311003f008e002a87ffd9")
_CMYK = bytes.fromhex(
    "ffd8ffee000e41646f626500640000000000ffdb004300100b0c0e0c0a100e0d0e1211101318281a1816161831"
    "23251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d71797064785c656763ffc000"
    "140800080008044311004d11005911004b1100ffc4001500010100000000000000000000000000000607ffc400"
    "14100100000000000000000000000000000000ffda000e0443004d0059004b00003f00a00d18a80fffd9")
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"

Chunk = Union[bytes, memoryview]


@dataclass(frozen=True)
class Image:
    name: str  # member name inside its tar
    key: int  # makes the content unique
    kind: str = "rgb"  # rgb | cmyk | png


def make_tiny_jpeg(key: int, cmyk: bool = False) -> bytes:
    """A valid 8x8 JPEG made unique by a COM segment holding `key`, right after SOI."""
    base = _CMYK if cmyk else _RGB
    text = b"ltextract synth %d" % key
    return b"".join((base[:2], b"\xff\xfe", struct.pack(">H", len(text) + 2), text, base[2:]))


def make_tiny_png(key: int) -> bytes:
    """A valid 8x8 RGB PNG with `key` in a tEXt chunk (ImageNet has PNGs named .JPEG)."""
    raw = b"".join(b"\x00" + bytes(range(0, 240, 10)) for _ in range(8))
    chunks = ((b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)),
              (b"tEXt", b"Comment\x00ltextract synth %d" % key),
              (b"IDAT", zlib.compress(raw, 9)))
    return b"\x89PNG\r\n\x1a\n" + b"".join(_png_chunk(t, d) for t, d in chunks) + _PNG_IEND


def _png_chunk(kind: bytes, data: Chunk) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + bytes(data) + struct.pack(">I", crc)


class Filler:
    """Pads images to a target size with cheap pseudo-random bytes: slices of one seeded buffer."""

    def __init__(self, rng: random.Random, mean: int):
        self.rng, self.mean = rng, mean
        self.noise = memoryview(rng.randbytes(NOISE_BYTES if mean else 0))

    def content(self, image: Image) -> list[Chunk]:
        if image.kind == "png":
            data = make_tiny_png(image.key)
        else:
            data = make_tiny_jpeg(image.key, image.kind == "cmyk")
        if not self.mean:
            return [data]
        missing = round(self.mean * self.rng.uniform(0.5, 1.5)) - len(data)
        if image.kind == "png":  # one private ancillary chunk, which decoders skip
            pad = self._noise(max(missing - 12, 0))
            return [data[:-12], _png_chunk(b"ltPd", pad), data[-12:]]
        out: list[Chunk] = [data[:2]]
        while missing > 4:
            n = min(missing - 4, MAX_COM)
            out += (b"\xff\xfe" + struct.pack(">H", n + 2), self._noise(n))
            missing -= n + 4
        out.append(data[2:])
        return out

    def _noise(self, n: int) -> memoryview:
        start = self.rng.randrange(len(self.noise) - n + 1)
        return self.noise[start:start + n]
