"""ImageNet-LT (Liu et al., CVPR 2019): train and val drawn from the ILSVRC2012 train images,
test the whole ILSVRC2012 val set; labels are the wnid's index in the sorted 1000 wnids. With
SADE's test-agnostic test sets (Zhang et al., NeurIPS 2022), subsets of test, built only when
asked for with --split."""
from __future__ import annotations

from ltextract.benchmarks import Benchmark, Pin, SplitSpec, Variant, github, published

_RAW = "https://raw.githubusercontent.com/facebookresearch/classifier-balancing/main/data/ImageNet_LT"
_DRIVE = "https://drive.google.com/uc?export=download&id="
_SADE = ("Vanint/SADE-AgnosticLT", "0ef61caa688b8e8fa1cefce21247327df398cd2e", "main",
         "data_txt/ImageNet_LT")
_FLAT_TEST = ("hyperconnect/LADE", "150181e447e714475e433e532b09990e920e1a1b", "master",
              "data/ImageNet_LT/ImageNet_LT_test.txt")

CITATION = """@inproceedings{openlongtailrecognition,
  title={Large-Scale Long-Tailed Recognition in an Open World},
  author={Liu, Ziwei and Miao, Zhongqi and Zhan, Xiaohang and Wang, Jiayun and Gong, Boqing and Yu, Stella X.},
  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2019}
}"""
SADE_CITATION = """@inproceedings{zhang2022Self,
  title={Self-Supervised Aggregation of Diverse Experts for Test-Agnostic Long-Tailed Recognition},
  author={Zhang, Yifan and Hooi, Bryan and Hong, Lanqing and Feng, Jiashi},
  booktitle={Advances in Neural Information Processing Systems},
  year={2022}
}"""

#: SADE's test distributions: (name, lines, bytes, sha256, (min, max) per class). Each is a
#: subset of the test list (uniform: the same 50,000 lines, shuffled within each class).
_SADE_SPLITS = (
    ("forward50", 12_058, 565_168, "dd0e2dbdc2ccabac572258817e353cbaf2e5b1cc208a0ebd68c684fcff7871be", (1, 50)),
    ("forward25", 14_437, 676_716, "7f243acc3f1ad813eb7a37bc65b976b2c5a1884299cb56db233ebf0d01dc8cf2", (2, 50)),
    ("forward10", 19_059, 893_453, "55fdd21a967f519418774137fad7ff5a83bc365b227601f9df4eae92a1648abb", (5, 50)),
    ("forward5", 24_365, 1_142_279, "49bcf866a40b5a0af7e1913da73b0e0188d0609c3d6c8fce14291571a78e86e3", (10, 50)),
    ("forward2", 35_574, 1_667_944, "d8e26572b45ccc3046f8bc408c40f693dae8ce1835977a20439060a18a45161e", (25, 50)),
    ("uniform", 50_000, 2_344_500, "369e85cd534de83f43965c54713893308ae6eacffb127b1f2a5619e0d11d3c74", (50, 50)),
    ("backward2", 35_574, 1_668_185, "1a154be6d2f6d2f1c9765abda78d689a03288ec41b6111ac4286e835c9927614", (25, 50)),
    ("backward5", 24_365, 1_142_658, "7b021b4a05e211d12fcd89757deb4ad6f25906c73a40e80144ac081e4e7b0867", (10, 50)),
    ("backward10", 19_059, 893_879, "12e707170e464c1477abbbda04037490c89e4ae02f96645b64768a574b1c68fd", (5, 50)),
    ("backward25", 14_437, 677_157, "c3f94a9824ec0f416c2dc432fe62826ba29e6015e6ea868cdae4acf566f9699b", (2, 50)),
    ("backward50", 12_058, 565_604, "5b41a38df0ba93c6763463f10cccc53dca6fbfcfc8a953be2160a971f368cb84", (1, 50)),
)


def _sade(name: str, lines: int, size: int, sha256: str, per_class: tuple[int, int]) -> SplitSpec:
    return published(name, "val", f"ImageNet_LT_{name}.txt", lines, size, sha256, per_class, (_SADE,),
                     default=False, subset_of="test", citation=SADE_CITATION)


IMAGENET_LT = Benchmark(
    name="imagenet_lt",
    title="ImageNet-LT",
    citation=CITATION,
    homepage="https://github.com/zhmiao/OpenLongTailRecognition-OLTR",
    class_set="ILSVRC2012",
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
            "d1590191cf8a71fada7b1aaedaa2d139a2aea93ff2f1b755319d0bd8dbaa55d5", (50, 50),
            # LADE's and KaihuaTang's copy: the same lines with flat val paths (no wnid folder)
            (Variant("flat val paths", 1_844_500,
                     "358650a8b13930b491559b09a48d05dd3c0d76860dc011995cd1896c1a07fb6d",
                     github(*_FLAT_TEST)),)),
            (f"{_RAW}/ImageNet_LT_test.txt",)),
        *(_sade(*split) for split in _SADE_SPLITS),
    ),
)
