"""ltextract benchmark: index and build against tarfile, GNU tar and cat, the output formats
against the folders build, and --format tfds against TFDS's own builder, run alternately.

    python bench/bench.py [--data DIR] [--runs N] [--quick]

Builds (once, cached in DIR) two synthetic manual dirs: a full-count set (1000 classes, 1,250
members per class, tiny payloads) and a realistic-size set (30 classes, ~110 KB payloads), and
two smaller ones (25 and 100 classes) for TFDS's builder (bench_formats.py), and
the full-count set's images in the Hugging Face Hub's two shapes (bench/hub_bench.py).
Every measurement runs in a child process; each round runs every contender once (A B C A B C …)
so the machine's noise hits them alike, and the table shows medians and ratios. Storage bytes
read and peak RSS come from the child's rusage (wait4). The table goes to stdout, progress to
stderr. `--quick` uses tiny sets and one round: a smoke run, exercised by the test suite.
"""
from __future__ import annotations

import argparse
import compileall
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import bench_formats
import ltextract as ltextract_module
from ltextract.archives import TRAIN_TAR, VAL_TAR
from ltextract.files import cache_dir
from ltextract.synth import SynthSpec, lt_shape, make_manual_dir

PY = sys.executable
GNU_TIME = shutil.which("time", path="/usr/bin:/bin")
QUICK = False
TRASH = Path("trash")  # set by main() under the work folder
_trashed = itertools.count()
SMALL = dict(train_max=20, train_min=2, val_per_class=3, test_per_class=5)  # --quick: ~100 files
HEADER_PAGE = 4096  # a header scan touches at least one page per member

TARFILE_SCRIPT = """
import sys, tarfile
n = 0
with tarfile.open(sys.argv[1]) as outer:
    for m in outer:
        if m.isfile() and m.name.endswith(".tar"):
            with tarfile.open(fileobj=outer.extractfile(m)) as inner:
                n += sum(1 for im in inner if im.isfile())
        elif m.isfile():
            n += 1
with tarfile.open(sys.argv[2]) as val:
    n += sum(1 for m in val if m.isfile())
print(n)
"""

# What the long-tail repositories' READMEs ask for: untar everything, then every class tar.
GNU_FULL_SCRIPT = """
set -e
mkdir -p "$3/train" "$3/val"
tar -xf "$1" -C "$3/train"
cd "$3/train"
for t in *.tar; do mkdir "${t%.tar}"; tar -xf "$t" -C "${t%.tar}"; rm -f "$t"; done
tar -xf "$2" -C "$3/val"
"""


@dataclass
class Run:
    wall: float
    read_bytes: int  # storage reads: ru_inblock x 512
    max_rss: int  # bytes
    stdout: str
    inner: float = 0.0  # the time the command reports for itself, where it does
    cpu: float = 0.0  # user + system seconds of the command and its children (GNU time), 0 without


def run(cmd: list[str], env: Optional[dict] = None) -> Run:
    """Run `cmd` to completion. Peak RSS and storage reads come from GNU time when present (its
    small process is what forks the command; a child forked from this Python inherits its RSS
    high-water mark), else from wait4."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err, stats = Path(tmp, "out"), Path(tmp, "err"), Path(tmp, "stats")
        timed = [GNU_TIME, "-f", "%M %I %U %S", "-o", str(stats), *cmd] if GNU_TIME else cmd
        with open(out, "wb") as o, open(err, "wb") as e:
            started = time.perf_counter()
            proc = subprocess.Popen(timed, stdout=o, stderr=e, env={**os.environ, **(env or {})})
            _, status, ru = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{err.read_text()[-2000:]}")
        rss_kb, blocks, cpu = ru.ru_maxrss, ru.ru_inblock, ru.ru_utime + ru.ru_stime
        if GNU_TIME:
            rss, reads, user, system = stats.read_text().split()[-4:]
            rss_kb, blocks, cpu = int(rss), int(reads), float(user) + float(system)
        return Run(wall, blocks * 512, rss_kb * 1024, out.read_text(), cpu=cpu)


def evict(*paths: Path | str) -> None:
    """Drop the files' pages from the page cache, so the next read comes from storage."""
    sync()
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def warm(*paths: Path) -> None:
    """Read the files once so warm-cache runs start warm (another process may have evicted them)."""
    subprocess.run(["cat", *map(str, paths)], stdout=subprocess.DEVNULL, check=True)


