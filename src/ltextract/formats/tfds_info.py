"""The files beside TFDS's shards, exactly as tensorflow-datasets 4.9.10's `imagenet_lt` builder
writes them: dataset_info.json (`MessageToJson(..., sort_keys=True)`: indent 2, int64 values as
strings, no trailing newline, only the fields a local build sets), features.json (indent 4) and
label.labels.txt (the sorted wnids). The citation and description are the builder's, verbatim.

A benchmark TFDS has no builder for (ImageNet-100-LT, Places-LT) gets the same files under its
own name, with its own class names, citation and description (`Dataset`): TFDS reads it with
`tfds.builder_from_directory`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ltextract.benchmarks import Benchmark

NAME = "imagenet_lt"
VERSION = "1.0.0"
FOLDER = f"{NAME}/{VERSION}"
INFO, FEATURES, LABELS = "dataset_info.json", "features.json", "label.labels.txt"
FILE_FORMATS = ("tfrecord", "array_record")
HOMEPAGE = "https://github.com/zhmiao/OpenLongTailRecognition-OLTR"
MODULE = "tensorflow_datasets.datasets.imagenet_lt.imagenet_lt_dataset_builder"
TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
CITATION = (
    "\\\n@inproceedings{openlongtailrecognition,\n"
    "  title={Large-Scale Long-Tailed Recognition in an Open World},\n"
    "  author={Liu, Ziwei and Miao, Zhongqi and Zhan, Xiaohang and Wang, Jiayun and Gong, Boqing"
    " and Yu, Stella X.},\n"
    "  booktitle={IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},\n"
    "  year={2019},\n"
    "  url={https://github.com/zhmiao/OpenLongTailRecognition-OLTR}\n}")
DESCRIPTION = (
    "ImageNet-LT is a subset of original ImageNet ILSVRC 2012 dataset. The training\n"
    "set is subsampled such that the number of images per class follows a long-tailed\n"
    "distribution. The class with the maximum number of images contains 1,280\n"
    "examples, whereas the class with the minumum number of images contains only 5\n"
    "examples. The dataset also has a balanced validation set, which is also a subset\n"
    "of the ImageNet ILSVRC 2012 training set and contains 20 images per class. The\n"
    "test set of this dataset is the same as the validation set of the original\n"
    "ImageNet ILSVRC 2012 dataset.\n\n"
    "The original ImageNet ILSVRC 2012 dataset must be downloaded manually, and its\n"
    "path should be set with --manual_dir in order to generate this dataset.")
_CORE = "tensorflow_datasets.core.features."


@dataclass(frozen=True)
class Dataset:
    """What dataset_info.json says of the dataset besides its splits."""
    name: str
    citation: str
    description: str
    homepage: str
    module: str

    @property
    def folder(self) -> str:
        return f"{self.name}/{VERSION}"


IMAGENET_LT = Dataset(NAME, CITATION, DESCRIPTION, HOMEPAGE, MODULE)


def dataset(bench: "Benchmark") -> Dataset:
    """TFDS's own for ImageNet-LT; for another benchmark, its entry's."""
    if bench.name == NAME:
        return IMAGENET_LT
    lo = min(s.pin.per_class[0] for s in bench.splits if s.name == "train")
    hi = max(s.pin.per_class[1] for s in bench.splits if s.name == "train")
    description = (f"{bench.title}: a long-tailed benchmark of {len(bench.classes)} classes, {hi:,} down"
                   f" to {lo:,} train images per class, built by ltextract from its published lists"
                   f" ({', '.join(bench.split(s).pin.filename for s in bench.default_splits)}); labels"
                   " as the lists write them.")
    return Dataset(bench.name, bench.citation, description, bench.homepage, f"ltextract.benchmarks.{bench.name}")


def shard_name(split: str, file_format: str, index: int, count: int, name: str = NAME) -> str:
    """`imagenet_lt-train.tfrecord-00000-of-00128`: numbers padded to 5 digits or more."""
    width = max(len(str(count)), 5)
    return f"{name}-{split}.{file_format}-{index:0{width}d}-of-{count:0{width}d}"


def render_info(file_format: str, splits: list[tuple[str, int, list[int]]], download_size: int,
                ds: Dataset = IMAGENET_LT) -> str:
    """dataset_info.json for the finished `splits`: (name, numBytes, shardLengths) each, in
    TFDS's split order; `download_size`: the bytes of the two lists the builder downloads."""
    info = {
        "citation": ds.citation,
        "description": ds.description,
        "downloadSize": str(download_size),
        "fileFormat": file_format,
        "location": {"urls": [ds.homepage]},
        "moduleName": ds.module,
        "name": ds.name,
        "releaseNotes": {VERSION: "Initial release."},
        "splits": [{"filepathTemplate": TEMPLATE, "name": name, "numBytes": str(num_bytes),
                    "shardLengths": [str(n) for n in lengths]} for name, num_bytes, lengths in splits],
        "supervisedKeys": {"tuple": {"items": [{"featureKey": "image"}, {"featureKey": "label"}]}},
        "version": VERSION,
    }
    return json.dumps(info, indent=2, sort_keys=True)


def render_features(classes: int) -> str:
    """features.json: FeaturesDict {file_name: Text, image: Image (uint8, -1 -1 3), label:
    ClassLabel}."""
    features = {
        "file_name": {"pythonClassName": _CORE + "text_feature.Text", "text": {}},
        "image": {"image": {"dtype": "uint8", "shape": {"dimensions": ["-1", "-1", "3"]}},
                  "pythonClassName": _CORE + "image_feature.Image"},
        "label": {"classLabel": {"numClasses": str(classes)},
                  "pythonClassName": _CORE + "class_label_feature.ClassLabel"},
    }
    return json.dumps({"featuresDict": {"features": features},
                       "pythonClassName": _CORE + "features_dict.FeaturesDict"}, indent=4, sort_keys=True)


def render_labels(names: tuple[str, ...]) -> str:
    return "".join(f"{n}\n" for n in names)
