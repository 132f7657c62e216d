"""Shared helpers for the tests: run the CLI as users do, read tars with the stdlib as a reference."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from ltextract.tar.walk import normalise


def run_cli(*args: object, env: dict | None = None, timeout: float = 120,
            **kw) -> subprocess.CompletedProcess:
    """`python -m ltextract ARGS` in a child process, so exit codes and stderr are real."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "ltextract", *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, **kw)


def reference_members(tar: Path, nested: bool) -> dict[tuple[str, str], tuple[int, int]]:
    """(group, normalised name) -> (absolute offset, size) of every regular member, via tarfile."""
    found = {}
    with tarfile.open(tar) as outer:
        for m in outer:
            if not m.isreg():
                continue
            if not nested:
                found[("", normalise(m.name))] = (m.offset_data, m.size)
                continue
            name = normalise(m.name)
            if not name.endswith(".tar") or "/" in name:
                continue
            with tarfile.open(fileobj=outer.extractfile(m)) as inner:
                for im in inner:
                    if im.isreg():
                        found[(name, normalise(im.name, name[:-4]))] = (m.offset_data + im.offset_data,
                                                                         im.size)
    return found


def error_line(stderr: str) -> str:
    """The single error line a failure must print; fails the test on tracebacks."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("ltextract: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def tar_bytes(syn) -> dict[str, bytes]:
    """Expected output bytes per OUT-relative path, read with tarfile as a reference."""
    raw = {"train": syn.train_tar.read_bytes(), "val": syn.val_tar.read_bytes()}
    refs = {"train": reference_members(syn.train_tar, True), "val": reference_members(syn.val_tar, False)}
    expected = {}
    for split, top in (("train", "train"), ("val", "train"), ("test", "val")):
        for line in syn.lists[split].read_text().splitlines():
            path, _ = line.split()
            _, wnid, name = path.split("/")
            key = (f"{wnid}.tar", name) if top == "train" else ("", name)
            off, size = refs[top][key]
            expected[f"{split}/{wnid}/{name}"] = raw[top][off:off + size]
    return expected


LAYOUTS = ("tree", "tree-val-wnid", "kaggle", "class-tars", "multipart")


def split_tar(tar: Path, dest: Path, nested: bool, parts: int = 4) -> list[Path]:
    """`dest/<tar>.001`, ... cut in the middle of member payloads, so reads must straddle parts."""
    data = tar.read_bytes()
    members = sorted(reference_members(tar, nested).values())
    cuts = [members[len(members) * k // parts] for k in range(1, parts)]
    bounds = [0] + [off + max(1, size // 2) for off, size in cuts] + [len(data)]
    paths = []
    for i in range(parts):
        paths.append(dest / f"{tar.name}.{i + 1:03d}")
        paths[-1].write_bytes(data[bounds[i]:bounds[i + 1]])
    return paths


def explode(syn, root: Path, layout: str) -> Path:
    """The synthetic tars rewritten (with tarfile, independent of ltextract) as another shape users
    keep ImageNet in; returns the manual dir. Layouts: `tree` (train/<wnid>/, flat val/),
    `tree-val-wnid` (val/<wnid>/), `kaggle` (ILSVRC/Data/CLS-LOC/{train,val}, flat val) and
    `class-tars` (ILSVRC2012_img_train/<wnid>.tar beside the val tar), `multipart` (both tars cut
    into four parts each, .001 to .004)."""
    if layout == "multipart":
        root.mkdir(parents=True)
        split_tar(syn.train_tar, root, nested=True)
        split_tar(syn.val_tar, root, nested=False)
        return root
    base = root / "ILSVRC" / "Data" / "CLS-LOC" if layout == "kaggle" else root
    val_wnid = {}
    for line in syn.lists["test"].read_text().splitlines():
        _, wnid, name = line.split()[0].split("/")
        val_wnid[name] = wnid
    with tarfile.open(syn.train_tar) as outer:
        for m in outer:
            name = normalise(m.name)
            if not (m.isreg() and name.endswith(".tar") and "/" not in name):
                continue
            data = outer.extractfile(m).read()
            if layout == "class-tars":
                (root / "ILSVRC2012_img_train").mkdir(parents=True, exist_ok=True)
                (root / "ILSVRC2012_img_train" / name).write_bytes(data)
                continue
            with tarfile.open(fileobj=io.BytesIO(data)) as inner:
                for im in inner:
                    file = normalise(im.name, name[:-4])
                    if im.isreg() and "/" not in file:
                        dest = base / "train" / name[:-4] / file
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(inner.extractfile(im).read())
    if layout == "class-tars":
        shutil.copyfile(syn.val_tar, root / syn.val_tar.name)
        return root
    with tarfile.open(syn.val_tar) as val:
        for m in val:
            file = normalise(m.name)
            if m.isreg() and "/" not in file:
                folder = base / "val" / (val_wnid.get(file, "unlisted") if layout == "tree-val-wnid" else "")
                folder.mkdir(parents=True, exist_ok=True)
                (folder / file).write_bytes(val.extractfile(m).read())
    return root


def out_files(out: Path) -> dict[str, bytes]:
    """Every file of a build except ltextract's own state and metadata (which name the source)."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".ltextract" not in p.parts and p.name != "ltextract.json"}


def rewrite_class_tar(train_tar: Path, dest: Path, which: int, change) -> Path:
    """A copy of the train tar whose `which`-th class tar holds `change(its bytes)` (its outer
    header then records the new size; the outer tar pads it to a whole block as usual).
    `dest` may be `train_tar` itself."""
    buf = io.BytesIO()
    with tarfile.open(train_tar) as outer, tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as new:
        for i, m in enumerate(m for m in outer if m.isreg()):
            data = outer.extractfile(m).read()
            if i == which:
                data = change(data)
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            new.addfile(info, io.BytesIO(data))
    dest.write_bytes(buf.getvalue())
    return dest


def padding_of(offset: int, size: int) -> tuple[int, int]:
    """The [start, end) of the zero padding after a payload at `offset` of `size` bytes."""
    return offset + size, offset + -(-size // 512) * 512


def with_split(spec, base=None):
    """ImageNet-LT (or `base`) with one split's entry (its pin, its mirrors) replaced by `spec`."""
    from dataclasses import replace

    from ltextract.benchmarks.imagenet_lt import IMAGENET_LT

    base = base or IMAGENET_LT
    return replace(base, splits=tuple(spec if s.name == spec.name else s for s in base.splits))
