"""ImageNet-LT (Liu et al., CVPR 2019): train and val drawn from the ILSVRC2012 train images,
test the whole ILSVRC2012 val set; labels are the wnid's index in the sorted 1000 wnids."""
from __future__ import annotations

from ltextract.benchmarks import Benchmark, Pin, SplitSpec

_RAW = "https://raw.githubusercontent.com/facebookresearch/classifier-balancing/main/data/ImageNet_LT"
_DRIVE = "https://drive.google.com/uc?export=download&id="

IMAGENET_LT = Benchmark(
    name="imagenet_lt",
    title="ImageNet-LT",
    citation="Liu et al., Large-Scale Long-Tailed Recognition in an Open World, CVPR 2019",
    splits=(
        SplitSpec("train", "train", Pin(
            "train", "ImageNet_LT_train.txt", 115_846, 4_658_674,
            "efdbdad4f050237c310b2f354cf95a8b1d7c8d57a63c4ea4bb6bf2bcb012f37f", (5, 1280)),
            (f"{_RAW}/ImageNet_LT_train.txt", _DRIVE + "1Sl1cwy6Dei1I1BMS1YKjI35fkaR1UA_7")),
        SplitSpec("val", "train", Pin(
            "val", "ImageNet_LT_val.txt", 20_000, 804_172,
            "9af7ba688acf9532ff5845a8fb14a1e97fdc4c51ac48bc72c08ea9c3f7ff142e", (20, 20)),
            (f"{_RAW}/ImageNet_LT_val.txt", _DRIVE + "1AjYczW4khrQrwPIygXUkHF-Qv4QGEsCF")),
        SplitSpec("test", "val", Pin(
            "test", "ImageNet_LT_test.txt", 50_000, 2_344_500,
            "d1590191cf8a71fada7b1aaedaa2d139a2aea93ff2f1b755319d0bd8dbaa55d5", (50, 50)),
            (f"{_RAW}/ImageNet_LT_test.txt",)),
    ),
)
