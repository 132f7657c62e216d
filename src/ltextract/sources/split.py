"""Another split already built in OUT as the source of a split whose images are all its own:
SADE's test sets are subsets of ImageNet-LT's test, so with test in OUT their files are hard
links to test's (placed with `formats.links.LINK_OR_COPY`): no byte read or stored twice, where
the filesystem allows. The digests come from test's journal, for files it still vouches for."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from ltextract.sources import Indexes, Key, Located, Where
from ltextract.sources.tree import TreeSource

if TYPE_CHECKING:
    from ltextract.out.journal import Done


class SplitSource(TreeSource):
    kind = "split"

    def __init__(self, origin: str, out: Path, parent: str, journal: dict[str, "Done"], parent_identity: str):
        super().__init__(origin, out / parent)
        self.parent = parent
        self.journal = journal  # the parent's finished files: rel -> Done
        self.parent_identity = parent_identity  # where its files came from

    @property
    def identity_note(self) -> str:
        """Links to test's files made from another source are re-made, not trusted."""
        return f" of {self.parent_identity}"

    @property
    def shape(self) -> str:
        return f"the {self.parent} split already in OUT, hard-linked"

    def describe(self) -> str:
        return f"{self.origin} from {self.path} ({self.shape})"

    def locate(self, keys: set[Key], indexes: Indexes) -> Located:
        found: dict[Key, Where] = {}
        digests: dict[Key, str] = {}
        for cls, name in keys:
            rel = f"{self.parent}/{cls}/{name}"
            try:
                st = os.lstat(self.path / cls / name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            found[(cls, name)] = (self.path / cls / name, 0, st.st_size)
            done = self.journal.get(rel)
            if done is not None and (done.size, done.mtime_ns) == (st.st_size, st.st_mtime_ns):
                digests[(cls, name)] = done.sha256  # the file test's journal vouches for
        return Located(found, str(self.path), digests=digests)
