"""Run TensorFlow Datasets' own `imagenet_lt` builder on a manual dir, offline: the reference that
`ltextract build --format tfds` is compared with (tests) and timed against (bench).

    python bench/tfds_builder.py --manual-dir M --data-dir D [--file-format tfrecord|array_record]

M holds ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar and the lists ImageNet_LT_train.txt and
ImageNet_LT_val.txt (TFDS reads no test list: its test split is every image of the val tar). TFDS
looks in the manual dir for the lists under the names of its checksums file before downloading;
synthetic lists differ from the pinned ones, so the builder's expected checksums are pinned to
them (`Builder.url_infos`), and any download attempt fails. Nothing else is changed: TFDS labels
the test split by position, from its bundled ILSVRC2012 validation labels. Prints a JSON line with
the seconds `download_and_prepare` took; TFDS's own progress goes to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manual-dir", required=True, type=Path)
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--file-format", default="tfrecord", choices=["tfrecord", "array_record"])
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.monotonic()
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import checksums
    from tensorflow_datasets.datasets.imagenet_lt import imagenet_lt_dataset_builder as lt

    manual = args.manual_dir.resolve()
    lt.Builder.url_infos = {url: checksums.compute_url_info(manual / name) for url, name in
                            ((lt._TRAIN_SUBSET, "ImageNet_LT_train.txt"), (lt._VAL_SUBSET, "ImageNet_LT_val.txt"))}

    def offline(self, resource):
        raise RuntimeError(f"offline: TFDS tried to download {resource}")
    tfds.download.DownloadManager._download = offline
    builder = tfds.builder("imagenet_lt", data_dir=os.fspath(args.data_dir), file_format=args.file_format)
    imported = time.monotonic()
    with tempfile.TemporaryDirectory() as downloads, contextlib.redirect_stdout(sys.stderr):
        config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual), try_download_gcs=False)
        builder.download_and_prepare(download_dir=downloads, download_config=config)
    done = time.monotonic()
    print(json.dumps({"data_dir": builder.data_dir, "import_seconds": round(imported - started, 3),
                      "prepare_seconds": round(done - imported, 3)}))


if __name__ == "__main__":
    main()
