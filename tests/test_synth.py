"""ltextract.synth: tars and lists checked with the stdlib tarfile reader and raw header bytes."""
from __future__ import annotations

import io
import struct
import tarfile
import zlib
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ltextract import synth
from ltextract.archives import TRAIN_TAR, VAL_TAR
from ltextract.benchmarks.classes import wnids
from ltextract.synth import SynthSpec, lt_counts, lt_shape, make_manual_dir
from ltextract.synth.images import Filler, make_tiny_jpeg
from ltextract.synth.tars import Tar

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def normalise(name: str, wnid: str = "") -> str:
    """Reference normalisation: leading "./" segments, then a "<wnid>/" folder, removed."""
    while name.startswith("./"):
        name = name[2:]
    return name[len(wnid) + 1:] if wnid and name.startswith(wnid + "/") else name


def read_tar(data: bytes, wnid: str = "") -> tuple[dict[str, bytes], list[tarfile.TarInfo]]:
    """Regular members by normalised name, and every member, read by tarfile."""
    files, infos = {}, []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar:
            infos.append(info)
            if info.isreg():
                name = normalise(info.name, wnid)
                assert name not in files, name
                files[name] = tar.extractfile(info).read()
    return files, infos


def read_result(res: synth.SynthResult) -> tuple[dict[str, dict[str, bytes]], dict[str, bytes]]:
    """(wnid -> class tar files, val tar files)."""
    outer, _ = read_tar(res.train_tar.read_bytes())
    classes = {name[:-4]: read_tar(data, name[:-4])[0] for name, data in outer.items()
               if name.endswith(".tar")}
    return classes, read_tar(res.val_tar.read_bytes())[0]


def images(files: dict[str, bytes]) -> dict[str, bytes]:
    return {n: d for n, d in files.items() if n.endswith(".JPEG")}


def parse_lists(res: synth.SynthResult) -> dict[str, list[tuple[str, str, str, int]]]:
    """split -> (top, wnid, file, label) per line; also checks the line format itself."""
    out = {}
    for split, path in res.lists.items():
        text = path.read_bytes().decode("ascii")
        assert (text == "" or text.endswith("\n")) and "\r" not in text
        rows = []
        for line in text.splitlines():
            rel, label = line.split(" ")
            top, wnid, file = rel.split("/")
            rows.append((top, wnid, file, int(label)))
        out[split] = rows
    return out


