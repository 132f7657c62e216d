"""--strategy stream (one sequential pass, stdin) against seek, and choosing a strategy."""
from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from ltextract.sources import storage
from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import error_line, reference_members, run_cli, tar_bytes


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


def build(syn, out, env, *extra, **kw):
    return run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir,
                   "--out", out, "--json", *extra, env=env, **kw)


def tree(out: Path) -> dict[str, bytes]:
    """Every file of OUT outside .ltextract/ (whose journals hold mtimes), with its bytes;
    ltextract.json without the source kind ("stdin" or "tar")."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
             if p.is_file() and ".ltextract" not in p.relative_to(out).parts}
    meta = json.loads(files.pop("ltextract.json"))
    for split in meta["splits"].values():
        split.pop("source")
    return files | {"ltextract.json": json.dumps(meta, sort_keys=True).encode()}


@pytest.mark.parametrize("spec", [
    SynthSpec(classes=5, seed=1, prefix="./", long_names=True, extras=True),
    SynthSpec(classes=4, seed=2, fmt="pax", prefix="wnid/", long_names=True),
    SynthSpec(classes=4, seed=3, fmt="ustar", long_names=True, extras=True, payload=3000),
], ids=["gnu", "pax", "ustar"])
def test_stream_and_seek_write_identical_out(tmp_path, env, spec):
    syn = make_manual_dir(tmp_path / "m", spec)
    seek = build(syn, tmp_path / "seek", env, "--strategy", "seek")
    assert seek.returncode == 0, seek.stderr
    # a fresh cache: the stream must not lean on the index the seek build left behind
    streamed = build(syn, tmp_path / "stream", {"LTEXTRACT_CACHE_DIR": str(tmp_path / "c2")},
                     "--strategy", "stream")
    assert streamed.returncode == 0, streamed.stderr
    assert json.loads(streamed.stdout)["strategy"] == {"train": "stream", "val": "stream"}
    expected = tree(tmp_path / "seek")
    assert len(expected) > 50 and tree(tmp_path / "stream") == expected
    assert not (tmp_path / "c2" / "index").exists()


def test_train_tar_from_stdin(tmp_path, env):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=4, seed=5, extras=True))
    assert build(syn, tmp_path / "seek", env, "--strategy", "seek").returncode == 0
    with open(syn.train_tar, "rb") as f:  # a real pipe, as `cat x.tar | ltextract …`
        cat = subprocess.Popen(["cat"], stdin=f, stdout=subprocess.PIPE)
        r = build(syn, tmp_path / "pipe", env, "--train-source", "-", "--val-source", syn.val_tar,
                  "--strategy", "auto", stdin=cat.stdout)
        cat.stdout.close()
        cat.wait()
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["strategy"]["train"] == "stream"
    assert tree(tmp_path / "pipe") == tree(tmp_path / "seek")
    # stdin has no identity: a re-run trusts no file unread, but keeps those whose bytes match
    with open(syn.train_tar, "rb") as f:
        again = build(syn, tmp_path / "pipe", env, "--train-source", "-", "--split", "train", stdin=f)
    assert again.returncode == 0, again.stderr
    train = json.loads(again.stdout)["splits"]["train"]
    assert (train["kept"], train["copied"]) == (0, 0) and train["kept_rechecked"] == train["files"]
    assert tree(tmp_path / "pipe") == tree(tmp_path / "seek")


def test_stream_resumes_a_seek_build(tmp_path, env):
    """Same tar, same identity: files a seek build journaled are kept by a stream build."""
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3, seed=6))
    out = tmp_path / "out"
    assert build(syn, out, env, "--strategy", "seek").returncode == 0
    victim = next((out / "train").rglob("*.JPEG"))
    victim.unlink()
    r = build(syn, out, {"LTEXTRACT_CACHE_DIR": str(tmp_path / "c2")}, "--strategy", "stream")
    assert r.returncode == 0, r.stderr
    splits = json.loads(r.stdout)["splits"]
    assert splits["train"]["copied"] == 1 and splits["test"]["copied"] == 0 and victim.exists()


@pytest.mark.parametrize("args,needle", [
    (("--train-source", "-", "--val-source", "-"), "only one"),
    (("--train-source", "-", "--strategy", "seek"), "cannot seek"),
])
def test_stdin_usage_errors(tmp_path, env, args, needle):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=2))
    r = build(syn, tmp_path / "out", env, *args, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def assert_no_final_output(out: Path) -> None:
    assert not list(out.glob("*.csv")) and not (out / "ltextract.json").exists()
    assert not list(out.rglob("*.ltx-part"))


def from_stdin(syn, out, env, tar: Path, pipe: bool, *extra):
    """A build reading `tar` on stdin: through a real pipe, or a redirected (seekable) file."""
    with open(tar, "rb") as f:
        if not pipe:
            return build(syn, out, env, *extra, stdin=f)
        cat = subprocess.Popen(["cat"], stdin=f, stdout=subprocess.PIPE)
        r = build(syn, out, env, *extra, stdin=cat.stdout)
        cat.stdout.close()
        cat.wait()
        return r


def files_in(out: Path, split: str) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in (out / split).rglob("*")
            if p.is_file()}


@pytest.mark.parametrize("pipe", [True, False], ids=["pipe", "redirect"])
def test_stdin_train_tar_cut_inside_a_class_tar(tmp_path, env, pipe):
    """Size unknown: the error names the class tar and says the input ended early; the files
    before the cut are kept, and no manifest claims the splits done."""
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3, payload=2000))
    with tarfile.open(syn.train_tar) as t:
        second = [m for m in t if m.name.endswith(".tar")][1]
    cut = second.offset_data + second.size // 2
    expected = tar_bytes(syn)
    where = reference_members(syn.train_tar, nested=True)
    before = sum(where[(f"{wnid}.tar", name)][0] + where[(f"{wnid}.tar", name)][1] <= cut
                 for _, wnid, name in (line.split()[0].split("/")
                                       for line in syn.lists["train"].read_text().splitlines()))
    syn.train_tar.write_bytes(syn.train_tar.read_bytes()[:cut])
    out = tmp_path / "out"
    r = from_stdin(syn, out, env, syn.train_tar, pipe, "--train-source", "-", "--split", "train")
    line = error_line(r.stderr)
    assert r.returncode == 1 and "ILSVRC2012_img_train.tar from stdin is truncated" in line, line
    assert f"the input ended early, inside {second.name}: " in line and "before the cut" in line
    got = files_in(out, "train")
    assert len(got) == before > 0 and all(expected[rel] == data for rel, data in got.items())
    assert f"the {before:,} of " in line
    assert_no_final_output(out)


@pytest.mark.parametrize("pipe", [True, False], ids=["pipe", "redirect"])
def test_stdin_cut_inside_a_member_passed_over(tmp_path, env, pipe):
    """The input ends inside an unlisted member the stream skips: still a cut, not a clean end."""
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3, payload=2000))
    members = reference_members(syn.val_tar, nested=False)
    lines = syn.lists["test"].read_text().splitlines()
    listed = {line.split()[0].rsplit("/", 1)[1] for line in lines}
    skipped = sorted(listed, key=lambda n: members[("", n)])[len(listed) // 2]
    listed.remove(skipped)
    syn.lists["test"].write_text("".join(f"{line}\n" for line in lines if skipped not in line))
    offset, size = members[("", skipped)]
    syn.val_tar.write_bytes(syn.val_tar.read_bytes()[:offset + size // 2])
    out = tmp_path / "out"
    r = from_stdin(syn, out, env, syn.val_tar, pipe, "--val-source", "-", "--split", "test")
    line = error_line(r.stderr)
    assert r.returncode == 1 and "ILSVRC2012_img_val.tar from stdin is truncated" in line, line
    assert "the input ended inside the data or padding of a member it passed over" in line
    kept = sum(members[("", n)][0] + members[("", n)][1] <= offset for n in listed)
    assert f"the {kept:,} of {len(listed):,} listed files" in line
    assert len(files_in(out, "test")) == kept
    assert_no_final_output(out)


@pytest.mark.parametrize("pipe", [True, False], ids=["pipe", "redirect"])
def test_stdin_cut_inside_a_padding(tmp_path, env, pipe):
    """The input ends in the zero padding after a listed member: that member is whole and kept,
    and the end is still a cut (tar(1): "Unexpected EOF"), not a clean end."""
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3))
    members = reference_members(syn.val_tar, nested=False)
    listed = [line.split()[0] for line in syn.lists["test"].read_text().splitlines()]
    padded = sorted((members[("", rel.rsplit("/", 1)[1])], rel) for rel in listed
                    if members[("", rel.rsplit("/", 1)[1])][1] % 512)
    (offset, size), path = padded[len(padded) // 2]
    rel = "test/" + path.split("/", 1)[1]  # val/<wnid>/<file> in the list, test/… in OUT
    cut = offset + size + (-size % 512) // 2
    expected = tar_bytes(syn)
    syn.val_tar.write_bytes(syn.val_tar.read_bytes()[:cut])
    out = tmp_path / "out"
    r = from_stdin(syn, out, env, syn.val_tar, pipe, "--val-source", "-", "--split", "test")
    line = error_line(r.stderr)
    assert r.returncode == 1 and "ILSVRC2012_img_val.tar from stdin is truncated" in line, line
    assert "the input ended inside the data or padding of a member it passed over" in line
    kept = sum(sum(members[("", r.rsplit("/", 1)[1])]) <= cut for r in listed)
    assert f"the {kept:,} of {len(listed):,} listed files" in line
    got = files_in(out, "test")
    assert len(got) == kept and got[rel] == expected[rel]
    assert_no_final_output(out)


def test_stream_reports_members_missing_from_tar(tmp_path, env):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=3))
    lines = syn.lists["train"].read_text().splitlines()
    wnid = lines[0].split("/")[1]
    lines.append(f"train/{wnid}/{wnid}_999990.JPEG 0")
    syn.lists["train"].write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    r = build(syn, out, env, "--strategy", "stream", "--split", "train")
    line = error_line(r.stderr)
    assert r.returncode == 1 and "1 image(s)" in line and f"{wnid}_999990.JPEG" in line, r.stderr
    assert_no_final_output(out)


def test_strategy_for_device_and_filesystem():
    assert storage.strategy_for("ext4", False) == "seek"
    assert storage.strategy_for("ext4", None) == "seek"
    assert storage.strategy_for("xfs", True) == "stream"
    for fs in ("nfs4", "cifs", "fuse.sshfs", "fuseblk", "9p"):
        assert storage.strategy_for(fs, False) == "stream"
    assert storage.choose(None) == "stream"


def test_mount_fstype_picks_longest_mount_point():
    mounts = ("/dev/sda1 / ext4 rw 0 0\n"
              "server:/export /mnt/data nfs4 rw 0 0\n"
              "/dev/sdb1 /mnt/data/local xfs rw 0 0\n"
              "x /mnt/my\\040disk fuseblk rw 0 0\n")
    assert storage.mount_fstype(mounts, "/home/u/x.tar") == "ext4"
    assert storage.mount_fstype(mounts, "/mnt/data/x.tar") == "nfs4"
    assert storage.mount_fstype(mounts, "/mnt/data/local/x.tar") == "xfs"
    assert storage.mount_fstype(mounts, "/mnt/database/x.tar") == "ext4"
    assert storage.mount_fstype(mounts, "/mnt/my disk/x.tar") == "fuseblk"


def test_virtual_disks_do_not_claim_to_spin():
    assert storage.is_virtual_disk(Path("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda"))
    assert storage.is_virtual_disk(Path("/sys/devices/vbd-51712/block/xvda"))
    assert not storage.is_virtual_disk(Path("/sys/devices/pci0000:00/0000:00:17.0/ata3/host2/"
                                           "target2:0:0/2:0:0:0/block/sda"))


def test_choose_reads_this_machine(tmp_path):
    tar = tmp_path / "x.tar"
    tar.write_bytes(b"")
    assert storage.choose(tar) in ("seek", "stream")
    assert storage.rotational(tar) in (True, False, None)


def _rewrite_val_tar(syn, extra: list[tuple[str, bytes]]) -> None:
    """The val tar again, with `extra` members appended (before the end-of-archive blocks)."""
    import io
    import tarfile

    with tarfile.open(syn.val_tar) as src:
        members = [(m, src.extractfile(m).read()) for m in src if m.isfile()]
    with tarfile.open(syn.val_tar, "w", format=tarfile.GNU_FORMAT) as dst:
        for m, data in members:
            dst.addfile(m, io.BytesIO(data))
        for name, data in extra:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


def test_member_stored_twice_last_copy_wins_in_both_strategies(tmp_path, env):
    syn = make_manual_dir(tmp_path / "m", SynthSpec(classes=2, seed=8))
    wnid_file = syn.lists["test"].read_text().splitlines()[0].split()[0]  # val/<wnid>/<file>
    name = wnid_file.split("/")[-1]
    _rewrite_val_tar(syn, [(name, b"second copy"), ("bad\nname.JPEG", b"unnamable by a list")])
    no_index = {"LTEXTRACT_CACHE_DIR": str(tmp_path / "c2")}
    runs = (("seek", env), ("stream", env), ("stream", no_index))  # the 2nd uses the index the 1st made
    for i, (strategy, run_env) in enumerate(runs):
        r = build(syn, tmp_path / f"out{i}", run_env, "--strategy", strategy, "--split", "test")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / f"out{i}" / "test" / wnid_file.split("/", 1)[1]).read_bytes() == b"second copy"
    assert tree(tmp_path / "out0") == tree(tmp_path / "out1") == tree(tmp_path / "out2")
