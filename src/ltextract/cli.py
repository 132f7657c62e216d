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
from ltextract.benchmarks import get
from ltextract.errors import LtError, UsageError
from ltextract.formats import FORMATS
from ltextract.formats.links import MODES
from ltextract.sources.storage import STRATEGIES
from ltextract.ui import Terminal, bar, say, warn

SPLITS = get().split_names


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so cleanup runs as for Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def _remember(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    setattr(Terminal, param.name or "", value)
    return value


quiet_option = click.option("--quiet", "-q", is_flag=True, callback=_remember,
                            help="Print nothing on stderr but errors.")
progress_option = click.option("--progress", is_flag=True, callback=_remember, expose_value=False,
                               help="Show progress bars even when stderr is not a terminal.")


class _DownloadingCommand(click.Command):
    """A command that may download lists: its --help states how long a download can take."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from ltextract.benchmarks import fetch  # imports requests: only when help is shown

        urls = sum(len(s.mirrors) for s in get().splits)
        worst = urls * (fetch.TOTAL + sum(fetch.TIMEOUT)) / 60
        pauses = fetch.BACKOFF * (2 ** fetch.RETRIES - 1)
        with formatter.section("Downloads"):
            formatter.write_text(f"{fetch.TOTAL_TIMEOUT_NOTE} With every one of the {urls} published"
                                 f" mirrors failing that way, giving up takes at most about"
                                 f" {worst:.0f} min. A refused connection or an HTTP error costs a"
                                 f" mirror at most its backoff pauses ({pauses:g} s).")
        super().format_epilog(ctx, formatter)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ltextract")
def cli() -> None:
    """Build ImageNet-LT from ILSVRC2012 (the two tars, split tars, class tars or extracted
    trees), reading only the bytes it needs.

    stdout carries only data (lists, --json, tables); messages and progress go to stderr.

    \b
    Example:
      ltextract build --manual-dir ~/imagenet --out ~/data/ImageNet_LT
      ltextract stats ~/data/ImageNet_LT --plot lt.png

    \b
    Shell completion (bash; zsh_source / fish_source likewise):
      eval "$(_LTEXTRACT_COMPLETE=bash_source ltextract)"
    """


manual_dir_option = click.option(
    "--manual-dir", type=click.Path(path_type=Path),
    help="Folder holding the ILSVRC2012 images: the two tars, split tars (.tar.001, ...), class tars"
         " or extracted trees [default: $LTEXTRACT_MANUAL_DIR, else ~/tensorflow_datasets/downloads/manual].")


def parse_split_urls(values: tuple[str, ...]) -> dict[str, str]:
    urls = {}
    for value in values:
        name, eq, url = value.partition("=")
        if not eq or name not in SPLITS or not url:
            raise click.BadParameter(f"{value!r}: expected NAME=URL with NAME one of {', '.join(SPLITS)}",
                                     param_hint="--split-url")
        urls[name] = url
    return urls


@cli.command(cls=_DownloadingCommand)
@manual_dir_option
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--split", "splits", multiple=True, type=click.Choice(SPLITS),
              help="Split to build (repeatable) [default: train, val, test].")
@click.option("--splits-dir", type=click.Path(path_type=Path),
              help="Read ImageNet_LT_<split>.txt from this folder instead of downloading.")
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
                   " tfds: OUT/imagenet_lt/1.0.0 as TensorFlow Datasets prepares it (tfds.load);"
                   " hf: parquet shards and a dataset card (datasets.load_dataset).")
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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object on stdout.")
@quiet_option
@progress_option
def build(manual_dir: Optional[Path], out: Path, splits: tuple[str, ...], splits_dir: Optional[Path],
          split_urls: tuple[str, ...], strategy: str, workers: int, fmt: str, shard_size: Optional[str],
          tfds_file_format: str, train_source: Optional[Path], val_source: Optional[Path], link: str,
          as_json: bool, quiet: bool) -> None:
    """Build OUT/<split>/<wnid>/<file> (or shards: webdataset, tfds, hf) with CSV manifests; resumable.

    The manual dir may hold the two tars, tars split into parts (.tar.001, .002, ...), the
    train tar unpacked into class tars (ILSVRC2012_img_train/n*.tar), or extracted trees
    (train/n*/, val/ flat or in wnid folders, or Kaggle's ILSVRC/Data/CLS-LOC/{train,val}).
    A tar can also come from stdin: --train-source - or --val-source -.

    \b
    Example:
      ltextract build --manual-dir ~/imagenet --out ~/data/ImageNet_LT
      ssh nas cat /data/ILSVRC2012_img_train.tar | ltextract build --train-source - --split train ...
      ltextract build --out lt-wds --format webdataset --shard-size 512MB
      ltextract build --out ~/data/lt-tfds --format tfds   # tfds.load('imagenet_lt', data_dir=...)
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    summary = api.build(out, manual_dir, splits=splits, splits_dir=splits_dir,
                        split_urls=parse_split_urls(split_urls), strategy=strategy, workers=workers,
                        format=fmt, shard_size=shard_size, train_source=train_source,
                        val_source=val_source, link=link, quiet=quiet, tfds_file_format=tfds_file_format)
    if as_json:
        click.echo(json.dumps(summary, indent=2))


@cli.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--workers", default=DEFAULT_WORKERS, show_default=True, type=click.IntRange(1, 64))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout.")
@quiet_option
@progress_option
def verify(out: Path, workers: int, as_json: bool, quiet: bool) -> None:
    """Check every file of OUT against its manifest, the lists and the published totals.

    Exit 0 when everything holds, 1 otherwise.

    \b
    Example:
      ltextract verify ~/data/ImageNet_LT
    """
    from ltextract.out.manifest import read_metadata

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
                      + (f" ({more:,} more not shown)" if more > 0 else ""))
    files = sum(s["files"] for s in report.splits.values())
    say(f"ok: {files:,} files in {', '.join(report.splits)} match their manifests", quiet)


