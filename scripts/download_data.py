"""Fetches a dataset into the directory `data_pipelines.load_source` reads it from.

  python scripts/download_data.py NAME [--data_dir DIR]

tfds sets are prepared with tensorflow-datasets (DIR: the tfds data directory,
default ~/tensorflow_datasets); usps, affnist_test, frgc and gtsrb8 are downloaded
into DIR (default data/usps, data/affnist, data/frgc, data/gtsrb); tetrominoes,
multi_dsprites and clevr6 (the multi-object-datasets TFRecords) into
data/multi_object_datasets; for weizmann_horse, the image collections, DVE's CelebA
(celeba_dve) and the DLP video frames (array_file) the script prints where they come
from and the layout expected.
"""

import argparse
import os
import shutil
import sys
import urllib.request
import zipfile

_TFDS_NAMES = {"mnist": "mnist", "mnist_1k": "mnist", "mnist_color": "mnist",
               "fashion_mnist": "fashion_mnist", "svhn": "svhn_cropped"}
# Must match data_pipelines.files.DEFAULT_DIRS (checked by a test).
DEFAULT_DIRS = {"usps": os.path.join("data", "usps"),
                "affnist_test": os.path.join("data", "affnist"),
                "frgc": os.path.join("data", "frgc"),
                "gtsrb8": os.path.join("data", "gtsrb"),
                "weizmann_horse": os.path.join("data", "weizmann_horse")}
_USPS_URL = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"
_USPS_FILES = ("usps.bz2", "usps.t.bz2")
_AFFNIST_URL = "https://www.cs.toronto.edu/~tijmen/affNIST/32x/transformed/test.mat.zip"
_AFFNIST_FILE = "affNIST_test.mat"
_FRGC_URL = ("https://raw.githubusercontent.com/XifengGuo/JULE-Torch/master/datasets/FRGC/"
             "data4torch.h5")
_FRGC_FILE = "data4torch.h5"
_GTSRB_URL = ("https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
              "GTSRB_Final_Training_Images.zip")
_GTSRB_IMAGES = os.path.join("GTSRB", "Final_Training", "Images")
_HORSE_URL = "https://www.kaggle.com/datasets/ztaihong/weizmann-horse-database"
_FOLDER_NAMES = ("image_folder", "instagram", "megadepth")
# Must match data_pipelines.multi_object (checked by a test).
MULTI_OBJECT_DIR = os.path.join("data", "multi_object_datasets")
MULTI_OBJECT_FILES = {
    "tetrominoes": "tetrominoes/tetrominoes_train.tfrecords",
    "multi_dsprites": "multi_dsprites/multi_dsprites_colored_on_grayscale.tfrecords",
    "clevr6": "clevr_with_masks/clevr_with_masks_train.tfrecords",
}
_MULTI_OBJECT_URL = "https://storage.googleapis.com/multi-object-datasets/"
_PREPARED_NAMES = ("celeba_dve", "array_file", "cub_parts", "deepfashion_parts", "voc2007")
NAMES = (tuple(_TFDS_NAMES) + tuple(DEFAULT_DIRS) + tuple(MULTI_OBJECT_FILES) + _FOLDER_NAMES
         + _PREPARED_NAMES)


def _download(url: str, path: str) -> None:
  if os.path.exists(path):
    print(f"{path} exists, skipped")
    return
  print(f"downloading {url} -> {path}")
  partial = path + ".part"
  with urllib.request.urlopen(url) as response, open(partial, "wb") as f:
    shutil.copyfileobj(response, f)
  os.replace(partial, path)


def _prepare_tfds(name: str, data_dir: str | None) -> None:
  import tensorflow_datasets as tfds  # Imported here: slow, only these sets need it.

  tfds_name = _TFDS_NAMES[name]
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  print(f"preparing tfds {tfds_name!r} in {builder.data_dir_root} (for {name})")
  builder.download_and_prepare()
  print(f"done: load_source({name!r}, data_dir={builder.data_dir_root!r})")


def _fetch_usps(data_dir: str) -> None:
  os.makedirs(data_dir, exist_ok=True)
  for filename in _USPS_FILES:
    _download(_USPS_URL + filename, os.path.join(data_dir, filename))


