"""Readers of the Oxford5k and Paris6k instance-retrieval benchmarks, in their official files.

A dataset folder holds the images (``jpg/``, flat, ``<name>.jpg``) and the ground truth
(``lab/``, the official ``gt_files``): per query ``<query>_query.txt`` with one line
``oxc1_<image> x1 y1 x2 y2`` (Paris: ``<image> x1 y1 x2 y2``, no prefix), and
``<query>_good.txt``, ``<query>_ok.txt``, ``<query>_junk.txt`` listing image names.
As DeepCluster's ``eval_retrieval.py``: the database is every image of the folder in
sorted order but the 20 corrupted Paris images, the queries are the ground truth's
``*_query.txt`` files in sorted order, positives are good + ok, and a query image is
read from the database, resized by the ratio that makes the whole image's longer side
``max_side``, then cropped to its box (so the box is not resized once more).
Imports neither jax nor dti_jax.
"""

import dataclasses
import os

import numpy as np
from PIL import Image

# Paris6k images that cannot be decoded; the original (and common practice) drops them.
PARIS_CORRUPTED = frozenset((
    "paris_louvre_000136", "paris_louvre_000146", "paris_moulinrouge_000422",
    "paris_museedorsay_001059", "paris_notredame_000188", "paris_pantheon_000284",
    "paris_pantheon_000960", "paris_pantheon_000974", "paris_pompidou_000195",
    "paris_pompidou_000196", "paris_pompidou_000201", "paris_pompidou_000467",
    "paris_pompidou_000640", "paris_sacrecoeur_000299", "paris_sacrecoeur_000330",
    "paris_sacrecoeur_000353", "paris_triomphe_000662", "paris_triomphe_000833",
    "paris_triomphe_000863", "paris_triomphe_000867"))
DATASETS = ("oxford5k", "paris6k")


@dataclasses.dataclass(frozen=True, eq=False)
class RetrievalDataset:
  """One benchmark: database images, queries, their boxes and ground truth.

  Attributes:
    name: "oxford5k" or "paris6k" (or the folder's name for another dataset in this layout).
    image_dir: the folder of ``<name>.jpg`` images.
    image_names: database image names (no extension), sorted; the ranking's ids.
    query_names: query names (``all_souls_1`` ...), sorted as the ground-truth files.
    query_images: the database name of each query's image.
    query_boxes: float32 [Q, 4], (x1, y1, x2, y2) in the original image's pixels.
    positives: per query, the good + ok image names.
    junk: per query, the junk image names.
  """

  name: str
  image_dir: str
  image_names: tuple[str, ...]
  query_names: tuple[str, ...]
  query_images: tuple[str, ...]
  query_boxes: np.ndarray
  positives: tuple[frozenset[str], ...]
  junk: tuple[frozenset[str], ...]

  @property
  def num_images(self) -> int:
    return len(self.image_names)

  def image_path(self, name: str) -> str:
    return os.path.join(self.image_dir, name + ".jpg")


def _read_names(path: str) -> frozenset[str]:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} does not exist (every query needs its _good.txt, "
                            "_ok.txt and _junk.txt)")
  with open(path) as f:
    return frozenset(line.strip() for line in f if line.strip())


def _read_query(path: str) -> tuple[str, np.ndarray]:
  """(image name, float32 [4] box) of a ``<query>_query.txt`` file."""
  with open(path) as f:
    fields = f.readline().split()
  if len(fields) != 5:
    raise ValueError(f"{path}: expected '<image> x1 y1 x2 y2', got {' '.join(fields)!r}")
  image = fields[0].removeprefix("oxc1_")
  try:
    box = np.array([float(v) for v in fields[1:]], np.float32)
  except ValueError:
    raise ValueError(f"{path}: the box {' '.join(fields[1:])!r} is not 4 numbers") from None
  return image, box


