"""A tar that ends early, in every wording ltextract uses: one home for truncation.

A cut download keeps every member wholly before the cut, so builds keep those files and say
what is missing; a member that runs past the end of its *class* tar, or claims more bytes than
even the complete file holds, is corruption instead, and nothing after it is trusted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ltextract.archives import OFFICIAL_SIZES
from ltextract.errors import TarError
from ltextract.tar.header import BLOCK, printable


class Truncated(TarError):
    """A header or payload runs past the end of its tar (`where`), or only the zero padding after
    a whole payload does (`padding`); `truncation_message` rewords it with the file's context."""

    def __init__(self, where: str, header_at: int, needs: int, what: str, end: int,
                 padding: bool = False):
        self.where, self.header_at, self.needs, self.end = where, header_at, needs, end
        self.what, self.padding = printable(what), padding
        super().__init__(f"{self.subject()} needs bytes up to {needs:,}, past the end of its tar at {end:,}")

    def subject(self, inner: str = "") -> str:
        """What runs past the end: "[the padding after ][<inner>: ]<what> (header at offset N)";
        `inner` is the class tar holding the member, when a message names it."""
        return (f"{'the padding after ' if self.padding else ''}{inner + ': ' if inner else ''}"
                f"{self.what} (header at offset {self.header_at:,})")

    def __reduce__(self):  # crosses from a scan worker process
        return Truncated, (self.where, self.header_at, self.needs, self.what, self.end, self.padding)


def official_size_hint(name: str, size: int) -> str:
    """" (the official <name> is N bytes, this file M: an incomplete download?)" when `name` is one
    of the official archives and `size` is not its size, else "": a cut download often ends at a
    member boundary, where nothing in the tar itself shows the cut."""
    official = OFFICIAL_SIZES.get(name)
    if not official or size == official:
        return ""
    return f" (the official {name} is {official:,} bytes, this file {size:,}: an incomplete download?)"


def is_cut(path: Path, size: int, t: Truncated) -> bool:
    """A cut file explains a member running past its end, unless the member lies inside a class
    tar (which the outer scan found whole) or claims more than even the complete file holds."""
    whole = max(size, OFFICIAL_SIZES.get(path.name) or 0)
    return t.end >= size and t.needs - t.header_at <= whole


def truncation_message(path: Path, size: int, t: Truncated) -> str:
    member = t.subject(t.where[len(str(path)):].lstrip(": "))  # with the class tar, if in one
    if is_cut(path, size, t):
        return (f"{path} is truncated: {member} needs bytes up to {t.needs:,} but the file ends"
                f" at {size:,}{official_size_hint(path.name, size)}")
    bound = f"past the end of its tar at {t.end:,}" if t.end < size else \
        f"more than the whole file ({size:,} bytes)"
    if t.padding:  # the member's data is whole, the zero padding after it is not
        return f"{path} is corrupt: {member} runs to byte {t.needs:,}, {bound}"
    return f"{path} is corrupt: {member} claims {t.needs - t.header_at - BLOCK:,} bytes, {bound}"


def stream_cut_message(label: str, size: Optional[int], t: Truncated, ended: bool) -> str:
    """What a stream's cut says: worded as the index scan words it when the size is known. A
    member that is corrupt rather than cut raises TarError: nothing after it is trusted."""
    if size is not None:
        path = Path(label)
        if not is_cut(path, size, t):
            raise TarError(truncation_message(path, size, t))
        return truncation_message(path, size, t)
    if not ended:
        raise TarError(f"{t.where}: {t.subject()} claims bytes up to {t.needs:,}, past the end of"
                       " its tar: corrupt archive")
    return (f"{label} is truncated: the input ended early, inside"
            f" {t.subject(t.where[len(label):].lstrip(': '))}, which needs bytes up to {t.needs:,}")


def skipped_past_end_message(label: str, group: str) -> str:
    """A tar of unknown size (a pipe) that ended inside bytes a stream passed over."""
    return (f"{label} is truncated: the input ended inside the data or padding of a"
            f" member it passed over{f' (after {printable(group)})' if group else ''}")


def short_read(file: Path, rel: str, end: int) -> TarError:
    """A member's bytes came up short since the tar was indexed."""
    return TarError(f"{file} is truncated: {rel} needs bytes up to {end:,}"
                    " (was the tar replaced since it was indexed?)")


def partial_build(why: str, kept: int, listed: int) -> TarError:
    """The end of a build from a cut tar: what it kept, and how to finish."""
    return TarError(f"{why}; the {kept:,} of {listed:,} listed files that lie before the cut"
                    " are extracted and kept: restore the complete tar and re-run to finish")
