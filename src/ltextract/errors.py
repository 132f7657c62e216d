"""The errors a user can act on: the CLI prints each as one `ltextract: error:` line, exit 1."""
from __future__ import annotations

import errno
from pathlib import Path


class LtError(Exception):
    """A failure the user can act on: the CLI prints it as one line and exits 1."""


class ListError(LtError):
    """A split list is malformed or does not match its pin."""


class TarError(LtError):
    """A tar (or another source archive) is missing, truncated or corrupt."""


class FetchError(LtError):
    """A list could not be downloaded."""


class UsageError(LtError):
    """Options that do not fit together: the CLI exits 2, as for its own usage errors."""


def write_error(out: Path, e: OSError) -> str:
    """One line for a failed write into OUT: what, where, and what to do."""
    if e.errno == errno.ENOSPC:
        return f"disk full while writing {e.filename or out}; free some space and re-run to finish"
    if e.errno == errno.ELOOP:
        return f"{e.filename} is a symlink; ltextract never writes through links (remove it)"
    return f"cannot write {e.filename or out}: {e.strerror}"
