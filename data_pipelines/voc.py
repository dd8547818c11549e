"""Pascal VOC 2007 read from its VOCdevkit folder, for DeepCluster's VOC classification.

Layout (``root`` is ``VOCdevkit/VOC2007``, or a folder above it)::

  JPEGImages/<id>.jpg
  ImageSets/Main/<class>_<split>.txt   one "<id> <label>" line per image of the split
  ImageSets/Main/<split>.txt           the split's ids (optional, cross-checked)
  Annotations/<id>.xml                 objects with <name> and <difficult> (optional)

Per-image labels come, as in the original ``eval_voc_classif.py``, from the class files
(classes in sorted file order; VOC's labels: 1 present, -1 absent, 0 present only as
"difficult" objects, ignored for that class). An image missing from a class file is
ignored for that class too (the original's default). ``labels_from_annotations``
derives the same labels from the XML files, to cross-check a folder.

VOC images differ in size, so they are not held in memory: batches are decoded from the
JPEGs by a thread pool, with torchvision's PIL transforms (RandomResizedCrop's box
rule, Resize, TenCrop, bilinear resampling) and a NumPy generator seeded per image, so
that a batch is a pure function of (seed, epoch, position) and a resumed run sees the
same crops.
"""

import collections
import concurrent.futures
import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from xml.etree import ElementTree

import numpy as np
from PIL import Image

from data_pipelines import files

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
           "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
           "sheep", "sofa", "train", "tvmonitor")
SPLITS = ("train", "val", "trainval", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class VocSet:
  """One split of a VOC folder: image ids, JPEG paths and VOC labels.

  Attributes:
    name: "voc2007".
    split: train, val, trainval or test.
    ids: the image ids, in the first class file's order.
    paths: the JPEG paths, [N] strings.
    labels: int8 [N, C]: 1 present, -1 absent, 0 difficult only (ignored).
    classes: the C class names, sorted.
    side: side of the square crops the network sees (``image_shape``).
  """

  name: str
  split: str
  ids: tuple[str, ...]
  paths: np.ndarray
  labels: np.ndarray
  classes: tuple[str, ...]
  side: int = 224
  masks = None

  @property
  def num_examples(self) -> int:
    return len(self.ids)

  @property
  def num_classes(self) -> int:
    return len(self.classes)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return (self.side, self.side, 3)


def voc_root(root: str) -> str:
  """The VOC2007 folder: ``root``/VOCdevkit/VOC2007, ``root``/VOC2007 or ``root``."""
  if not root:
    raise ValueError("config.data.data_dir is empty: give the VOCdevkit/VOC2007 folder")
  candidates = (os.path.join(root, "VOCdevkit", "VOC2007"), os.path.join(root, "VOC2007"))
  folder = next((path for path in candidates if os.path.isdir(path)), root)
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"voc2007: {folder} not found (the VOCdevkit/VOC2007 folder)")
  for sub in ("JPEGImages", os.path.join("ImageSets", "Main")):
    if not os.path.isdir(os.path.join(folder, sub)):
      raise FileNotFoundError(f"voc2007: {os.path.join(folder, sub)} not found")
  return folder


def _read_label_file(path: str) -> list[tuple[str, int]]:
  """(id, label) of each line of a ``<class>_<split>.txt`` file."""
  rows = []
  with open(path) as f:
    for number, line in enumerate(f, start=1):
      parts = line.split()
      if not parts:
        continue
      if len(parts) != 2 or parts[1] not in ("1", "-1", "0"):
        raise ValueError(f"voc2007: {path} line {number}: expected '<id> <1|-1|0>', "
                         f"got {line.strip()!r}")
      rows.append((parts[0], int(parts[1])))
  return rows


