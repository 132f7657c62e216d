"""Class folders held open while copying: a flat tar's consecutive files go to any class folder,
so each is opened once per process, and never more are kept than the open-file limit allows."""
from __future__ import annotations

import resource
import subprocess
import sys

from ltextract import copy
from ltextract.formats import Options, SplitWork
from ltextract.formats.folders import FoldersWriter
from ltextract.out import folders as outdir
from ltextract.plan import Job
from ltextract.sources import FileEachReader
from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import run_cli


def test_a_flat_split_opens_each_class_folder_once(tmp_path, monkeypatch):
    classes, files = 100, 400
    src = tmp_path / "flat.tar"
    payloads = [f"image {i}".encode() * 7 for i in range(files)]
    src.write_bytes(b"".join(payloads))
    jobs, offset = [], 0
    for i, data in enumerate(payloads):  # in tar order, the classes in turn (as in the val tar)
        wnid = f"n{i % classes:08d}"
        jobs.append(Job("test", f"test/{wnid}/ILSVRC2012_val_{i:08d}.JPEG", wnid, 0, src, offset, len(data)))
        offset += len(data)
    out = tmp_path / "out"
    for c in range(classes):
        (out / "test" / f"n{c:08d}").mkdir(parents=True)
    opened: list[str] = []
    real_open = outdir.Folders._open
    monkeypatch.setattr(outdir.Folders, "_open", lambda self, folder: opened.append(folder)
                        or real_open(self, folder))
    writer = FoldersWriter(out, Options())
    works = [SplitWork("test", jobs, "", [], jobs)]
    writer.open(works)
    batches = copy.copy_units(writer, writer.units(works), FileEachReader().read, 1, lambda n: None)
    done = [d for b in batches for ds in b.done.values() for d in ds]
    writer.close()
    assert len(done) == files
    assert all((out / j.rel).read_bytes() == p for j, p in zip(jobs, payloads))
    assert sorted(opened) == sorted({j.rel.rsplit("/", 1)[0] for j in jobs})


def _limit(n: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def test_folders_kept_open_follow_the_open_file_limit():
    code = ("from ltextract.out import folders as outdir; import resource;"
            "print(outdir.folders_per_process()); outdir.raise_open_files();"
            "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    low = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         preexec_fn=_limit(128)).stdout.split()
    assert low == ["32", "128"]  # half of what is left after 64; the hard limit caps the raise
    soft = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4000))
                          ).stdout.split()
    assert soft == ["96", "4000"]


def test_build_under_a_low_open_file_limit_completes(tmp_path):
    # 150 class folders per split, more than the limit leaves: kept open within it, not all
    syn = make_manual_dir(tmp_path / "manual", SynthSpec(classes=150, seed=2, test_per_class=8))
    env = {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "out"
    r = run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out,
                "-q", env=env, preexec_fn=_limit(128))
    assert r.returncode == 0, r.stderr
    assert run_cli("verify", out, env=env).returncode == 0
