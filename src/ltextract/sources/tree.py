"""An extracted tree: `train/<wnid>/<file>`, and val either in wnid folders or flat (as Kaggle
ships it: no wnid folders, so, as for the val tar, each image's wnid comes from the list)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from ltextract.sources import Indexes, Key, Located, Source, Where


class TreeSource(Source):
    kind = "tree"
    linkable = True

    def __init__(self, origin: str, path: Path, flat: bool = False):
        super().__init__(origin, path)
        self.flat = flat  # images directly in `path`, no wnid folders

    @property
    def shape(self) -> str:
        return "flat folder" if self.flat else "folder of wnid folders"

    def relpath(self, cls: str, file: str) -> str:
        """Where in the tree a list's image is."""
        return file if self.flat else f"{cls}/{file}"

    def locate(self, keys: set[Key], indexes: Indexes) -> Located:
        found: dict[Key, Where] = {}
        for wnid, name in keys:
            path = self.path / self.relpath(wnid, name)
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISREG(st.st_mode):
                found[(wnid, name)] = (path, 0, st.st_size)
        return Located(found, str(self.path))