def clear(path: Path) -> None:
    """Move `path` out of the way, into a trash deleted only when the benchmark ends. ext4
    without a journal (this machine's disk) checks every free inode it considers for a new
    file against the inode table while that inode was deleted less than 5-10 minutes ago
    (`recently_deleted()`): after deleting a run's 185K files, the next run's file creation
    slowed several-fold, by how long ago that was. GNU tar took 18 to 61 s for the same files.

    The moved files' pages are dropped too: kept, they fill memory round after round, and with
    memory full each page a run writes is first reclaimed by kswapd, which takes a core from a
    build using both, while single-threaded tar leaves it the idle one (4 rounds, no eviction:
    build 4.30, 4.71, 4.94, 5.67 s; GNU tar 3.36, 3.28, 3.35, 3.37 s)."""
    if not path.exists():
        sync()  # earlier writes are flushed before the next timed run, not during it
        return
    TRASH.mkdir(exist_ok=True)
    moved = TRASH / str(next(_trashed))
    path.rename(moved)
    evict(*regular_files(moved))


def regular_files(tree: Path) -> Iterator[str]:
    """Every regular file under `tree` (no links followed, no FIFO opened), by directory entry
    type: no stat per file."""
    with os.scandir(tree) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from regular_files(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield entry.path


def check_space(folder: Path, rounds: int) -> None:
    """Every output is kept until the end (see `clear`): about 10 GB a round at full count and
    realistic sizes. Said at the start, not found by a build refused for space minutes later."""
    need, free = 6e9 + 10e9 * rounds, shutil.disk_usage(folder).free
    if free < need:
        say(f"warning: {free / 1e9:.0f} GB free under {folder}; {rounds} round(s) keep about"
            f" {need / 1e9:.0f} GB of outputs until the end (builds refused for space would stop it)")


def remove(path: Path) -> None:
    if path.exists():
        subprocess.run(["rm", "-rf", str(path)], check=True)


def sync() -> None:
    if not QUICK:  # a smoke run skips the (machine-wide, on a busy machine slow) flushes
        os.sync()


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- data sets ------------------------------------------------------------------------

def ensure_set(folder: Path, spec: SynthSpec) -> Path:
    """The manual dir for `spec`, generated once; a marker records the spec it was made from."""
    marker = folder / "spec.txt"
    if marker.exists() and marker.read_text() == repr(spec):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    say(f"generating {folder} ({spec.classes} classes)")
    started = time.monotonic()
    make_manual_dir(folder, spec)
    marker.write_text(repr(spec))
    say(f"generated in {time.monotonic() - started:.1f} s")
    return folder


def ltextract(*args: object) -> list[str]:
    return [PY, "-m", "ltextract", *map(str, args)]


def build_cmd(manual: Path, out: Path, *extra: str) -> list[str]:
    return ltextract("build", "--manual-dir", manual, "--splits-dir", manual, "--out", out, "-q", *extra)


#: The cheapest GNU tar extraction: as root tar would otherwise restore each file's owner, mode
#: and mtime (three more metadata updates per file, which ltextract does not make either).
FLOOR_FLAGS = ("--no-same-owner", "--no-same-permissions", "--touch")


def needed_tar(manual: Path, work: Path, env: dict, *extra: str) -> Path:
    """A tar of exactly the files a build writes (the GNU-tar floor), made once from a build."""
    tar = manual / "needed.tar"
    if tar.exists():
        return tar
    out = work / "needed-out"
    clear(out)
    run(build_cmd(manual, out, *extra), env)
    tmp = manual / "needed.tar.part"
    subprocess.run(["tar", "-cf", str(tmp), "-C", str(out), "train", "val", "test"], check=True)
    tmp.rename(tar)
    clear(out)
    return tar


# --- measuring --------------------------------------------------------------------------

@dataclass
class Contender:
    name: str
    go: Callable[[], Run]  # one timed run
    before: Callable[[], None] = lambda: None  # untimed set-up
    after: Callable[[], None] = lambda: None  # untimed clean-up
    slow: bool = False  # minutes per run: fewer rounds (see --slow-runs)
    runs: list[Run] = field(default_factory=list)

    def median(self, what: str = "wall") -> float:
        return statistics.median(getattr(r, what) for r in self.runs)


def alternate(contenders: list[Contender], rounds: int, label: str, slow_rounds: int = 0,
              each: Callable[[], None] = lambda: None) -> None:
    """Round after round, each contender once; a `slow` one only in the first `slow_rounds`.
    `each`: untimed, before every run (`warm`: a warm-cache table stays warm)."""
    for i in range(rounds):
        for c in contenders:
            if c.slow and i >= slow_rounds:
                continue
            each()
            c.before()
            c.runs.append(c.go())
            c.after()
            say(f"{label} round {i + 1}/{rounds}: {c.name} {c.runs[-1].wall:.2f} s")


def table(title: str, head: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def secs(x: float) -> str:
    return f"{x:.2f} s"


# --- the sections -----------------------------------------------------------------------

def bench_index(manual: Path, work: Path, rounds: int, slow_rounds: int) -> str:
    """Fresh and cached `ltextract index` of the train tar, beside tarfile iteration."""
    only = work / "train-only"
    only.mkdir(exist_ok=True)
    if not (only / TRAIN_TAR).exists():
        (only / TRAIN_TAR).symlink_to(manual / TRAIN_TAR)
    env = {"LTEXTRACT_CACHE_DIR": str(work / "index-cache")}
    seconds = re.compile(r"\t([0-9.]+) s$")

    def index(*extra: str) -> Run:
        r = run(ltextract("index", "--manual-dir", only, "-q", *extra), env)
        r.inner = float(seconds.search(r.stdout.strip()).group(1))
        return r

    fresh = Contender("index, fresh", lambda: index("--refresh"))
    cached = Contender("index, cached", index)
    tarfile_it = Contender("tarfile iteration", lambda: run([PY, "-c", TARFILE_SCRIPT,
                                                              str(manual / TRAIN_TAR),
                                                              str(manual / VAL_TAR)]),
                            slow=True)
    warm(manual / TRAIN_TAR, manual / VAL_TAR)
    alternate([fresh, cached, tarfile_it], rounds, "index", slow_rounds)
    members = int(fresh.runs[-1].stdout.split("\t")[2].split()[0])
    idx_file = next((work / "index-cache" / "index").glob("*.ltidx"))
    base = tarfile_it.median()
    rows = [[c.name, secs(c.median()), secs(c.median("inner")) if c is not tarfile_it else "–",
             f"{base / c.median():.1f}×"] for c in (fresh, cached, tarfile_it)]
    note = (f"{members:,} train members; index file {idx_file.stat().st_size:,} bytes"
            f" ({idx_file.stat().st_size / members:.1f} B/member). tarfile also reads the val tar.\n")
    return table("Index of the full-count train tar (warm cache)",
                 ["", "wall (median)", "in-process", "speed-up vs tarfile (wall)"], rows) + "\n" + note


def bench_build(manual: Path, work: Path, rounds: int, slow_rounds: int,
                strategies: list[str]) -> tuple[str, int]:
    """Build of all three splits (index cached) against GNU tar and cat; returns peak RSS too."""
    env = {"LTEXTRACT_CACHE_DIR": str(work / "cache")}
    run(ltextract("index", "--manual-dir", manual, "-q"), env)
    floor_tar = needed_tar(manual, work, env)
    out = work / "out"
    tars = [str(manual / TRAIN_TAR), str(manual / VAL_TAR)]
    builds = [Contender(f"ltextract build ({s})",
                        lambda s=s: run(build_cmd(manual, out, "--strategy", s), env),
                        after=lambda: clear(out)) for s in strategies]
    no_index = {"LTEXTRACT_CACHE_DIR": str(work / "cache-none")}
    builds.append(Contender("ltextract build (seek, no index yet)",
                            lambda: run(build_cmd(manual, out, "--strategy", "seek"), no_index),
                            before=lambda: clear(work / "cache-none"), after=lambda: clear(out)))
    full = Contender("GNU tar, full extraction",
                     lambda: run(["sh", "-c", GNU_FULL_SCRIPT, "sh", *tars, str(out)]),
                     before=lambda: out.mkdir(), after=lambda: clear(out), slow=True)
    floor = Contender("GNU tar, exactly the needed files",
                      lambda: run(["tar", "-xf", str(floor_tar), *FLOOR_FLAGS, "-C", str(out)]),
                      before=lambda: out.mkdir(), after=lambda: clear(out))
    cat = Contender("cat of the tars", lambda: run(["sh", "-c", 'cat "$@" > /dev/null', "sh", *tars]))
    clear(out)
    # before every run: a full extraction writes 1.3 GB, and the page cache then drops parts of
    # the tars (a build then waits on random 4 KiB reads of them, tar's reads are sequential)
    alternate([*builds, full, floor, cat], rounds, "build", slow_rounds,
              each=lambda: warm(manual / TRAIN_TAR, manual / VAL_TAR, floor_tar))
    rows = [[c.name, secs(c.median()), f"{c.median() / floor.median():.2f}×",
             f"{full.median() / c.median():.1f}×", mb(c.median("max_rss"))]
            for c in (*builds, full, floor, cat)]
    return table("Build of train + val + test, full-count set, index cached unless said (warm cache)",
                 ["", "wall (median)", "÷ GNU-tar floor", "full extraction ÷ this", "peak RSS"],
                 rows), max(r.max_rss for b in builds for r in b.runs)


def bench_build_sized(manual: Path, work: Path, rounds: int, strategies: list[str]) -> str:
    """The same comparison at ImageNet's file sizes (~110 KB), where bytes, not files, dominate."""
    env = {"LTEXTRACT_CACHE_DIR": str(work / "cache-sized")}
    run(ltextract("index", "--manual-dir", manual, "-q"), env)
    floor_tar = needed_tar(manual, work, env)
    out = work / "out"
    builds = [Contender(f"ltextract build ({s})",
                        lambda s=s: run(build_cmd(manual, out, "--strategy", s), env),
                        after=lambda: clear(out)) for s in strategies]
    floor = Contender("GNU tar, exactly the needed files",
                      lambda: run(["tar", "-xf", str(floor_tar), *FLOOR_FLAGS, "-C", str(out)]),
                      before=lambda: out.mkdir(), after=lambda: clear(out))
    clear(out)
    alternate([*builds, floor], rounds, "sized build",
              each=lambda: warm(manual / TRAIN_TAR, manual / VAL_TAR, floor_tar))
    rows = [[c.name, secs(c.median()), f"{c.median() / floor.median():.2f}×"] for c in (*builds, floor)]
    note = f"{mb(floor_tar.stat().st_size)} of needed files (the floor's tar).\n"
    return table("Build of train + val + test, realistic-size set, index cached (warm cache)",
                 ["", "wall (median)", "÷ GNU-tar floor"], rows) + "\n" + note


def bench_cold(manual: Path, work: Path, rounds: int, strategies: list[str]) -> str:
    """Storage bytes read and wall time with the tars evicted from the page cache."""
    cache = work / "cold-cache"
    env = {"LTEXTRACT_CACHE_DIR": str(cache)}
    out = work / "out"
    tars = [manual / TRAIN_TAR, manual / VAL_TAR]
    clear(out)
    clear(cache)
    run(build_cmd(manual, out), env)
    meta = json.loads((out / "ltextract.json").read_text())
    needed = sum(s["bytes"] for s in meta["splits"].values())
    listing = run(ltextract("index", "--manual-dir", manual), env).stdout
    members = sum(int(line.split("\t")[2].split()[0]) for line in listing.splitlines())
    clear(out)
    minimum = needed + HEADER_PAGE * members

    def cold(fresh_index: bool):
        def before() -> None:
            if fresh_index:
                clear(cache / "index")
            evict(*tars, *(cache / "index").glob("*.ltidx"))
        return before

    contenders = []
    for s in strategies:
        cmd = build_cmd(manual, out, "--strategy", s)
        contenders += [Contender(f"first build ({s}, no index)", lambda c=cmd: run(c, env),
                                 before=cold(True), after=lambda: clear(out)),
                       Contender(f"rebuild ({s}, index cached)", lambda c=cmd: run(c, env),
                                 before=cold(False), after=lambda: clear(out))]
    cat = Contender("cat of the tars", lambda: run(["sh", "-c", 'cat "$@" > /dev/null', "sh",
                                                   *map(str, tars)]), before=lambda: evict(*tars))
    alternate([*contenders, cat], rounds, "cold")
    rows = []
    for c in (*contenders, cat):
        floor = minimum if "first" in c.name else needed
        ratio = "–" if c is cat else f"{c.median('read_bytes') / floor:.2f}× of {mb(floor)}"
        rows.append([c.name, mb(c.median("read_bytes")), ratio, secs(c.median()),
                     f"{c.median() / cat.median():.2f}×"])
    total = sum(t.stat().st_size for t in tars)
    note = (f"Tars {mb(total)}, {members:,} members; needed bytes {mb(needed)}; minimum for a first"
            f" build = needed + 4 KiB × members = {mb(minimum)}.\n")
    return table("Cold cache, realistic-size set (tars evicted before every run)",
                 ["", "read from storage (median)", "÷ minimum", "wall (median)", "÷ cold cat"],
                 rows) + "\n" + note


MD5_SCRIPT = """
import sys
from pathlib import Path
from ltextract import api, archives
for tar in sys.argv[2:]:  # the synthetic tars made official: their md5 is read whatever it is
    archives.OFFICIAL[Path(tar).name] = archives.Official(Path(tar).name, Path(tar).stat().st_size, "")
checks = api.verify_sources(sys.argv[1], md5=True)
print(" ".join(c.md5 for c in checks))
"""


def bench_checks(manual: Path, work: Path, rounds: int) -> str:
    """verify against sha256sum of the same files, a re-run with nothing to do against a stat
    of every file, verify --sources --md5 against md5sum: each pair alternating, warm cache."""
    env = {"LTEXTRACT_CACHE_DIR": str(work / "cache")}
    out = work / "checked"
    clear(out)
    run(build_cmd(manual, out), env)  # untimed: the output the checks read
    splits = " ".join(f'"$1/{s}"' for s in ("train", "val", "test"))
    tars = [str(manual / TRAIN_TAR), str(manual / VAL_TAR)]
    pairs = [
        (Contender("ltextract verify OUT", lambda: run(ltextract("verify", out, "-q"), env)),
         Contender("find + xargs -0 -P2 sha256sum", lambda: run(
             ["sh", "-c", f"find {splits} -type f -print0 | xargs -0 -P2 sha256sum >/dev/null", "sh",
              str(out)])), 1.5),
        (Contender("ltextract build, nothing to do", lambda: run(build_cmd(manual, out), env)),
         Contender("find -printf '%s %T@' (a stat per file)", lambda: run(
             ["sh", "-c", 'find "$1" -printf "%s %T@\n" >/dev/null', "sh", str(out)])), 3.0),
        (Contender("ltextract verify --sources --md5", lambda: run([PY, "-c", MD5_SCRIPT, str(manual), *tars])),
         Contender("md5sum of the tars", lambda: run(["md5sum", *tars])), None),
    ]
    warm(*map(Path, tars))
    alternate([c for pair in pairs for c in pair[:2]], rounds, "checks")
    rows = []
    for ours, base, target in pairs:
        ratio = ours.median() / base.median()
        within = "–" if target is None else f"≤ {target:g}× ({'met' if ratio <= target else 'NOT met'})"
        rows += [[ours.name, secs(ours.median()), f"{ratio:.2f}×", within],
                 [base.name, secs(base.median()), "1.00×", ""]]
    files = sum(1 for _ in regular_files(out))
    note = f"{files:,} files in OUT (the full-count set's three splits); each pair run alternately.\n"
    return table("Checks: verify, a re-run with nothing to do, the downloads' md5 (warm cache)",
                 ["", "wall (median)", "÷ its baseline", "target"], rows) + "\n" + note


def formats_sections(full: Path, real: Path, work: Path, rounds: int) -> list[str]:
    """tfds and hf builds beside the folders build, at full count and at realistic sizes."""
    me = sys.modules[__name__]
    text, figures = bench_formats.bench_formats(
        me, full, work, rounds, "Build of train + val + test by format, full-count set, index cached (warm cache)")
    worst = max(f["rss"] for name, f in figures.items() if name != "folders")
    sized, _ = bench_formats.bench_formats(
        me, real, work, rounds, "Build of train + val + test by format, realistic-size set, index cached (warm cache)")
    return [text + f"\nPeak RSS of the tfds and hf builds at full count: {mb(worst)}.\n", sized]


def tfds_specs(quick: bool) -> dict[int, SynthSpec]:
    """Sets TFDS's own builder runs on: a few class counts (minutes past a hundred classes)."""
    if quick:
        return {2: lt_shape(2, 30, **SMALL), 4: lt_shape(4, 30, **SMALL)}
    return {25: lt_shape(25, 1250), 100: lt_shape(100, 1250)}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    mem = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
    return f"{os.cpu_count()} × {cpu}, {mem / 2**20:.0f} GiB RAM, Python {sys.version.split()[0]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=cache_dir() / "bench",
                    help="Folder for the generated sets (kept between runs) and scratch.")
    ap.add_argument("--runs", type=int, default=3, help="Rounds of alternating runs.")
    ap.add_argument("--slow-runs", type=int, default=1,
                    help="Rounds that include the minutes-long baselines (tarfile, GNU tar full"
                         " extraction at 1.25M files).")
    ap.add_argument("--quick", action="store_true", help="Tiny sets, one round: a smoke test.")
    ap.add_argument("--strategies", default="seek,stream", help="Build strategies to compare.")
    ap.add_argument("--skip", default="",
                    help="Comma-separated sections to skip: index,build,sized,cold,checks,formats,tfds,hub,places.")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    strategies = args.strategies.split(",")
    if args.quick:
        global QUICK
        QUICK = True
        full_spec, real_spec, rounds = (lt_shape(3, 30, **SMALL),
                                          lt_shape(2, 20, payload=20_000, **SMALL), 1)
    else:
        full_spec, real_spec, rounds = lt_shape(1000, 1250), lt_shape(30, 1250, payload=110_000), args.runs
    slow_rounds = min(rounds, args.slow_runs)
    # ltextract as installed: pip writes the bytecode at install; without it (an editable
    # install under PYTHONDONTWRITEBYTECODE) every timed run would compile the package again
    compileall.compile_dir(Path(ltextract_module.__file__).parent, quiet=1)
    data = args.data / ("quick" if args.quick else "full")
    full = ensure_set(data / "full-count", full_spec)
    real = ensure_set(data / "realistic", real_spec) if {"sized", "cold"} - skip else data / "realistic"
    work = data / "work"
    remove(work)
    work.mkdir(parents=True)
    if not args.quick:
        check_space(work, rounds)
    global TRASH
    TRASH = work / ".trash"
    report = [f"Machine: {machine()}. Medians of {rounds} alternating round(s); tarfile and GNU tar"
              f" full extraction in the first {slow_rounds}.\n"]
    try:
        if "index" not in skip:
            report.append(bench_index(full, work, rounds, slow_rounds))
        if "build" not in skip:
            text, rss = bench_build(full, work, rounds, slow_rounds, strategies)
            report.append(text + f"\nPeak RSS of build at full count: {mb(rss)}.\n")
        if "sized" not in skip:
            report.append(bench_build_sized(real, work, rounds, strategies))
        if "cold" not in skip:
            report.append(bench_cold(real, work, rounds, strategies))
        if "checks" not in skip:
            report.append(bench_checks(full, work, rounds))
        if "formats" not in skip:
            report += formats_sections(full, real, work, rounds)
        if "tfds" not in skip:
            sets = {c: ensure_set(data / f"tfds-{c}", spec) for c, spec in tfds_specs(args.quick).items()}
            report.append(bench_formats.bench_tfds_builder(sys.modules[__name__], sets, full, full_spec.classes,
                                                           work, rounds, slow_rounds))
        if "hub" not in skip:
            sys.modules.setdefault("bench", sys.modules[__name__])  # one module: its TRASH, QUICK
            from hub_bench import bench_hub  # (beside this script)
            report.append(bench_hub({"full-count": full, "realistic": real}, data, work, rounds, args.quick))
        if "places" not in skip:
            from bench_places import bench_places, ensure_places_set

            places = ensure_places_set(data / "places-256", args.quick)
            report.append(bench_places(sys.modules[__name__], places, work, rounds, strategies))
        print("\n".join(report), flush=True)
    finally:
        say("deleting the outputs of every run (kept until now, see clear())")
        remove(work)


if __name__ == "__main__":
    main()
