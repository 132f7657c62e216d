"""How ltextract talks to people: messages and progress bars on stderr (stdout is data)."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, Optional

import click


class Terminal:
    """What --quiet and --progress asked for; one command runs per process."""
    quiet = False
    progress = False


def say(msg: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(msg, err=True)


def warn(msg: str) -> None:
    if not Terminal.quiet:
        click.echo(f"ltextract: warning: {msg}", err=True)


@contextmanager
def bar(desc: str, total: Optional[int], quiet: bool) -> Iterator[Bar]:
    """On stderr, only when it is a terminal (as tqdm's disable=None) unless --progress. A bar
    nobody sees is not built: importing tqdm is a sixth of a quiet command's start-up."""
    if quiet or not (Terminal.progress or sys.stderr.isatty()):
        yield Bar()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
              file=sys.stderr, leave=False) as b:
        yield b


class Bar:
    """What `bar` yields when it shows nothing: callers only count progress."""

    def update(self, n: float = 1) -> None:
        pass