def load(root: str, name: str = "", image_dir: str = "jpg",
         gt_dir: str = "lab") -> RetrievalDataset:
  """The dataset in ``root`` (``root/image_dir`` images, ``root/gt_dir`` ground truth).

  Raises FileNotFoundError naming a missing folder or file, ValueError for a malformed
  query file or a query image missing from the image folder.
  """
  images, labels = os.path.join(root, image_dir), os.path.join(root, gt_dir)
  for folder, what in ((root, "the dataset folder"), (images, "the image folder"),
                       (labels, "the ground-truth folder")):
    if not os.path.isdir(folder):
      raise FileNotFoundError(f"{folder} does not exist ({what})")
  image_names = tuple(sorted(
      os.path.splitext(f)[0] for f in os.listdir(images)
      if f.lower().endswith(".jpg") and os.path.splitext(f)[0] not in PARIS_CORRUPTED))
  if not image_names:
    raise FileNotFoundError(f"{images} holds no .jpg image")
  query_files = sorted(f for f in os.listdir(labels) if f.endswith("_query.txt"))
  if not query_files:
    raise FileNotFoundError(f"{labels} holds no <query>_query.txt file")
  known = set(image_names)
  query_names, query_images, boxes, positives, junk = [], [], [], [], []
  for file_name in query_files:
    query = file_name[:-len("_query.txt")]
    image, box = _read_query(os.path.join(labels, file_name))
    if image not in known:
      raise ValueError(f"{os.path.join(labels, file_name)} names {image}, which is not in "
                       f"{images}")
    good, ok, bad = (_read_names(os.path.join(labels, f"{query}_{kind}.txt"))
                     for kind in ("good", "ok", "junk"))
    query_names.append(query)
    query_images.append(image)
    boxes.append(box)
    positives.append(good | ok)
    junk.append(bad)
  return RetrievalDataset(name=name or os.path.basename(os.path.normpath(root)),
                          image_dir=images, image_names=image_names,
                          query_names=tuple(query_names), query_images=tuple(query_images),
                          query_boxes=np.stack(boxes), positives=tuple(positives),
                          junk=tuple(junk))


def _geometry(size_hw: np.ndarray, max_side: int, box: np.ndarray | None):
  """(resized height, width) and the (y1, y2, x1, x2) crop of ``read_image``."""
  if max_side <= 0:
    raise ValueError(f"max_side={max_side} must be positive")
  ratio = float(max_side) / np.max(size_hw)
  height, width = (int(v) for v in np.round(size_hw * ratio).astype(np.int32))
  if box is None:
    return (height, width), (0, height, 0, width)
  x1, y1, x2, y2 = (int(v) for v in np.round(np.asarray(box, np.float32) * np.float32(ratio)))
  y1, y2, x1, x2 = (min(max(v, 0), limit) for v, limit in
                    ((y1, height), (y2, height), (x1, width), (x2, width)))
  return (height, width), (y1, y2, x1, x2)


def _open(path: str) -> Image.Image:
  try:
    return Image.open(path)
  except FileNotFoundError:
    raise FileNotFoundError(f"{path} does not exist") from None
  except OSError as error:
    raise ValueError(f"{path} is not a readable image ({error})") from None


def output_shape(path: str, max_side: int, box: np.ndarray | None = None) -> tuple[int, int]:
  """(height, width) of ``read_image(path, max_side, box)``, from the file's header only."""
  with _open(path) as image:
    size_hw = np.array((image.size[1], image.size[0]))
  _, (y1, y2, x1, x2) = _geometry(size_hw, max_side, box)
  return y2 - y1, x2 - x1


def read_image(path: str, max_side: int, box: np.ndarray | None = None) -> np.ndarray:
  """uint8 [H, W, 3]: the image resized (PIL bilinear) so that its longer side is
  ``max_side`` (sizes rounded half to even, as numpy), then cropped to ``box`` (x1, y1,
  x2, y2 in the original image's pixels) scaled by the same ratio and rounded."""
  with _open(path) as image:
    image = image.convert("RGB")
  size_hw = np.array((image.size[1], image.size[0]))
  (height, width), (y1, y2, x1, x2) = _geometry(size_hw, max_side, box)
  pixels = np.asarray(image.resize((width, height), Image.BILINEAR))[y1:y2, x1:x2]
  if pixels.size == 0:
    raise ValueError(f"{path}: the box {list(np.asarray(box))} is empty at max side {max_side}")
  return pixels