@cli.command(cls=_DownloadingCommand)
@click.option("--dest", type=click.Path(path_type=Path),
              help="Folder to write the lists into [default: the cache dir].")
@quiet_option
def fetch(dest: Optional[Path], quiet: bool) -> None:
    """Download the three published lists and check them against their pinned sha256.

    Mirrors are tried in order, each with timeouts and a few retries. Prints each list's path.

    \b
    Example:
      ltextract fetch --dest lists/
    """
    for path in api.fetch(dest, warn=warn).values():
        click.echo(str(path))


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
@click.option("--classes", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--shape", type=click.Choice(("tars", "hub-parquet", "hub-tar.gz")), default="tars",
              show_default=True, help="The two ILSVRC2012 tars, or the Hugging Face Hub's shards"
              " of the same images in OUT/data (hub-parquet needs pyarrow).")
@quiet_option
def synth(out: Path, classes: int, seed: int, shape: str, quiet: bool) -> None:
    """Write a small ILSVRC2012-shaped manual dir (nested class tars, flat val tar, tiny JPEGs,
    real wnids) and matching long-tailed lists ImageNet_LT_{train,val,test}.txt.

    \b
    Example:
      ltextract synth --out demo/manual --classes 20
      ltextract build --manual-dir demo/manual --splits-dir demo/manual --out demo/out
      ltextract synth --out demo/hub --classes 20 --shape hub-parquet
    """
    from ltextract.synth import SynthSpec, make_manual_dir

    result = make_manual_dir(out, SynthSpec(classes=classes, seed=seed))
    if shape != "tars":
        from ltextract.synth.hub import HubSpec, make_hub_dir

        try:
            make_hub_dir(result.train_tar, result.val_tar, result.lists["test"], out,
                         HubSpec(shape=shape.partition("-")[2], seed=seed))
        except ImportError as e:
            raise LtError(f"--shape {shape} needs {e.name}: pip install 'ltextract[hub]'") from None
        result.train_tar.unlink()  # the Hub's shards are the manual dir's images now
        result.val_tar.unlink()
    click.echo(str(result.manual_dir))


@cli.command()
@click.argument("out", required=False, type=click.Path(path_type=Path))
@click.option("--splits-dir", type=click.Path(path_type=Path),
              help="Count ImageNet_LT_train.txt in this folder instead of a built OUT.")
@click.option("--json", "as_json", is_flag=True, help="Print groups, class lists and counts as JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print wnid,label,train_count,group per class.")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE.png",
              help="Also draw the sorted class-frequency curve (needs ltextract[plot]).")
@quiet_option
def stats(out: Optional[Path], splits_dir: Optional[Path], as_json: bool, as_csv: bool,
          plot: Optional[Path], quiet: bool) -> None:
    """Per-class train counts and the many- (>100), medium- (20-100) and few-shot (<20) groups.

    \b
    Example:
      ltextract stats ~/data/ImageNet_LT --plot lt.png
      ltextract stats --splits-dir lists/ --json | jq '.groups.few.wnids'
    """
    from ltextract import counts as st

    if as_json and as_csv:
        raise click.UsageError("--json and --csv are exclusive")
    result = api.stats(out, splits_dir)
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
