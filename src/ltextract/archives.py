"""The published archives ltextract reads: their file names and official sizes (data only).

A download cut at a member boundary reads as a whole, shorter tar; its size against the
official one is the only sign, so truncation messages name it (`tar.truncation`).
"""
from __future__ import annotations

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
#: origin -> the tar of its images
TARS = {"train": TRAIN_TAR, "val": VAL_TAR}
#: Sizes of the official archives; a different size usually means a truncated download.
OFFICIAL_SIZES = {TRAIN_TAR: 147_897_477_120, VAL_TAR: 6_744_924_160}
