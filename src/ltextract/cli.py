"""Command line: options parsed, one `api` function called, errors mapped to one stderr line
and an exit code. stdout carries data, stderr progress and messages."""
from __future__ import annotations

import errno
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

import click

from ltextract import __version__, api
from ltextract.api import DEFAULT_WORKERS
from ltextract.benchmarks import DEFAULT, catalog, get
from ltextract.cli_options import (BENCHMARKS, DownloadingCommand, benchmark_option, manual_dir_option,
                                   parse_split_urls, progress_option, quiet_option, split_option)
from ltextract.errors import LtError, UsageError
from ltextract.formats import FORMATS
from ltextract.formats.links import MODES
from ltextract.plan import LAYOUTS
from ltextract.sources.storage import STRATEGIES
from ltextract.ui import bar, say, warn


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so cleanup runs as for Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ltextract")
def cli() -> None:
    """Build long-tailed benchmarks (ImageNet-LT, its test-agnostic test sets, ImageNet-100-LT,
    Places-LT) from the archives you have (ILSVRC2012's tars, split tars, class tars or extracted
    trees; Places365's tars or trees), reading only the bytes they need.

    stdout carries only data (lists, --json, tables); messages and progress go to stderr.

    \b
    Example:
      ltextract build --manual-dir ~/imagenet --out ~/data/ImageNet_LT
      ltextract build --benchmark places_lt --manual-dir ~/places365 --out ~/data/Places_LT
      ltextract stats ~/data/ImageNet_LT --plot lt.png
      ltextract benchmarks

    \b
    Shell completion (bash; zsh_source / fish_source likewise):
      eval "$(_LTEXTRACT_COMPLETE=bash_source ltextract)"
    """


@cli.command(cls=DownloadingCommand)
@manual_dir_option
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@benchmark_option
@split_option
@click.option("--splits-dir", type=click.Path(path_type=Path),
              help="Read the lists under their published file names (ImageNet_LT_<split>.txt, ...)"
                   " from this folder instead of downloading.")
@click.option("--split-url", "split_urls", multiple=True, metavar="NAME=URL",
              help="Fetch one split's list from URL (repeatable).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto",
              show_default=True, help="seek: read only the needed bytes (index, then sorted reads);"
              " stream: one sequential pass (spinning disks, network filesystems, pipes);"
              " auto: from the device and filesystem of each tar.")
@click.option("--workers", default=DEFAULT_WORKERS, show_default=True, type=click.IntRange(1, 64),
              help="Copy worker processes (seek) or writer threads (stream): reads and writes in flight.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="folders", show_default=True,
              help="folders: OUT/<split>/<wnid>/<file> (ImageFolder); webdataset: tar shards;"
                   " tfds: OUT/<benchmark>/1.0.0 as TensorFlow Datasets prepares it (tfds.load);"
                   " hf: parquet shards and a dataset card (datasets.load_dataset).")
@click.option("--layout", type=click.Choice(LAYOUTS), default="splits", show_default=True,
              help="splits: one folder per split, OUT/<split>/<class>/<file>; lists: every file at"
                   " exactly its list path (OUT/train/..., OUT/val/...), so the lists codebases ship"
                   " resolve with root = OUT.")
@click.option("--shard-size", metavar="SIZE|Nfiles",
              help="webdataset and hf shard size: bytes (512MB, 1GiB) or samples per shard (5000files)"
                   " [default: 1GB for webdataset, 500MB for hf; tfds shards as TFDS does].")
@click.option("--tfds-file-format", type=click.Choice(["tfrecord", "array_record"]), default="tfrecord",
              show_default=True, help="--format tfds: TFRecord (tfds.load) or ArrayRecord (tfds.data_source).")
@click.option("--train-source", type=click.Path(path_type=Path, allow_dash=True), metavar="PATH|-",
              help="Train images from this tar, folder of class tars or tree [default: detected].")
@click.option("--val-source", type=click.Path(path_type=Path, allow_dash=True), metavar="PATH|-",
              help="Val images from this tar or tree (flat or wnid folders) [default: detected].")
@click.option("--link", type=click.Choice(MODES), default="copy", show_default=True,
              help="How files from an extracted tree reach OUT (hardlink/symlink: no space).")
@click.option("--recheck", is_flag=True,
              help="Re-read every file kept from an earlier run and compare it with the source;"
                   " rewrite those that differ (verify records what it finds; this needs no verify).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object on stdout.")
