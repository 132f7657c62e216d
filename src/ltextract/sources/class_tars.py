"""The train tar unpacked one level: a folder of class tars `<wnid>.tar`, each indexed like the
flat val tar (headers only, cached) and read by offset."""
from __future__ import annotations

from ltextract.sources import Indexes, Key, Located, Source, Where
from ltextract.tar.walk import normalise


class ClassTarsSource(Source):
    kind = "class-tars"

    @property
    def shape(self) -> str:
        return "folder of class tars"

    def locate(self, keys: set[Key], indexes: Indexes) -> Located:
        found: dict[Key, Where] = {}
        for wnid in sorted({w for w, _ in keys}):
            tar = self.path / f"{wnid}.tar"
            if not tar.is_file():
                continue
            for _, members in indexes.member_tar(tar).iter_groups():
                for m in members:
                    key = (wnid, normalise(m.name, wnid))
                    if key in keys:
                        found[key] = (tar, m.offset, m.size)  # the last copy wins, as in tar
        return Located(found, str(self.path))
