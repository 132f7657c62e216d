"""ILSVRC2012-shaped tars and long-tailed ImageNet-LT lists, for the demo, tests and benchmark.

The train tar is an outer tar of class tars `<wnid>.tar`; the val tar is flat. Both hold tiny valid
images (plus optional padding), with the header formats, name prefixes, long names and odd members
that real-world copies of the archives show. Output is byte-for-byte deterministic per spec.
Headers of ordinary members are assembled from a template because `tarfile` costs ~10x more per
member, and the benchmark writes over a million of them.
"""
from __future__ import annotations

import contextlib
import math
import random
import struct
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence, Union

from ltextract.base import TRAIN_TAR, VAL_TAR, atomic_writer, label_of, wnids

FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}
PREFIXES = ("", "./", "wnid/")
SPLITS = ("train", "val", "test")
MTIME = 1_336_000_000  # May 2012, when ILSVRC2012 was packed
BLOCK = 512
RECORD = 20 * BLOCK  # tar pads archives to whole records
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

#: (rank fraction, train count) knots of the real ImageNet-LT curve, interpolated in log space:
#: 1280 down to 5, ~115.8K in all, 385 / 479 / 136 classes with >100 / 20-100 / <20 at 1000 classes.
_LT_KNOTS = ((0.0, 1280.0), (0.02, 370.0), (0.385, 100.5), (0.864, 19.5), (1.0, 5.0))

Chunk = Union[bytes, memoryview]


@dataclass(frozen=True)
class SynthSpec:
    """What to generate; the defaults make a small (~300 KB), realistic demo in well under 1 s."""
    classes: int = 10  # spread evenly over the sorted 1000 wnids, always including label 0
    seed: int = 0
    train_max: int = 40  # largest train count; counts fall off along the ImageNet-LT curve
    train_min: int = 2
    val_per_class: int = 4
    test_per_class: int = 5
    unused_per_class: int = 3  # members of each class tar that no list names
    fill_to: int = 0  # if > 0, add unused members until each class tar holds this many images
    payload: int = 0  # 0: tiny images (~300 B); > 0: mean image size, varying +-50%
    fmt: str = "gnu"  # header format of all three tars: ustar | gnu | pax
    prefix: str = ""  # member name prefix inside class tars: "" | "./" | "wnid/"
    long_names: bool = False  # some listed members' names > 100 chars ("././.../<name>")
    extras: bool = False  # dirs, links, a FIFO, an unlisted long-named file, outer README
    counts: tuple[int, ...] | None = None  # explicit train counts per chosen class, in wnid order

    def __post_init__(self) -> None:
        if not 1 <= self.classes <= 1000:
            raise ValueError(f"classes must be 1..1000, not {self.classes}")
        if self.fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {sorted(FORMATS)}, not {self.fmt!r}")
        if self.prefix not in PREFIXES:
            raise ValueError(f"prefix must be one of {PREFIXES}, not {self.prefix!r}")
        if self.counts is not None and (len(self.counts) != self.classes or min(self.counts) < 0):
            raise ValueError("counts needs one non-negative train count per class")
        if not 0 <= self.train_min <= self.train_max:
            raise ValueError("need 0 <= train_min <= train_max")
        if min(self.val_per_class, self.test_per_class, self.unused_per_class, self.payload) < 0:
            raise ValueError("per-class counts and payload must be non-negative")


@dataclass(frozen=True)
class SynthResult:
    manual_dir: Path
    train_tar: Path
    val_tar: Path
    lists: dict[str, Path]  # split -> list file
    train_counts: dict[str, int]  # wnid -> entries in the train list
    members: int  # image members written across both tars (not counting extras)


@dataclass(frozen=True)
class _Image:
    name: str  # member name inside its tar
    key: int  # makes the content unique
    kind: str = "rgb"  # rgb | cmyk | png