def read(root: str, split: str, num_classes: int | None = None, side: int = 224) -> VocSet:
  """The ``split`` of the VOC folder ``root`` with its per-image class labels.

  ``num_classes``: the number of ``<class>_<split>.txt`` files required (20 for VOC, as
  the original asserts); None accepts any number. FileNotFoundError names a missing
  folder or file; ValueError a malformed line or ids that disagree with ``<split>.txt``.
  """
  if split not in SPLITS:
    raise ValueError(f"voc2007: split {split!r} is not one of {SPLITS}")
  folder = voc_root(root)
  main = os.path.join(folder, "ImageSets", "Main")
  suffix = f"_{split}.txt"
  class_files = sorted(name for name in os.listdir(main) if name.endswith(suffix))
  if not class_files:
    raise FileNotFoundError(f"voc2007: no <class>{suffix} files in {main}")
  if num_classes is not None and len(class_files) != num_classes:
    raise ValueError(f"voc2007: {main} holds {len(class_files)} <class>{suffix} files, "
                     f"config.voc.num_classes={num_classes}")
  classes = tuple(name[:-len(suffix)] for name in class_files)
  rows: dict[str, np.ndarray] = {}
  for k, name in enumerate(class_files):
    for image_id, label in _read_label_file(os.path.join(main, name)):
      rows.setdefault(image_id, np.zeros(len(classes), np.int8))[k] = label
  ids = tuple(rows)
  listed = os.path.join(main, f"{split}.txt")
  if os.path.isfile(listed):
    with open(listed) as f:
      expected = {line.split()[0] for line in f if line.strip()}
    if expected != set(ids):
      extra = min(set(ids) ^ expected)
      raise ValueError(f"voc2007: {listed} and the <class>{suffix} files list different "
                       f"images (e.g. {extra})")
  paths = np.asarray([os.path.join(folder, "JPEGImages", f"{i}.jpg") for i in ids])
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"voc2007: {path} not found")
  return VocSet("voc2007", split, ids, paths, np.stack([rows[i] for i in ids]), classes,
                side)


def labels_from_annotations(root: str, ids: tuple[str, ...],
                            classes: tuple[str, ...]) -> np.ndarray:
  """int8 [N, C] VOC labels from ``Annotations/<id>.xml``: 1 where the image has a
  non-difficult object of the class, 0 where all its objects of the class are difficult,
  -1 where it has none (how the devkit writes the class files)."""
  folder = voc_root(root)
  labels = np.full((len(ids), len(classes)), -1, np.int8)
  column = {name: k for k, name in enumerate(classes)}
  for row, image_id in enumerate(ids):
    path = os.path.join(folder, "Annotations", f"{image_id}.xml")
    if not os.path.isfile(path):
      raise FileNotFoundError(f"voc2007: {path} not found")
    for obj in ElementTree.parse(path).getroot().iter("object"):
      name = obj.findtext("name", "").strip()
      if name not in column:
        continue
      difficult = obj.findtext("difficult", "0").strip() == "1"
      k = column[name]
      labels[row, k] = max(labels[row, k], 0 if difficult else 1)
  return labels


def read_images(root: str, split: str, image_size: int) -> np.ndarray:
  """uint8 [N, S, S, 3]: the split's images as Resize(S) + CenterCrop(S), for methods that
  hold data in memory (unlabelled there: the labels are multi-label, see `read`)."""
  voc = read(root, split)
  images = np.empty((voc.num_examples, image_size, image_size, 3), np.uint8)
  for i, path in enumerate(voc.paths):
    images[i] = files.resize_and_center_crop(load_rgb(path), image_size)
  return images


def load_rgb(path: str) -> Image.Image:
  """The image at ``path`` as RGB; unreadable -> one-line ValueError naming it."""
  try:
    with Image.open(path) as image:
      return image.convert("RGB")
  except (OSError, SyntaxError, ValueError) as error:
    raise ValueError(f"voc2007: cannot read {path} ({type(error).__name__})") from error


def crop_box(width: int, height: int, scale: tuple[float, float],
             ratio: tuple[float, float], rng: np.random.Generator) -> tuple[int, int, int, int]:
  """torchvision RandomResizedCrop's box (left, top, right, bottom): 10 tries of area
  fraction U(scale) and aspect log-U(ratio) that fits, else the centre crop clamped to
  ``ratio``."""
  for _ in range(10):
    target = width * height * rng.uniform(*scale)
    aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    w = round(math.sqrt(target * aspect))
    h = round(math.sqrt(target / aspect))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return left, top, left + w, top + h
  if width / height < ratio[0]:
    w, h = width, round(width / ratio[0])
  elif width / height > ratio[1]:
    w, h = round(height * ratio[1]), height
  else:
    w, h = width, height
  top, left = (height - h) // 2, (width - w) // 2
  return left, top, left + w, top + h


