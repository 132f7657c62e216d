"""The options and command class several `cli` commands share."""
from __future__ import annotations

from pathlib import Path

import click

from ltextract.benchmarks import DEFAULT, catalog, get
from ltextract.ui import Terminal

BENCHMARKS = tuple(catalog())


def _remember(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    setattr(Terminal, param.name or "", value)
    return value


quiet_option = click.option("--quiet", "-q", is_flag=True, callback=_remember,
                            help="Print nothing on stderr but errors.")
progress_option = click.option("--progress", is_flag=True, callback=_remember, expose_value=False,
                               help="Show progress bars even when stderr is not a terminal.")


class DownloadingCommand(click.Command):
    """A command that may download lists: its --help states how long a download can take."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from ltextract.benchmarks import fetch  # imports requests: only when help is shown

        urls = sum(len(s.mirrors) for s in get().splits if s.default)
        worst = urls * (fetch.TOTAL + sum(fetch.TIMEOUT)) / 60
        pauses = fetch.BACKOFF * (2 ** fetch.RETRIES - 1)
        with formatter.section("Downloads"):
            formatter.write_text(f"{fetch.TOTAL_TIMEOUT_NOTE} With every one of the {urls} published"
                                 f" mirrors failing that way, giving up takes at most about"
                                 f" {worst:.0f} min. A refused connection or an HTTP error costs a"
                                 f" mirror at most its backoff pauses ({pauses:g} s).")
        super().format_epilog(ctx, formatter)


manual_dir_option = click.option(
    "--manual-dir", type=click.Path(path_type=Path),
    help="Folder holding the images: ILSVRC2012's two tars, split tars (.tar.001, ...), class tars"
         " or extracted trees; for Places-LT, Places365's tars or trees"
         " [default: $LTEXTRACT_MANUAL_DIR, else ~/tensorflow_datasets/downloads/manual].")
benchmark_option = click.option(
    "--benchmark", default=DEFAULT, show_default=True, type=click.Choice(BENCHMARKS),
    help="Which benchmark (`ltextract benchmarks` lists them).")
split_option = click.option(
    "--split", "splits", multiple=True, metavar="NAME",
    help="Split (repeatable) [default: the benchmark's train, val, test; `ltextract benchmarks`"
         " names the others, e.g. imagenet_lt's SADE test sets forward50 ... backward50].")


def parse_split_urls(values: tuple[str, ...]) -> dict[str, str]:
    urls = {}
    for value in values:
        name, eq, url = value.partition("=")
        if not eq or not name or not url:
            raise click.BadParameter(f"{value!r}: expected NAME=URL with NAME a split",
                                     param_hint="--split-url")
        urls[name] = url
    return urls
