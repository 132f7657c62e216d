"""The published archives ltextract reads: their file names, official sizes and md5s (data only).

A download cut at a member boundary reads as a whole, shorter tar; its size against the
official one is the only sign, so truncation messages name it (`tar.truncation`), and
`verify --sources` compares each download with these figures.
"""
from __future__ import annotations

from dataclasses import dataclass

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
#: origin -> the tar of its images
TARS = {"train": TRAIN_TAR, "val": VAL_TAR}


@dataclass(frozen=True)
class Official:
    name: str
    size: int
    md5: str  # as image-net.org publishes it


#: The official archives, by file name; a different size usually means a truncated download.
OFFICIAL = {TRAIN_TAR: Official(TRAIN_TAR, 147_897_477_120, "1d675b47d978889d74fa0da5fadfb00e"),
            VAL_TAR: Official(VAL_TAR, 6_744_924_160, "29b22e2961454d5413ddabcf34fc5622")}
OFFICIAL_SIZES = {name: o.size for name, o in OFFICIAL.items()}
