"""ImageNet-100-LT (SDCLR, Jiang et al., ICML 2021): 100 ILSVRC2012 classes (CMC's ImageNet-100);
train and val from the ILSVRC2012 train images, test from its val images. Labels 0..99 follow
CMC's class order as the lists write it, not the sorted wnids."""
from __future__ import annotations

from ltextract.benchmarks import Benchmark, published

_SDCLR = (("VITA-Group/SDCLR", "34c932ec9c2169a3c615abb1a469c0c8ecadbf86", "main", "split/imagenet-100"),)

CITATION = """@inproceedings{jiang2021self,
  title={Self-Damaging Contrastive Learning},
  author={Jiang, Ziyu and Chen, Tianlong and Mortazavi, Bobak and Wang, Zhangyang},
  booktitle={International Conference on Machine Learning},
  year={2021}
}"""


IMAGENET100_LT = Benchmark(
    name="imagenet100_lt",
    title="ImageNet-100-LT",
    citation=CITATION,
    homepage="https://github.com/VITA-Group/SDCLR",
    classes_file="imagenet100_lt.txt",
    splits=(
        published("train", "train", "imageNet_100_LT_train.txt", 12_205, 478_025,
                  "0f94d6eef6935578a1e287a35d337cc0fe4c41059b023247d35a4119c93820bb", (6, 1280), _SDCLR),
        published("val", "train", "ImageNet_100_val.txt", 2_000, 78_352,
                  "e4c423bf2b93f5cf2a2de747bf83dba7763016bdac0203a619f324f890146004", (20, 20), _SDCLR),
        published("test", "val", "ImageNet_100_test.txt", 5_000, 229_500,
                  "2441627da7561b6d8e45dbcb34db8711ee678808cd88ec9d6d9b8d839a886363", (50, 50), _SDCLR),
    ),
)