def random_resized_crop(image: Image.Image, size: int, scale: tuple[float, float],
                        ratio: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
  """torchvision RandomResizedCrop: the `crop_box` resized to size x size (PIL bilinear).
  uint8 [size, size, 3]."""
  box = crop_box(*image.size, scale, ratio, rng)
  return np.asarray(image.crop(box).resize((size, size), Image.Resampling.BILINEAR))


def ten_crops(image: Image.Image, resize: int, size: int) -> np.ndarray:
  """torchvision Resize(resize) + TenCrop(size): uint8 [10, size, size, 3], the four
  corners and the centre of the resized image, then the same of its mirror."""
  width, height = image.size
  if width <= height:
    new = (resize, int(resize * height / width))
  else:
    new = (int(resize * width / height), resize)
  pixels = np.asarray(image.resize(new, Image.Resampling.BILINEAR) if new != image.size
                      else image)
  h, w = pixels.shape[:2]
  if h < size or w < size:
    raise ValueError(f"voc2007: resized image {w}x{h} is smaller than the {size} crop")
  top, left = round((h - size) / 2.0), round((w - size) / 2.0)
  crops = []
  for view in (pixels, pixels[:, ::-1]):
    for y, x in ((0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)):
      crops.append(view[y:y + size, x:x + size])
  return np.stack(crops)


def training_crop(path: str, size: int, scale: tuple[float, float],
                  rng: np.random.Generator) -> np.ndarray:
  """The original's training view: a horizontal flip with probability 1/2, then
  RandomResizedCrop(size, scale, ratio (1, 1))."""
  image = load_rgb(path)
  if rng.random() < 0.5:
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return random_resized_crop(image, size, scale, (1.0, 1.0), rng)


def random_views(path: str, size: int, scale: tuple[float, float], count: int,
                 rng: np.random.Generator) -> np.ndarray:
  """``count`` independent training views of one image: uint8 [count, size, size, 3]
  (the original's default test: 10 random crops)."""
  image = load_rgb(path)
  views = []
  for _ in range(count):
    flipped = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image
    views.append(random_resized_crop(flipped, size, scale, (1.0, 1.0), rng))
  return np.stack(views)


def _prefetched(batches: Iterator[list[Callable[[], np.ndarray]]], workers: int,
                ahead: int = 2) -> Iterator[list[np.ndarray]]:
  """The results of each batch's jobs, in order, computed by ``workers`` threads with
  up to ``ahead`` batches in flight."""
  pool = concurrent.futures.ThreadPoolExecutor(max(1, workers))
  pending = collections.deque()
  try:
    for jobs in batches:
      pending.append([pool.submit(job) for job in jobs])
      if len(pending) > ahead:
        yield [future.result() for future in pending.popleft()]
    while pending:
      yield [future.result() for future in pending.popleft()]
  finally:
    pool.shutdown(wait=True, cancel_futures=True)


def training_batches(voc: VocSet, order: np.ndarray, *, global_batch_size: int,
                     size: int, scale: tuple[float, float], seed: int, epoch: int,
                     start_batch: int = 0, workers: int = 8, process_index: int = 0,
                     process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """This process's rows of len(order) // global_batch_size training batches, from
  ``start_batch`` on: image uint8 [local, size, size, 3] (flip + RandomResizedCrop) and
  label int8 [local, C]. Image j of the epoch is cropped with the generator
  (seed, epoch, j)."""
  local = global_batch_size // process_count
  steps = len(order) // global_batch_size
  positions = [np.arange(step * global_batch_size + process_index * local,
                         step * global_batch_size + (process_index + 1) * local)
               for step in range(start_batch, steps)]

  def jobs():
    for rows in positions:
      yield [lambda j=int(j): training_crop(voc.paths[order[j]], size, scale,
                                            np.random.default_rng([seed, epoch, j]))
             for j in rows]

  for rows, crops in zip(positions, _prefetched(jobs(), workers)):
    yield {"image": np.stack(crops), "label": voc.labels[order[rows]]}


def eval_batches(voc: VocSet, *, global_batch_size: int, size: int, resize: int,
                 random_crops: bool, scale: tuple[float, float], seed: int, views: int = 10,
                 workers: int = 8, process_index: int = 0, process_count: int = 1
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Every image once in order, this process's rows of each global batch: image uint8
  [local, V, size, size, 3] (V = 10 ten crops of Resize(resize), or ``views`` random
  training views seeded by (seed, image index)), index int64 and _mask (False on the
  zero rows padding the last batch)."""
  local = global_batch_size // process_count
  count = -(-voc.num_examples // global_batch_size)
  v = views if random_crops else 10
  blank = np.zeros((v, size, size, 3), np.uint8)

  def view(i):
    if i >= voc.num_examples:
      return blank
    if random_crops:
      return random_views(voc.paths[i], size, scale, views, np.random.default_rng([seed, i]))
    return ten_crops(load_rgb(voc.paths[i]), resize, size)

  positions = [np.arange(b * global_batch_size + process_index * local,
                         b * global_batch_size + (process_index + 1) * local)
               for b in range(count)]
  jobs = ([lambda i=int(i): view(i) for i in rows] for rows in positions)
  for rows, crops in zip(positions, _prefetched(jobs, workers)):
    valid = rows < voc.num_examples
    yield {"image": np.stack(crops), "index": np.where(valid, rows, 0), "_mask": valid}