@quiet_option
@progress_option
def build(manual_dir: Optional[Path], out: Path, benchmark: str, splits: tuple[str, ...],
          splits_dir: Optional[Path], split_urls: tuple[str, ...], strategy: str, workers: int, fmt: str,
          layout: str, shard_size: Optional[str], tfds_file_format: str, train_source: Optional[Path],
          val_source: Optional[Path], link: str, recheck: bool, as_json: bool, quiet: bool) -> None:
    """Build OUT/<split>/<wnid>/<file> (or shards: webdataset, tfds, hf) with CSV manifests; resumable.

    For ILSVRC2012, the manual dir may hold the two tars, tars split into parts (.tar.001, ...),
    the train tar unpacked into class tars (ILSVRC2012_img_train/n*.tar), or extracted trees
    (train/n*/, val/ flat or in wnid folders, or Kaggle's ILSVRC/Data/CLS-LOC/{train,val}). For
    Places-LT: places365standard_easyformat.tar, train_256_places365standard.tar + val_256.tar,
    the _large pair, or any of them extracted. A tar can also come from stdin: --train-source -
    or --val-source -. SADE's test sets (--split forward50 ...) are hard links to test's files
    when test is in OUT.

    \b
    Example:
      ltextract build --manual-dir ~/imagenet --out ~/data/ImageNet_LT
      ltextract build --manual-dir ~/imagenet --out ~/data/ImageNet_LT --split forward50 --split uniform
      ltextract build --benchmark places_lt --manual-dir ~/places365 --out ~/data/Places_LT --layout lists
      ssh nas cat /data/ILSVRC2012_img_train.tar | ltextract build --train-source - --split train ...
      ltextract build --out lt-wds --format webdataset --shard-size 512MB
      ltextract build --out ~/data/lt-tfds --format tfds   # tfds.load('imagenet_lt', data_dir=...)
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    summary = api.build(out, manual_dir, splits=splits, splits_dir=splits_dir,
                        split_urls=parse_split_urls(split_urls), strategy=strategy, workers=workers,
                        format=fmt, shard_size=shard_size, train_source=train_source,
                        val_source=val_source, link=link, quiet=quiet, benchmark=benchmark,
                        layout=layout, tfds_file_format=tfds_file_format, recheck=recheck)
    if as_json:
        click.echo(json.dumps(summary, indent=2))


@cli.command()
@click.argument("out", required=False, type=click.Path(path_type=Path))
@click.option("--workers", default=DEFAULT_WORKERS, show_default=True, type=click.IntRange(1, 64),
              help="Files (or shards) hashed at once, in worker processes.")
@click.option("--sources", is_flag=True,
              help="Instead of an OUT, check the downloads in the manual dir (the two tars, whole or"
                   " in parts) against the official sizes.")
@manual_dir_option
@click.option("--md5", is_flag=True,
              help="With --sources: also each archive's md5 (reads it all, front to back).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout.")
@quiet_option
@progress_option
def verify(out: Optional[Path], workers: int, sources: bool, manual_dir: Optional[Path], md5: bool,
           as_json: bool, quiet: bool) -> None:
    """Check every file of OUT against its manifest, the lists and the published totals; or,
    with --sources, the downloaded archives against the official sizes and md5s.

    Exit 0 when everything holds, 1 otherwise.

    \b
    Example:
      ltextract verify ~/data/ImageNet_LT
      ltextract verify --sources --manual-dir ~/imagenet --md5
    """
    from ltextract.out.manifest import read_metadata

    if sources == (out is not None):
        raise click.UsageError("give OUT, or --sources (the downloads in the manual dir)")
    if not sources and (md5 or manual_dir):
        raise click.UsageError("--md5 and --manual-dir go with --sources")
    if sources:
        return _verify_sources(manual_dir, md5, as_json, quiet)
    assert out is not None
    if not out.is_dir():
        raise LtError(f"{out} is not a folder")
    total = sum(s.get("bytes", 0) for s in read_metadata(out)["splits"].values())
    with bar("verify", total, quiet) as b:
        report = api.verify(out, workers, b.update)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    for p in report.problems[:10]:
        click.echo(f"ltextract: {out / p.path}: {p.what}", err=True)
    if report.problems:
        more = len(report.problems) - 10
        raise LtError(f"verify found {len(report.problems):,} problem(s) in {out}"
                      + (f" ({more:,} more not shown)" if more > 0 else "") + _how_to_repair(report))
    files = sum(s["files"] for s in report.splits.values())
    say(f"ok: {files:,} files in {', '.join(report.splits)} match their manifests", quiet)


def _verify_sources(manual_dir: Optional[Path], md5: bool, as_json: bool, quiet: bool) -> None:
    from ltextract.sources.official import add_md5s

    checks = api.verify_sources(manual_dir)  # sizes, at once, before any reading
    if md5:
        with bar("md5", sum(c.size for c in checks if c.size_ok), quiet) as b:
            add_md5s(checks, b.update)
    if as_json:
        click.echo(json.dumps({"archives": [c.as_json() for c in checks]}, indent=2))
    problems = [c.problem() for c in checks if c.problem()]
    for c in checks:
        if not c.problem():
            content = f"and md5 {c.md5}" if c.md5 else "(pass --md5 to check the content too)"
            say(f"{c.name}: {c.size:,} bytes {content}, as the official archive", quiet)
    if problems:
        raise LtError("; ".join(problems))


def _how_to_repair(report: Any) -> str:
    """What a build does about the damaged files: rewrites those verify recorded; where nothing
    could be recorded, --recheck finds them again."""
    if not report.damaged:
        return ""
    if report.unrecorded:
        return (f": {report.damaged:,} file(s) differ; re-run build --recheck to repair them"
                f" (not recorded: {report.unrecorded})")
    return f": {report.damaged:,} file(s) differ; re-run build to repair them"


@cli.command(cls=DownloadingCommand)
@click.option("--dest", type=click.Path(path_type=Path),
              help="Folder to write the lists into [default: the cache dir].")
@benchmark_option
@split_option
@quiet_option
def fetch(dest: Optional[Path], benchmark: str, splits: tuple[str, ...], quiet: bool) -> None:
    """Download a benchmark's published lists and check them against their pinned sha256.

    Mirrors are tried in order, each with timeouts and a few retries. Prints each list's path.

    \b
    Example:
      ltextract fetch --dest lists/
      ltextract fetch --benchmark places_lt --dest lists/
    """
    for path in api.fetch(dest, warn=warn, benchmark=benchmark, splits=splits).values():
        click.echo(str(path))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
def benchmarks(as_json: bool) -> None:
    """The benchmarks ltextract builds: splits with image and class counts, the archives each
    reads, list files with sha256 pins and mirrors (--json), citations (--json).

    \b
    Example:
      ltextract benchmarks
      ltextract benchmarks --json | jq '.[] | .name'
    """
    if as_json:
        click.echo(json.dumps(api.benchmarks(), indent=2))
        return
    from ltextract.benchmarks.describe import render

    click.echo(render(list(catalog().values())), nl=False)


@cli.command()
@manual_dir_option
@click.option("--list", "as_list", is_flag=True,
              help="Stream archive<TAB>member<TAB>offset<TAB>size lines on stdout.")
@click.option("--refresh", is_flag=True, help="Rescan even when the cached index matches.")
@quiet_option
@progress_option
def index(manual_dir: Optional[Path], as_list: bool, refresh: bool, quiet: bool) -> None:
    """Build (or load from the cache) the member index of the tars and summarise it.

    \b
    Example:
      ltextract index --manual-dir ~/imagenet --list | awk -F'\\t' '{s += $4} END {print s}'
    """
    started = time.monotonic()
    for tar, idx in api.index(manual_dir, refresh, quiet):
        seconds = time.monotonic() - started
        if as_list:
            for group, members in idx.iter_groups():
                archive = f"{tar.name}/{group.name}" if group.name else tar.name
                click.echo("".join(f"{archive}\t{m.name}\t{m.offset}\t{m.size}\n" for m in members),
                           nl=False)
        else:
            click.echo(f"{tar.name}\t{len(idx.groups) if idx.nested else 1} tar(s)\t{idx.members} members"
                       f"\t{sum(idx.sizes)} bytes\t{'cached' if idx.from_cache else 'scanned'}"
                       f"\t{seconds:.3f} s")
        started = time.monotonic()


@cli.command()
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Manual dir to create.")
@benchmark_option
@click.option("--shape", type=click.Choice(("tars", "hub-parquet", "hub-tar.gz", "easyformat", "256", "large")),
              help="The archives: ILSVRC2012's two tars, or the Hugging Face Hub's shards of the same"
                   " images in OUT/data (hub-parquet needs pyarrow); Places365's easy-format tar, or"
                   " its 256 or large pair [default: tars; places_lt: 256].")
@click.option("--lists", "lists_dir", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Make the archives around the benchmark's lists in DIR (e.g. the published"
                   " ones) instead of synthetic lists.")
@click.option("--classes", default=10, show_default=True, type=click.IntRange(1, 1000),
              help="Classes: real wnids (ImageNet), spread evenly over the benchmark's classes.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Random seed: the same seed gives the same bytes.")
@quiet_option
def synth(out: Path, benchmark: str, shape: Optional[str], lists_dir: Optional[Path], classes: int,
          seed: int, quiet: bool) -> None:
    """Write a small manual dir for a benchmark: archives shaped like the real ones (ILSVRC2012's
    class tars and flat val tar, or the Hugging Face Hub's shards of them; Places365's tars; tiny
    JPEGs, the real class names) and matching long-tailed lists under their published names (for
    imagenet_lt, SADE's test sets too); or, with --lists DIR, archives holding every image of the
    lists in DIR.

    \b
    Example:
      ltextract synth --out demo/manual --classes 20
      ltextract build --manual-dir demo/manual --splits-dir demo/manual --out demo/out
      ltextract synth --out demo/hub --classes 20 --shape hub-parquet
      ltextract synth --benchmark places_lt --shape easyformat --out demo/places
      ltextract synth --benchmark imagenet100_lt --lists ~/lists --out demo/in100
    """
    from ltextract.synth.archives import make_benchmark_dir

    bench = get(benchmark)
    hub = shape in ("hub-parquet", "hub-tar.gz")
    if hub and bench.images != "ilsvrc2012":
        raise UsageError(f"--shape {shape} holds ILSVRC2012's images, not {bench.title}'s")
    try:
        tars = make_benchmark_dir(out, bench, "tars" if hub else shape or "", lists_dir, classes, seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if hub:
        from ltextract.synth.hub import HubSpec, make_hub_dir

        try:
            make_hub_dir(tars["train"], tars["val"], (lists_dir or out) / bench.split("test").pin.filename,
                         out, HubSpec(shape=shape.partition("-")[2], seed=seed))  # type: ignore[union-attr]
        except ImportError as e:
            raise LtError(f"--shape {shape} needs {e.name}: pip install 'ltextract[hub]'") from None
        tars["train"].unlink()  # the Hub's shards are the manual dir's images now
        tars["val"].unlink()
    click.echo(str(out))


@cli.command()
@click.argument("out", required=False, type=click.Path(path_type=Path))
@click.option("--splits-dir", type=click.Path(path_type=Path),
              help="Count the benchmark's train list (ImageNet_LT_train.txt, ...) in this folder"
                   " instead of a built OUT.")
@click.option("--benchmark", type=click.Choice(BENCHMARKS),
              help=f"With --splits-dir: whose train list [default: {DEFAULT}]; OUT records its own.")
@click.option("--export", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Also write classnames.txt (class folders in label order), class_counts.json"
                   " (train images per label) and shot_groups.json (labels per group) into DIR.")
@click.option("--json", "as_json", is_flag=True, help="Print groups, class lists and counts as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print wnid,label,train_count,group per class.")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE.png",
              help="Also draw the sorted class-frequency curve (needs ltextract[plot]).")
@quiet_option
def stats(out: Optional[Path], splits_dir: Optional[Path], benchmark: Optional[str], export: Optional[Path],
          as_json: bool, as_csv: bool, plot: Optional[Path], quiet: bool) -> None:
    """Per-class train counts and the many- (>100), medium- (20-100) and few-shot (<20) groups.

    \b
    Example:
      ltextract stats ~/data/ImageNet_LT --plot lt.png
      ltextract stats ~/data/Places_LT --export ~/data/Places_LT/meta
      ltextract stats --splits-dir lists/ --json | jq '.groups.few.wnids'
      ltextract stats --benchmark places_lt --splits-dir lists/ --export meta/
    """
    from ltextract import counts as st

    if as_json and as_csv:
        raise click.UsageError("--json and --csv are exclusive")
    result = api.stats(out, splits_dir, benchmark, export)
    if export is not None:
        say(f"wrote {', '.join(st.EXPORTS)} into {export}", quiet)
    if plot is not None:
        st.plot(result, plot)
        say(f"wrote {plot}", quiet)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        click.echo(st.render_csv(result) if as_csv else st.render_table(result), nl=False)


def main() -> None:
    """Entry point: every failure becomes one `ltextract: error:` line and an exit code."""
    try:
        rv = cli.main(prog_name="ltextract", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except UsageError as e:
        click.UsageError(str(e)).show()
        sys.exit(2)
    except (click.exceptions.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        click.echo("ltextract: interrupted; finished files are kept, re-run to complete", err=True)
        sys.exit(130)
    except Terminated:
        click.echo("ltextract: terminated; finished files are kept, re-run to complete", err=True)
        sys.exit(143)
    except LtError as e:
        click.echo(f"ltextract: error: {e}", err=True)
        sys.exit(1)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        hint = "; free some space and re-run to finish" if e.errno == errno.ENOSPC else ""
        click.echo(f"ltextract: error: {where}{e.strerror or e}{hint}", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