def raw_headers(tar: bytes) -> list[bytes]:
    """Every header block, meta records included, walked by offsets alone."""
    heads, pos = [], 0
    while tar[pos:pos + 512].strip(b"\x00"):
        block = tar[pos:pos + 512]
        heads.append(block)
        size = int(block[124:136].split(b"\x00")[0].strip() or b"0", 8)
        pos += 512 + -(-size // 512) * 512
    return heads


def all_raw_headers(res: synth.SynthResult) -> list[bytes]:
    data = res.train_tar.read_bytes()
    heads = raw_headers(data) + raw_headers(res.val_tar.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as outer:
        for m in outer:
            if m.name.endswith(".tar"):
                heads += raw_headers(data[m.offset_data:m.offset_data + m.size])
    return heads


def jpeg_segments(data: bytes) -> list[int]:
    """Markers from SOI to SOS, following segment lengths; asserts the chain and the EOI."""
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    pos, markers = 2, []
    while True:
        assert data[pos] == 0xFF, pos
        marker = data[pos + 1]
        markers.append(marker)
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        assert length >= 2
        pos += 2 + length
        if marker == 0xDA:
            return markers


def png_ok(data: bytes) -> bool:
    assert data[:8] == PNG_SIGNATURE
    pos, kinds = 8, []
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        kinds.append(kind)
        pos += 12 + n
    return kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds


def check_consistent(res: synth.SynthResult, spec: SynthSpec) -> None:
    """What every spec must meet: lists name existing members, labels, counts, a flat val tar."""
    all_classes, all_val = read_result(res)
    classes = {w: images(files) for w, files in all_classes.items()}
    val = images(all_val)
    chosen = synth.chosen_wnids(spec.classes)
    assert sorted(classes) == chosen and wnids()[0] in classes
    lists = parse_lists(res)
    for split, rows in lists.items():
        for top, wnid, file, label in rows:
            assert top == ("val" if split == "test" else "train")
            assert label == wnids().index(wnid)
            assert file in (val if split == "test" else classes[wnid]), (split, file)
    train = {(w, f) for _, w, f, _ in lists["train"]}
    valid = {(w, f) for _, w, f, _ in lists["val"]}
    assert not train & valid
    assert len(train) == len(lists["train"]) and len(valid) == len(lists["val"])
    assert Counter(w for w, _ in train) == Counter(res.train_counts)
    assert set(res.train_counts) == set(chosen)
    assert Counter(w for w, _ in valid) == Counter({w: spec.val_per_class for w in chosen})
    for wnid, files in classes.items():
        listed = res.train_counts[wnid] + spec.val_per_class
        assert len(files) == max(listed + spec.unused_per_class, spec.fill_to)
    assert sorted(val) == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, len(val) + 1)]
    assert len(val) == spec.classes * spec.test_per_class
    assert sorted(f for _, _, f, _ in lists["test"]) == sorted(val)
    per_class = Counter({w: spec.test_per_class for w in chosen})
    assert Counter(w for _, w, _, _ in lists["test"]) == per_class
    assert res.members == len(val) + sum(map(len, classes.values()))


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax"])
@pytest.mark.parametrize("prefix", ["", "./", "wnid/"])
def test_lists_match_tars(tmp_path, fmt, prefix):
    spec = SynthSpec(classes=5, seed=2, fmt=fmt, prefix=prefix, long_names=True, extras=True)
    res = make_manual_dir(tmp_path, spec)
    check_consistent(res, spec)
    heads = all_raw_headers(res)
    kinds = Counter(h[156:157] for h in heads)
    magic = b"ustar  \x00" if fmt == "gnu" else b"ustar\x0000"
    assert all(h[257:265] == magic for h in heads)
    assert (kinds[b"L"] > 0) == (fmt == "gnu") and (kinds[b"x"] > 0) == (fmt == "pax")
    if fmt == "ustar":  # long names go to the prefix field
        assert any(h[345:346] != b"\x00" for h in heads)
    with tarfile.open(res.train_tar) as outer:
        inner = tarfile.open(fileobj=outer.extractfile(f"{wnids()[0]}.tar"))
        names = [m.name for m in inner.getmembers() if m.isreg()]
    assert any(len(n) > 100 for n in names)
    if prefix:
        assert all(normalise(n).startswith(wnids()[0] + "/") == (prefix == "wnid/") for n in names
                   if n.endswith(".JPEG"))


def test_defaults_small_quick_and_realistic(tmp_path):
    res = make_manual_dir(tmp_path)
    spec = SynthSpec()
    check_consistent(res, spec)
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert total < 1 << 20
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [TRAIN_TAR, VAL_TAR] + [f"ImageNet_LT_{s}.txt" for s in ("train", "val", "test")])
    counts = sorted(res.train_counts.values())
    assert counts[0] == spec.train_min and counts[-1] == spec.train_max
    assert list(res.train_counts.values()) != sorted(counts, reverse=True)  # head not at label 0


def test_orders_differ_and_numbers_are_not_contiguous(tmp_path):
    res = make_manual_dir(tmp_path, SynthSpec(classes=2, train_max=30))
    wnid = max(res.train_counts, key=res.train_counts.get)
    with tarfile.open(res.train_tar) as outer:
        inner = tarfile.open(fileobj=outer.extractfile(f"{wnid}.tar"))
        tar_order = [m.name for m in inner.getmembers()]
    listed = [f for _, w, f, _ in parse_lists(res)["train"] if w == wnid]
    in_tar = [n for n in tar_order if n in listed]
    assert in_tar != listed and sorted(in_tar) == sorted(listed)
    numbers = sorted(int(n.split("_")[1].split(".")[0]) for n in tar_order)
    assert numbers[-1] - numbers[0] + 1 > len(numbers)


