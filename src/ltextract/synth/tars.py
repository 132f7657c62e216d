"""Tar archives assembled in memory as chunks, headers from a per-format template: `tarfile`
costs ~10x more per member, and the benchmark writes over a million of them."""
from __future__ import annotations

import random
import tarfile
from typing import BinaryIO, Sequence

from ltextract.synth.images import Chunk, Filler, Image

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
MTIME = 1_336_000_000  # May 2012, when ILSVRC2012 was packed
BLOCK = 512
RECORD = 20 * BLOCK  # tar pads archives to whole records


class Tar:
    """One tar being assembled in memory as a list of chunks; headers from a per-format template."""

    def __init__(self, fmt: str):
        self.format = FORMATS[fmt]
        self.chunks: list[Chunk] = []
        self.size = 0
        head = self._info("x", tarfile.REGTYPE).tobuf(self.format, "utf-8", "surrogateescape")
        self._mid, self._mtime, self._tail = head[100:124], head[136:148], head[156:]
        # the checksum counts its own field as eight spaces
        self._base = sum(head) - sum(head[:100]) - sum(head[124:136]) - sum(head[148:156]) + 256

    @staticmethod
    def _info(name: str, kind: bytes, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.size, info.linkname, info.mtime = kind, size, linkname, MTIME
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.uid = info.gid = 1000
        info.uname = info.gname = "ilsvrc"
        return info

    def header(self, name: str, size: int) -> bytes:
        """Header block(s) of a regular file; the template path matches tarfile byte for byte."""
        raw = name.encode("utf-8", "surrogateescape")
        if len(raw) > 100 or not name.isascii():
            return self._info(name, tarfile.REGTYPE, size).tobuf(self.format, "utf-8",
                                                                 "surrogateescape")
        size_field = b"%011o\x00" % size
        checksum = self._base + sum(raw) + sum(size_field)
        return b"".join((raw.ljust(100, b"\x00"), self._mid, size_field, self._mtime,
                         b"%06o\x00 " % checksum, self._tail))

    def add(self, name: str, content: Sequence[Chunk]) -> None:
        size = sum(len(c) for c in content)
        self._append(self.header(name, size), content, size)

    def add_special(self, name: str, kind: bytes, linkname: str = "") -> None:
        self._append(self._info(name, kind, 0, linkname).tobuf(self.format, "utf-8",
                                                                "surrogateescape"), (), 0)

    def _append(self, header: bytes, content: Sequence[Chunk], size: int) -> None:
        pad = -size % BLOCK
        self.chunks.append(header)
        self.chunks.extend(content)
        if pad:
            self.chunks.append(bytes(pad))
        self.size += len(header) + size + pad

    def finish(self) -> None:
        """End-of-archive: two zero blocks, then zeros to a whole record, as tar(1) writes."""
        end = 2 * BLOCK
        self.chunks.append(bytes(end + -(self.size + end) % RECORD))
        self.size += end + -(self.size + end) % RECORD



def long_name(name: str, rng: random.Random, fmt: str) -> str:
    """`name` behind enough "./" to exceed 100 chars; ustar must stay splittable (<= 255)."""
    if fmt == "ustar":
        target = rng.randrange(101, 250)
    else:  # sometimes past 512, so a GNU 'L' record spans two blocks
        target = rng.choice((rng.randrange(101, 400), 600))
    return "./" * -(-(target - len(name)) // 2) + name



def fill_tar(tar: Tar, images: list[Image], specials: list[tuple[str, bytes, str]],
              filler: Filler, rng: random.Random) -> None:
    """Write images in order, the first special before them and the others at random places."""
    slots: dict[int, list[tuple[str, bytes, str]]] = {}
    for i, special in enumerate(specials):
        slots.setdefault(rng.randrange(len(images) + 1) if i else 0, []).append(special)
    for i, image in enumerate(images):
        for special in slots.pop(i, ()):
            tar.add_special(*special)
        tar.add(image.name, filler.content(image))
    for rest in slots.values():
        for special in rest:
            tar.add_special(*special)
    if specials:
        tar.add(f"notes/{'a' * 60}/{'b' * 60}.txt", [b"not an image, no list names it\n"])
    tar.finish()



def flush(f: BinaryIO, tar: Tar) -> None:
    """Write and drop the chunks gathered so far; small ones are joined to cut write calls."""
    small: list[Chunk] = []
    for chunk in tar.chunks:
        if len(chunk) < 1 << 16:
            small.append(chunk)
            continue
        if small:
            f.write(b"".join(small))
            small = []
        f.write(chunk)
    if small:
        f.write(b"".join(small))
    tar.chunks = []
