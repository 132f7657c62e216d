"""The Hugging Face Hub's shapes in `make bench`: a build from the full-count set's images as the
Hub ships them, against the cost of reading those shards at all, with the same parallelism:

- tar.gz: `gzip -dc` of each shard to /dev/null, as many at once as the build runs passes;
- parquet: pyarrow alone reading the `image.bytes` column of the row groups that hold listed
  rows (the row groups are found beforehand, untimed), in as many processes.

Run alternately round after round (see bench.py), warm cache; the table shows medians and ratios."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench import Contender, alternate, build_cmd, clear, ltextract, mb, run, say, secs, table, warm
from ltextract.archives import TRAIN_TAR, VAL_TAR
from ltextract.synth.hub import HubSpec, make_hub_dir

#: The Hub's shard counts (parquet: 294 train, 14 validation; tar.gz: 5 train, 1 val).
FULL = {"train_shards": 294, "val_shards": 14}
QUICK = {"train_shards": 3, "val_shards": 2}

PYARROW_SCRIPT = """
import json, sys
from multiprocessing import Pool
import pyarrow.parquet as pq

def read(item):
    shard, groups = item
    pf = pq.ParquetFile(shard)
    return sum(pf.read_row_group(g, columns=["image.bytes"]).nbytes for g in groups)

if __name__ == "__main__":
    plan = json.load(open(sys.argv[1]))
    with Pool(int(sys.argv[2])) as pool:
        print(sum(pool.map(read, sorted(plan.items()), chunksize=1)))
"""


def ensure_hub(manual: Path, folder: Path, shape: str, quick: bool) -> Path:
    """The manual dir's images as the Hub's shards (in `folder/data`, lists beside), made once."""
    spec = HubSpec(shape=shape, **(QUICK if quick else FULL))
    marker = folder / "spec.txt"
    source = (manual / "spec.txt").read_text() if (manual / "spec.txt").exists() else ""
    if marker.exists() and marker.read_text() == repr(spec) + source:
        return folder
    clear(folder)
    say(f"generating {folder} (the Hub's {shape} shards)")
    started = time.monotonic()
    make_hub_dir(manual / TRAIN_TAR, manual / VAL_TAR, manual / "ImageNet_LT_test.txt", folder, spec)
    for name in ("train", "val", "test"):
        (folder / f"ImageNet_LT_{name}.txt").write_bytes((manual / f"ImageNet_LT_{name}.txt").read_bytes())
    marker.write_text(repr(spec) + source)
    say(f"generated in {time.monotonic() - started:.1f} s")
    return folder


def needed_row_groups(folder: Path) -> dict[str, list[int]]:
    """shard -> the row groups holding listed rows (what a build must read)."""
    import pyarrow.parquet as pq

    wanted = set()
    for name in ("train", "val", "test"):
        for line in (folder / f"ImageNet_LT_{name}.txt").read_text().splitlines():
            _, wnid, file = line.split()[0].split("/")
            wanted.add(f"{file[:-5]}_{wnid}.JPEG")
    plan = {}
    for shard in sorted((folder / "data").glob("*.parquet")):
        if shard.name.startswith("test-"):
            continue
        pf = pq.ParquetFile(shard)
        start, groups = 0, []
        paths = pf.read(columns=["image.path"]).column("image").combine_chunks().field("path").to_pylist()
        for g in range(pf.metadata.num_row_groups):
            end = start + pf.metadata.row_group(g).num_rows
            if any(p in wanted for p in paths[start:end]):
                groups.append(g)
            start = end
        plan[str(shard)] = groups
    return plan


def bench_hub(sets: dict[str, Path], data: Path, work: Path, rounds: int, quick: bool) -> str:
    """Per set (name -> manual dir) and shape: the build from the Hub's shards, the same build
    from the tars (seek: the file-creation cost both pay), and reading the shards alone."""
    env = {"LTEXTRACT_CACHE_DIR": str(work / "cache-hub")}
    procs = os.cpu_count() or 1
    out = work / "out"
    rows, notes = [], []
    for set_name, manual in sets.items():
        run(ltextract("index", "--manual-dir", manual, "-q"), env)
        tars = Contender(f"{set_name}: ltextract build from the tars (seek)",
                         lambda m=manual: run(build_cmd(m, out, "--strategy", "seek"), env),
                         after=lambda: clear(out))
        for shape in ("tar.gz", "parquet"):
            folder = ensure_hub(manual, data / f"hub-{shape}-{manual.name}", shape, quick)
            shards = sorted(p for p in (folder / "data").iterdir() if not p.name.startswith("test"))
            build = Contender(f"{set_name}: ltextract build (hub-{shape})",
                              lambda f=folder: run(build_cmd(f, out), env), after=lambda: clear(out))
            if shape == "tar.gz":
                script = f'printf "%s\\n" "$@" | xargs -P {procs} -I{{}} sh -c "gzip -dc < {{}} > /dev/null"'
                base = Contender(f"{set_name}: gzip -dc of each shard, {procs} at once",
                                 lambda s=script: run(["sh", "-c", s, "sh", *map(str, shards)]))
            else:
                plan = work / "row-groups.json"
                plan.write_text(json.dumps(needed_row_groups(folder)))
                needed = sum(map(len, json.loads(plan.read_text()).values()))
                notes.append(f"{set_name}, parquet: {needed:,} row groups hold listed rows.")
                base = Contender(f"{set_name}: pyarrow alone, the needed row groups' image.bytes,"
                                 f" {procs} processes",
                                 lambda p=plan: run([os.sys.executable, "-c", PYARROW_SCRIPT, str(p), str(procs)]))
            clear(out)
            alternate([build, tars, base], rounds, f"{set_name} hub-{shape}",
                      each=lambda s=[*shards, manual / TRAIN_TAR, manual / VAL_TAR]: warm(*s))
            rows += [[c.name, secs(c.median()), f"{c.median() / base.median():.2f}×",
                      f"{c.median() / tars.median():.2f}×", mb(c.median("max_rss"))]
                     for c in (build, tars, base)]
            notes.append(f"{set_name}, {shape}: {len(shards)} shards, {mb(sum(s.stat().st_size for s in shards))}.")
            tars.runs.clear()  # measured again beside the next shape
    return table("Build of train + val + test from the Hugging Face Hub's shapes (warm cache)",
                 ["", "wall (median)", "÷ reading the shards alone", "÷ build from the tars", "peak RSS"],
                 rows) + "\n" + " ".join(notes) + "\n"
