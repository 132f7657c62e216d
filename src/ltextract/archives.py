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

#: Places365 (Places-LT's images): the "easy format" tar holds train and val in class folders;
#: the 256x256 and the high-resolution pairs hold train in letter/category[/sub] folders and
#: val flat (the lists give each val image's class).
PLACES_EASY_TAR = "places365standard_easyformat.tar"
PLACES_TARS = {"train": (PLACES_EASY_TAR, "train_256_places365standard.tar",
                         "train_large_places365standard.tar"),
               "val": (PLACES_EASY_TAR, "val_256.tar", "val_large.tar")}
#: the archives each benchmark's image set comes in, per origin (`Benchmark.images`)
ARCHIVES = {"ilsvrc2012": {"train": (TRAIN_TAR,), "val": (VAL_TAR,)}, "places365": PLACES_TARS}
OFFICIAL_SIZES.update({PLACES_EASY_TAR: 26_686_689_280, "train_256_places365standard.tar": 26_103_685_120,
                       "val_256.tar": 525_158_400, "train_large_places365standard.tar": 112_598_435_840,
                       "val_large.tar": 2_270_320_640})