def test_deterministic(tmp_path):
    spec = SynthSpec(classes=4, seed=7, payload=3000, extras=True, long_names=True, fmt="pax")
    a, b = make_manual_dir(tmp_path / "a", spec), make_manual_dir(tmp_path / "b", spec)
    for name in [TRAIN_TAR, VAL_TAR, *(p.name for p in a.lists.values())]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a.train_counts == b.train_counts and a.members == b.members
    c = make_manual_dir(tmp_path / "c", SynthSpec(classes=4, seed=8))
    assert c.lists["train"].read_bytes() != a.lists["train"].read_bytes()


def test_images_are_valid_and_unique_with_one_png_and_one_cmyk(tmp_path):
    res = make_manual_dir(tmp_path, SynthSpec(classes=4))
    classes, val = read_result(res)
    images = [d for files in classes.values() for d in files.values()] + list(val.values())
    assert len(set(images)) == len(images)
    pngs = [d for d in images if d.startswith(PNG_SIGNATURE)]
    assert len(pngs) == 1 and png_ok(pngs[0])
    cmyk = [d for d in images if not d.startswith(PNG_SIGNATURE) and 0xEE in jpeg_segments(d)]
    assert len(cmyk) == 1
    for d in images:
        if not d.startswith(PNG_SIGNATURE):
            assert jpeg_segments(d)[0] == 0xFE  # the key's COM comes right after SOI
    listed = {classes[w][f] for _, w, f, _ in parse_lists(res)["train"]}
    assert pngs[0] in listed and cmyk[0] in listed


@pytest.mark.parametrize("payload", [5_000, 150_000])
def test_payload_mean_and_padding(tmp_path, payload):
    classes = 3 if payload > 100_000 else 6
    spec = SynthSpec(classes=classes, payload=payload, train_max=12, train_min=2)
    res = make_manual_dir(tmp_path, spec)
    class_files, val = read_result(res)
    images = [d for files in class_files.values() for d in files.values()] + list(val.values())
    sizes = [len(d) for d in images]
    assert abs(sum(sizes) / len(sizes) - payload) < 0.2 * payload
    assert min(sizes) >= 0.45 * payload and max(sizes) <= 1.55 * payload
    assert len(set(sizes)) > len(sizes) // 2
    for d in images:
        if d.startswith(PNG_SIGNATURE):
            assert png_ok(d)
        else:
            markers = jpeg_segments(d)
            if payload > 65_533:
                assert markers.count(0xFE) >= 3  # key + padding split in <= 65,533-byte segments


def test_extras_present_and_never_listed(tmp_path):
    res = make_manual_dir(tmp_path, SynthSpec(classes=3, extras=True, prefix="wnid/"))
    check_consistent(res, SynthSpec(classes=3, extras=True, prefix="wnid/"))
    with tarfile.open(res.train_tar) as outer:
        top = outer.getmembers()
        assert any(m.isdir() for m in top) and any(m.isreg() and m.name == "README" for m in top)
        inner = {m.name: tarfile.open(fileobj=outer.extractfile(m)).getmembers()
                 for m in top if m.name.endswith(".tar")}
    listed = {f for rows in parse_lists(res).values() for _, _, f, _ in rows}
    for members in inner.values():
        by_name = {m.name: m for m in members}
        assert any(m.isdir() for m in members) and any(m.isfifo() for m in members)
        assert by_name["../evil.JPEG"].issym() and by_name["/etc/evil.JPEG"].islnk()
        links = [m for m in members if m.issym() or m.islnk()]
        assert len(links) == 4
        assert all(normalise(m.name).split("/")[-1] not in listed for m in links)
        assert any(m.isreg() and len(m.name) > 100 and m.name.split("/")[-1] not in listed
                   for m in members)
    with tarfile.open(res.val_tar) as vt:
        assert any(m.isdir() for m in vt) and any(m.issym() for m in vt)


def test_explicit_counts_and_fill(tmp_path):
    spec = SynthSpec(classes=3, counts=(0, 1, 7), val_per_class=2, unused_per_class=1, fill_to=6)
    res = make_manual_dir(tmp_path, spec)
    check_consistent(res, spec)
    assert list(res.train_counts.values()) == [0, 1, 7]
    classes, _ = read_result(res)
    assert [len(classes[w]) for w in res.train_counts] == [6, 6, 10]
    assert sum(d.startswith(PNG_SIGNATURE) for f in classes.values() for d in f.values()) == 1


