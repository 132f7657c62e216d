"""How ltextract talks to people: messages and progress bars on stderr (stdout is data)."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, Optional

import click
from tqdm import tqdm


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
def bar(desc: str, total: Optional[int], quiet: bool) -> Iterator[tqdm]:
    """On stderr, only when it is a terminal (tqdm's disable=None) unless --progress."""
    disable = True if quiet else (False if Terminal.progress else None)
    with tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
              disable=disable, file=sys.stderr, leave=False) as b:
        yield b