def lt_shape(classes: int = 1000, per_class: int = 1250, **overrides: object) -> SynthSpec:
    """The ImageNet-LT shape: train 1280..5, val 20, test 50, class tars filled to `per_class`."""
    fields = dict(classes=classes, train_max=1280, train_min=5, val_per_class=20,
                  test_per_class=50, unused_per_class=0, fill_to=per_class)
    fields.update(overrides)
    return SynthSpec(**fields)  # type: ignore[arg-type]


def chosen_wnids(classes: int) -> list[str]:
    """Evenly spread so small sets still span the label range, starting at label 0."""
    return [wnids()[i * 1000 // classes] for i in range(classes)]


def lt_counts(classes: int, high: int, low: int) -> list[int]:
    """Train counts from `high` down to `low`, descending, following the ImageNet-LT curve."""
    lo_knot, hi_knot = math.log(_LT_KNOTS[-1][1]), math.log(_LT_KNOTS[0][1])
    out = []
    for i in range(classes):
        r = i / (classes - 1) if classes > 1 else 0.0
        for (r0, c0), (r1, c1) in zip(_LT_KNOTS, _LT_KNOTS[1:]):
            if r <= r1:
                t = (r - r0) / (r1 - r0)
                log_c = math.log(c0) + t * (math.log(c1) - math.log(c0))
                break
        frac = (log_c - lo_knot) / (hi_knot - lo_knot)
        out.append(round(low * (high / low) ** frac) if low > 0 else round(high * frac))
    return out


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


class _Filler:
    """Pads images to a target size with cheap pseudo-random bytes: slices of one seeded buffer."""

    def __init__(self, rng: random.Random, mean: int):
        self.rng, self.mean = rng, mean
        self.noise = memoryview(rng.randbytes(NOISE_BYTES if mean else 0))

    def content(self, image: _Image) -> list[Chunk]:
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


class _Tar:
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


def _long(name: str, rng: random.Random, fmt: str) -> str:
    """`name` behind enough "./" to exceed 100 chars; ustar must stay splittable (<= 255)."""
    if fmt == "ustar":
        target = rng.randrange(101, 250)
    else:  # sometimes past 512, so a GNU 'L' record spans two blocks
        target = rng.choice((rng.randrange(101, 400), 600))
    return "./" * -(-(target - len(name)) // 2) + name


def _member_name(file: str, wnid: str, prefix: str) -> str:
    return f"{wnid}/{file}" if prefix == "wnid/" else prefix + file


def _fill_tar(tar: _Tar, images: list[_Image], specials: list[tuple[str, bytes, str]],
              filler: _Filler, rng: random.Random) -> None:
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


def make_manual_dir(out: Path, spec: SynthSpec = SynthSpec()) -> SynthResult:
    """Write both tars and the three lists into `out`; each file appears only when complete."""
    rng = random.Random(spec.seed)
    filler = _Filler(random.Random(spec.seed + 1), spec.payload)  # names do not depend on payload
    chosen = chosen_wnids(spec.classes)
    if spec.counts is not None:
        counts = list(spec.counts)
    else:
        counts = lt_counts(spec.classes, spec.train_max, spec.train_min)
        rng.shuffle(counts)  # the head is not the lowest labels, as in ImageNet-LT
    lines: dict[str, list[str]] = {s: [] for s in SPLITS}
    keys = iter(range(1, 1 << 62))
    odd_done = False
    members = 0
    paths = {s: out / f"ImageNet_LT_{s}.txt" for s in SPLITS}
    with contextlib.ExitStack() as stack:  # no final name changes unless everything was written
        f, val_f, *list_fs = (stack.enter_context(atomic_writer(p))
                              for p in (out / TRAIN_TAR, out / VAL_TAR, *paths.values()))
        outer = _Tar(spec.fmt)
        if spec.extras:
            outer.add_special("extras/", tarfile.DIRTYPE)
        for c, (wnid, count) in enumerate(zip(chosen, counts)):
            inner = _Tar(spec.fmt)
            members += _class_tar(inner, wnid, count, spec, rng, filler, keys, lines,
                                  odd=not odd_done and count >= 2)
            odd_done = odd_done or count >= 2
            outer.add(f"{wnid}.tar", inner.chunks)
            if spec.extras and c == len(chosen) // 2:
                outer.add("README", [b"Synthetic ILSVRC2012 train tar written by ltextract.\n"])
            _flush(f, outer)
        outer.finish()
        _flush(f, outer)
        val = _Tar(spec.fmt)
        members += _val_tar(val, chosen, spec, rng, filler, keys, lines["test"])
        _flush(val_f, val)
        for split, list_f in zip(SPLITS, list_fs):
            list_f.write("".join(lines[split]).encode("ascii"))
    return SynthResult(out, out / TRAIN_TAR, out / VAL_TAR, paths,
                       dict(zip(chosen, counts)), members)


def _class_tar(tar: _Tar, wnid: str, count: int, spec: SynthSpec, rng: random.Random,
               filler: _Filler, keys: Iterator[int], lines: dict[str, list[str]], odd: bool) -> int:
    """One class tar; its train and val list lines go to `lines`. `odd`: make a PNG and a CMYK."""
    label = label_of()[wnid]
    n_listed = count + spec.val_per_class
    n_unused = max(spec.unused_per_class, spec.fill_to - n_listed)
    total = n_listed + n_unused + 3  # 3 spare names for extras
    names = [f"{wnid}_{n}.JPEG" for n in rng.sample(range(1, 30 * total + 1000), total)]
    listed, unused, spare = names[:n_listed], names[n_listed:-3], names[-3:]
    lines["train"] += (f"train/{wnid}/{file} {label}\n" for file in listed[:count])
    lines["val"] += (f"train/{wnid}/{file} {label}\n" for file in listed[count:])
    kinds = {listed[0]: "png", listed[1]: "cmyk"} if odd else {}
    order = listed + unused
    rng.shuffle(order)  # list order (sample order) and tar order differ, as in ImageNet-LT
    long = set(rng.sample(listed, min(3, len(listed)))) if spec.long_names else set()
    images = []
    for file in order:
        name = _member_name(file, wnid, spec.prefix)
        images.append(_Image(_long(name, rng, spec.fmt) if file in long else name, next(keys),
                             kinds.get(file, "rgb")))
    specials = []
    if spec.extras:
        folder = "./" if spec.prefix == "./" else f"{wnid}/"
        link_to = next((i.name for i in images if len(i.name) <= 100), "missing.JPEG")
        spare = [_member_name(s, wnid, spec.prefix) for s in spare]
        specials = [(folder, tarfile.DIRTYPE, ""), (spare[0], tarfile.SYMTYPE, "../../etc/passwd"),
                    (spare[1], tarfile.LNKTYPE, link_to), (spare[2], tarfile.FIFOTYPE, ""),
                    ("../evil.JPEG", tarfile.SYMTYPE, "/etc/passwd"),
                    ("/etc/evil.JPEG", tarfile.LNKTYPE, link_to)]
    _fill_tar(tar, images, specials, filler, rng)
    return len(images)


def _val_tar(tar: _Tar, chosen: list[str], spec: SynthSpec, rng: random.Random, filler: _Filler,
             keys: Iterator[int], test_lines: list[str]) -> int:
    """The flat val tar; every image is in the test list, classes shuffled across indices."""
    classes = [w for w in chosen for _ in range(spec.test_per_class)]
    rng.shuffle(classes)
    files = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, len(classes) + 1)]
    long = set(rng.sample(files, min(3, len(files)))) if spec.long_names else set()
    images = [_Image(_long(file, rng, spec.fmt) if file in long else file, next(keys))
              for file in files]
    test_lines += sorted(f"val/{w}/{file} {label_of()[w]}\n" for w, file in zip(classes, files))
    specials = []
    if spec.extras:
        spare = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(len(files) + 1, len(files) + 3)]
        specials = [("./", tarfile.DIRTYPE, ""), (spare[1], tarfile.FIFOTYPE, ""),
                    (spare[0], tarfile.SYMTYPE, files[0] if files else "none.JPEG")]
    _fill_tar(tar, images, specials, filler, rng)
    return len(images)


def _flush(f: BinaryIO, tar: _Tar) -> None:
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