def test_lt_shape_resembles_imagenet_lt(tmp_path):
    counts = lt_counts(1000, 1280, 5)
    assert counts[0] == 1280 and counts[-1] == 5 and counts == sorted(counts, reverse=True)
    assert abs(sum(counts) - 115_846) < 0.01 * 115_846
    many, few = sum(c > 100 for c in counts), sum(c < 20 for c in counts)
    assert (many, 1000 - many - few, few) == (385, 479, 136)
    spec = lt_shape(3, per_class=200)
    shape = (spec.val_per_class, spec.test_per_class, spec.train_max, spec.train_min)
    assert shape == (20, 50, 1280, 5)
    res = make_manual_dir(tmp_path, spec)
    check_consistent(res, spec)
    assert sorted(res.train_counts.values()) == [5, 68, 1280]
    assert lt_shape(2, payload=9).payload == 9


def test_fast_headers_match_tarfile():
    for fmt, code in synth.FORMATS.items():
        tar = Tar(fmt)
        for name, size in (("a", 0), ("n01440764_1.JPEG", 305), ("x" * 100, 8 ** 11 - 1),
                           ("./" * 60 + "n.JPEG", 7), ("n01440764.tar", 1 << 30)):
            info = tar._info(name, tarfile.REGTYPE, size)
            expected = info.tobuf(code, "utf-8", "surrogateescape")
            assert tar.header(name, size) == expected, (fmt, name)


@pytest.mark.parametrize("where", ["train", "val"])
def test_interrupted_generation_changes_no_final_file(tmp_path, monkeypatch, where):
    spec = SynthSpec(classes=5, seed=2)
    train_images = make_manual_dir(tmp_path / "dry", spec).members - 5 * spec.test_per_class
    fail_after = train_images // 2 if where == "train" else train_images + 2
    make_manual_dir(tmp_path / "m", SynthSpec(classes=5, seed=1))
    old = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    calls = 0
    real = Filler.content

    def failing(self, image):
        nonlocal calls
        calls += 1
        if calls > fail_after:
            raise KeyboardInterrupt
        return real(self, image)

    monkeypatch.setattr(Filler, "content", failing)
    with pytest.raises(KeyboardInterrupt):
        make_manual_dir(tmp_path / "m", spec)
    assert calls == fail_after + 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == old  # no temp files left


def test_tiny_jpeg_and_bad_specs():
    a, b = make_tiny_jpeg(1), make_tiny_jpeg(2)
    assert a != b and jpeg_segments(a) == jpeg_segments(b) and len(a) < 400
    assert 0xEE in jpeg_segments(make_tiny_jpeg(1, cmyk=True))
    for bad in (dict(classes=0), dict(classes=1001), dict(fmt="v7"), dict(prefix="x/"),
                dict(counts=(1, 2)), dict(train_min=5, train_max=4), dict(payload=-1)):
        with pytest.raises(ValueError):
            SynthSpec(**bad)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(classes=st.integers(1, 6), seed=st.integers(0, 99),
       fmt=st.sampled_from(sorted(synth.FORMATS)),
       prefix=st.sampled_from(synth.PREFIXES), long_names=st.booleans(), extras=st.booleans(),
       val=st.integers(0, 3), test=st.integers(0, 3), unused=st.integers(0, 2),
       top=st.integers(0, 15))
def test_any_small_spec_is_consistent(tmp_path, classes, seed, fmt, prefix, long_names, extras,
                                      val, test, unused, top):
    spec = SynthSpec(classes=classes, seed=seed, fmt=fmt, prefix=prefix, long_names=long_names,
                     extras=extras, val_per_class=val, test_per_class=test, unused_per_class=unused,
                     train_max=top, train_min=min(top, 1))
    check_consistent(make_manual_dir(tmp_path / f"{seed}-{classes}-{fmt}", spec), spec)