def _fetch_affnist(data_dir: str) -> None:
  target = os.path.join(data_dir, _AFFNIST_FILE)
  print(f"affNIST test set (32x 'transformed', 320,000 40x40 digits) from {_AFFNIST_URL}; "
        f"the loader reads {target}")
  if os.path.exists(target):
    print(f"{target} exists, skipped")
    return
  os.makedirs(data_dir, exist_ok=True)
  archive = os.path.join(data_dir, "test.mat.zip")
  _download(_AFFNIST_URL, archive)
  with zipfile.ZipFile(archive) as zipped:
    members = [m for m in zipped.namelist() if m.endswith(".mat")]
    if len(members) != 1:
      raise SystemExit(f"{archive}: expected one .mat file, found {zipped.namelist()}; "
                       f"unzip it by hand to {target}")
    print(f"extracting {members[0]} -> {target}")
    with zipped.open(members[0]) as source, open(target + ".part", "wb") as f:
      shutil.copyfileobj(source, f)
  os.replace(target + ".part", target)


def _fetch_frgc(data_dir: str) -> None:
  target = os.path.join(data_dir, _FRGC_FILE)
  print(f"FRGC (2,462 32x32 colour faces of 20 subjects) as prepared by JULE-Torch "
        f"(datasets/FRGC/data4torch.h5) from {_FRGC_URL}; the loader reads {target}")
  os.makedirs(data_dir, exist_ok=True)
  _download(_FRGC_URL, target)
  with open(target, "rb") as f:
    signature = f.read(8)
  if signature != b"\x89HDF\r\n\x1a\n":
    os.remove(target)
    raise SystemExit(f"{_FRGC_URL} did not return an HDF5 file (removed it); get "
                     f"data4torch.h5 from the JULE-Torch repository by hand and place "
                     f"it at {target}")


def _fetch_gtsrb8(data_dir: str) -> None:
  target = os.path.join(data_dir, _GTSRB_IMAGES)
  print(f"GTSRB training set (39,209 traffic-sign images of 43 classes, gtsrb8 keeps 8) "
        f"from {_GTSRB_URL}; the loader reads the class folders in {target}")
  if os.path.isdir(target):
    print(f"{target} exists, skipped")
    return
  os.makedirs(data_dir, exist_ok=True)
  archive = os.path.join(data_dir, "GTSRB_Final_Training_Images.zip")
  _download(_GTSRB_URL, archive)
  # Extracted aside first, so that an interrupted extraction is not taken as done.
  staging = os.path.join(data_dir, "extract.part")
  shutil.rmtree(staging, ignore_errors=True)
  print(f"extracting {archive} -> {data_dir}")
  with zipfile.ZipFile(archive) as zipped:
    zipped.extractall(staging)
  if not os.path.isdir(os.path.join(staging, _GTSRB_IMAGES)):
    raise SystemExit(f"{archive}: no {_GTSRB_IMAGES} folder inside; unzip it by hand "
                     f"so that the class folders 00000..00042 are in {target}")
  shutil.rmtree(os.path.join(data_dir, "GTSRB"), ignore_errors=True)
  os.replace(os.path.join(staging, "GTSRB"), os.path.join(data_dir, "GTSRB"))
  shutil.rmtree(staging)


def _explain_weizmann_horse(data_dir: str) -> None:
  print("weizmann_horse: not fetched by this script (the download needs a Kaggle "
        "account).")
  print(f"Weizmann Horse (328 horse images with figure-ground masks) from {_HORSE_URL}; "
        "unzip it and rename weizmann_horse_db/horse to images and "
        "weizmann_horse_db/mask to masks.")
  print(f"Layout: {os.path.join(data_dir, 'images')}/*.{{jpg,jpeg,png}} and "
        f"{os.path.join(data_dir, 'masks')}/*.png, paired in sorted file-name order "
        "(equal counts; non-zero mask pixels are the horse).")


def _explain_image_folder(name: str, data_dir: str | None) -> None:
  print(f"{name}: image collections are not fetched by this script (their images are "
        "not redistributed with this code).")
  print("Instagram (#santaphoto): the collection the DTI-Clustering authors link from "
        "github.com/monniert/dti-clustering (README), or scrape your own hashtag.")
  print("MegaDepth (firenze): landmark images from https://www.cs.cornell.edu/projects/"
        "megadepth/ (e.g. Florence Cathedral).")
  print("Layout: <root>/<tag>/train/*.{png,jpg,jpeg,bmp,gif,webp} (only files directly "
        "in that folder), e.g. data/megadepth/firenze/train; pass the folder as "
        "--config.data.data_dir and the crop side as --config.data.image_size"
        + (f" (here: {data_dir})" if data_dir else ""))
  print("Labelled: DIR/<class>/**/*.png etc. (one subfolder per class, as torchvision's "
        "ImageFolder) gives class ids 0..C-1 in sorted name order, and the runs are scored; "
        "--config.data.channels: 0 = as the files (grey if every file is), 1 = grey, 3 = RGB.")


