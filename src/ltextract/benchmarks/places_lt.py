"""Places-LT (Liu et al., CVPR 2019): train and val drawn from the Places365-Standard train
images, test the whole Places365 val set (100 per class). Class folders are Places365 categories
with sub-categories joined by '-' (`apartment_building-outdoor`); labels are as the lists write
them, which for five classes differ from `categories_places365.txt` and from sorted folders
(desert_road 116, desert-sand 117, desert-vegetation 118; field_road 141, field-wild 142)."""
from __future__ import annotations

from ltextract.benchmarks import Benchmark, SplitSpec, published
from ltextract.benchmarks.imagenet_lt import CITATION

_FOLDERS = (("facebookresearch/classifier-balancing", "22370c64141cc662f62ead89447c838c4a7977b5",
             "main", "data/Places_LT"),
            ("jiawei-ren/BalancedMetaSoftmax-Classification", "4c2a121f2467132e05ec82c80c757e104f6decd8",
             "main", "data/Places_LT"),
            ("KaihuaTang/Long-Tailed-Recognition.pytorch", "54c07cfc54f891153c794ebb27856c8cbba0393e",
             "master", "classification/data/Places_LT"))

PLACES_CITATION = """@article{zhou2017places,
  title={Places: A 10 million Image Database for Scene Recognition},
  author={Zhou, Bolei and Lapedriza, Agata and Khosla, Aditya and Oliva, Aude and Torralba, Antonio},
  journal={IEEE Transactions on Pattern Analysis and Machine Intelligence},
  year={2017},
  publisher={IEEE}
}"""


def _split(name: str, origin: str, lines: int, size: int, sha256: str,
           per_class: tuple[int, int]) -> SplitSpec:
    return published(name, origin, f"Places_LT_{name}.txt", lines, size, sha256, per_class, _FOLDERS)


PLACES_LT = Benchmark(
    name="places_lt",
    title="Places-LT",
    citation=f"{CITATION}\n{PLACES_CITATION}",
    homepage="https://github.com/zhmiao/OpenLongTailRecognition-OLTR",
    images="places365",
    classes_file="places_lt.txt",
    class_pattern=r"[a-z_]+(?:-[a-z_]+)?",
    class_noun="class",
    class_hint="a Places365 category, '-' before a sub-category",
    unique_file_names=False,
    splits=(
        _split("train", "train", 62_500, 2_092_674,
               "726c4871dcbf07ce2f857703bfe32e9a83ffbf52d704239f6d95c4f4f4c247f7", (5, 4980)),
        _split("val", "train", 7_300, 253_480,
               "719e3cf3766c09134ea28f56f1036c78def511ac1ed2c2532a6beef78f2439ba", (20, 20)),
        _split("test", "val", 36_500, 1_705_400,
               "44eee8441c8098c59195465abede425721bc35525d75209f9433b161a6eb37bc", (100, 100)),
    ),
)