def _explain_prepared(name: str) -> None:
  if name == "voc2007":
    print("voc2007: not fetched by this script. Unpack VOCtrainval_06-Nov-2007.tar and "
          "VOCtest_06-Nov-2007.tar (Pascal VOC 2007, host.robots.ox.ac.uk/pascal/VOC/voc2007/) "
          "into one folder and pass its VOCdevkit/VOC2007 (JPEGImages/, Annotations/, "
          "ImageSets/Main/) as --config.data.data_dir.")
    return
  if name == "celeba_dve":
    print("celeba_dve: not fetched by this script. Download celeba.tar.gz as DVE prepares "
          "it (github.com/jamt9000/DVE, README, 'Datasets': CelebA), unpack it and pass the "
          "folder holding Img/, Anno/, Eval/ and MAFL/ as --config.data.data_dir.")
    return
  if name == "cub_parts":
    print("cub_parts: not fetched by this script. Unpack CUB_200_2011.tgz (Caltech-UCSD "
          "Birds-200-2011) into data/CUB/, then CMR's cachedir.tar.gz (linked from "
          "github.com/akanazawa/cmr, issue 3) inside data/CUB/CUB_200_2011/ (it gives "
          "cachedir/cub/data/{train,test}_cub_cleaned.mat); pass data/CUB/CUB_200_2011 as "
          "--config.data.data_dir. For NMI / ARI with background, unpack the original's "
          "cub_supervisedlabels.tar.gz (robots.ox.ac.uk/~vgg/research/unsup-parts/files/) "
          "into data/CUB/ and pass data/CUB/supervisedlabels as --config.eval.masks_dir.")
    return
  if name == "deepfashion_parts":
    print("deepfashion_parts: not fetched by this script. From DeepFashion's In-shop Clothes "
          "Retrieval Benchmark (mmlab.ie.cuhk.edu.hk/projects/DeepFashion/"
          "InShopRetrieval.html) get the 'segmentation' folder, put it in "
          "'In-shop Clothes Retrieval Benchmark/Anno/' and unzip img_highres_seg.zip inside "
          "it (the split files DeepFashion_segmentation_{train,query,gallery}.json are in "
          "that folder); pass 'In-shop Clothes Retrieval Benchmark' as "
          "--config.data.data_dir. For NMI / ARI, unpack the original's "
          "deepfashion_supervisedlabels.tar.gz (robots.ox.ac.uk/~vgg/research/unsup-parts/"
          "files/) there and pass its supervisedlabels folder as --config.eval.masks_dir.")
    return
  print("array_file: uint8 [N, S, S, 3] .npy files written from video frames by "
        "scripts/prepare_dlp_frames.py: CLEVRER (the official videos, clevrer.csail.mit.edu, "
        "frames extracted with ffmpeg) or your own Traffic-like recordings; pass the file, "
        "or the folder holding train.npy / validation.npy, as --config.data.data_dir.")


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("name", help=f"one of: {', '.join(NAMES)}")
  parser.add_argument("--data_dir", default=None,
                      help="tfds data directory or the folder the loader reads")
  args = parser.parse_args(argv)
  if args.name not in NAMES:
    raise SystemExit(f"download_data.py: unknown dataset {args.name!r}; valid names: "
                     f"{', '.join(NAMES)}")
  if args.name in _TFDS_NAMES:
    _prepare_tfds(args.name, args.data_dir)
  elif args.name in _FOLDER_NAMES:
    _explain_image_folder(args.name, args.data_dir)
  elif args.name in _PREPARED_NAMES:
    _explain_prepared(args.name)
  elif args.name in MULTI_OBJECT_FILES:
    data_dir = args.data_dir or MULTI_OBJECT_DIR
    os.makedirs(data_dir, exist_ok=True)
    object_path = MULTI_OBJECT_FILES[args.name]
    _download(_MULTI_OBJECT_URL + object_path,
              os.path.join(data_dir, os.path.basename(object_path)))
  else:
    data_dir = args.data_dir or DEFAULT_DIRS[args.name]
    {"usps": _fetch_usps, "affnist_test": _fetch_affnist, "frgc": _fetch_frgc,
     "gtsrb8": _fetch_gtsrb8,
     "weizmann_horse": _explain_weizmann_horse}[args.name](data_dir)


if __name__ == "__main__":
  main(sys.argv[1:])
