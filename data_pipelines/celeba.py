"""CelebA as prepared by DVE (Thewlis et al.), read as DLP reads it (spec 5.2).

DVE's `celeba.tar.gz` unpacks to the layout read here: Img/img_align_celeba_hq/
(aligned 178 x 218 faces), Anno/list_landmarks_align_celeba.txt (5 landmarks per image,
(x, y) pixels), Eval/list_eval_partition.txt (0 train, 1 val, 2 test) and
MAFL/training.txt, MAFL/testing.txt (19,000 and 1,000 image names). Splits:

- "train": the official train partition minus every MAFL image (DLP's
  `CelebAPrunedAligned_MAFLVal`), images only, kept at the resize side with their
  border: the TPS pairs warp the whole resized image and the train step crops.
- "mafl_train", "mafl_test": the MAFL images (`MAFLAligned`) with their landmarks,
  cropped to the final side.

Every image: PIL crop of rows 30..207, columns 0..177 ("move the head up"), bilinear
resize to 1.25 x side (160 for side 128), then a border of side / 8 px (16) removed.
No normalisation, no colour augmentation. Landmarks follow the same map,
(x, y - 30) * 1.25 side / 178 - side / 8, and are returned as (y, x) = (row, col) in
pixels of the cropped image, the order DLP's regression uses. Image order is the
partition file's, as the original's pandas selection.
"""

import concurrent.futures
import os

import numpy as np
from PIL import Image

SPLITS = ("train", "mafl_train", "mafl_test")
IMAGE_DIR = os.path.join("Img", "img_align_celeba_hq")
LANDMARKS_FILE = os.path.join("Anno", "list_landmarks_align_celeba.txt")
PARTITION_FILE = os.path.join("Eval", "list_eval_partition.txt")
MAFL_FILES = {"mafl_train": os.path.join("MAFL", "training.txt"),
              "mafl_test": os.path.join("MAFL", "testing.txt")}
DEFAULT_SIDE = 128
TOP, CROP = 30, 178   # the aligned faces' crop: rows TOP..TOP+CROP-1, columns 0..CROP-1
NUM_LANDMARKS = 5     # left eye, right eye, nose, left and right mouth corners
_HOW_TO_GET = ("config.data.data_dir must be the unpacked celeba.tar.gz of DVE "
               "(github.com/jamt9000/DVE, README, 'Datasets': CelebA), holding Img/"
               "img_align_celeba_hq/, Anno/, Eval/ and MAFL/")


def geometry(side: int) -> tuple[int, int]:
  """(resize side, border) for final images of ``side``: (160, 16) for 128."""
  if side <= 0 or side % 8:
    raise ValueError(f"celeba_dve: config.data.image_size={side} must be a positive "
                     "multiple of 8 (the original's 128 = 160 - 2 x 16, scaled)")
  return side * 5 // 4, side // 8


def transform_landmarks(landmarks_xy: np.ndarray, side: int = DEFAULT_SIDE) -> np.ndarray:
  """Annotation (x, y) [..., 2] in the 178 x 218 image -> (y, x) in the final image."""
  resized, border = geometry(side)
  xy = np.asarray(landmarks_xy, np.float32).copy()
  xy[..., 1] -= TOP
  xy = xy * (resized / CROP) - border
  return xy[..., ::-1].copy()


def preprocess(image: Image.Image, side: int = DEFAULT_SIDE,
               keep_border: bool = False) -> np.ndarray:
  """One aligned face -> uint8 [side, side, 3] (or the resized image with its border)."""
  resized, border = geometry(side)
  image = image.convert("RGB").crop((0, TOP, CROP, TOP + CROP))
  pixels = np.asarray(image.resize((resized, resized), Image.Resampling.BILINEAR))
  return pixels if keep_border else pixels[border:resized - border, border:resized - border]


def read(data_dir: str | None, split: str, side: int = DEFAULT_SIDE,
         num_examples: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
  """Reads one split (see the module docstring).

  Args:
    data_dir: the unpacked DVE folder.
    split: one of `SPLITS`.
    side: final image side (128; any multiple of 8 scales the whole geometry).
    num_examples: keep only the first n images (None or <= 0: all).

  Returns:
    images uint8 [N, S, S, 3], S = 1.25 side for "train" (border kept) and side for
    the MAFL splits; landmarks float32 [N, 5, 2] (y, x) for the MAFL splits, else None.

  Raises:
    FileNotFoundError: a missing file, naming it and where to get the data.
    ValueError: unknown split, bad side, malformed annotation files.
  """
  if split not in SPLITS:
    raise ValueError(f"celeba_dve: config.data.split={split!r} is not one of {SPLITS}")
  if not data_dir:
    raise FileNotFoundError(f"celeba_dve: no data directory; {_HOW_TO_GET}")
  geometry(side)
  partition = _read_partition(data_dir)
  mafl = {name: set(_read_names(data_dir, path)) for name, path in MAFL_FILES.items()}
  if split == "train":
    names = [name for name, part in partition if part == 0
             and name not in mafl["mafl_train"] and name not in mafl["mafl_test"]]
  elif split == "mafl_train":
    names = [name for name, _ in partition if name in mafl["mafl_train"]]
  else:  # an image listed in both MAFL files counts as training, as the original's
    names = [name for name, _ in partition
             if name in mafl["mafl_test"] and name not in mafl["mafl_train"]]
  if num_examples is not None and num_examples > 0:
    names = names[:num_examples]
  if not names:
    raise ValueError(f"celeba_dve: split {split!r} is empty in {data_dir}")
  landmarks = None
  if split != "train":
    table = _read_landmarks(data_dir)
    path = os.path.join(data_dir, LANDMARKS_FILE)
    missing = [name for name in names if name not in table]
    if missing:
      raise ValueError(f"celeba_dve: {path} has no landmarks for {missing[0]} "
                       f"({len(missing)} {split} images without landmarks)")
    raw = np.stack([table[name] for name in names])
    landmarks = transform_landmarks(raw, side)
  images = _read_images(data_dir, names, side, keep_border=split == "train")
  return images, landmarks


def _require(data_dir: str, relative: str) -> str:
  path = os.path.join(data_dir, relative)
  if not os.path.exists(path):
    raise FileNotFoundError(f"celeba_dve: {path} not found; {_HOW_TO_GET}")
  return path


def _lines(data_dir: str, relative: str) -> list[list[str]]:
  with open(_require(data_dir, relative)) as f:
    return [line.split() for line in f if line.strip()]


def _read_names(data_dir: str, relative: str) -> list[str]:
  """First field of every line (MAFL lists)."""
  return [fields[0] for fields in _lines(data_dir, relative)]


def _read_partition(data_dir: str) -> list[tuple[str, int]]:
  """[(image name, partition)] in file order."""
  rows = []
  for number, fields in enumerate(_lines(data_dir, PARTITION_FILE), 1):
    if len(fields) != 2 or not fields[1].isdigit():
      raise ValueError(f"celeba_dve: {os.path.join(data_dir, PARTITION_FILE)} line "
                       f"{number}: expected '<image> <partition>', got {' '.join(fields)!r}")
    rows.append((fields[0], int(fields[1])))
  return rows


def _read_landmarks(data_dir: str) -> dict[str, np.ndarray]:
  """Image name -> [5, 2] (x, y); the file's first two lines are a count and a header."""
  table = {}
  rows = _lines(data_dir, LANDMARKS_FILE)
  for number, fields in enumerate(rows[2:], 3):
    if len(fields) != 1 + 2 * NUM_LANDMARKS:
      raise ValueError(f"celeba_dve: {os.path.join(data_dir, LANDMARKS_FILE)} line "
                       f"{number}: expected an image name and 10 coordinates")
    table[fields[0]] = np.asarray(fields[1:], np.float32).reshape(NUM_LANDMARKS, 2)
  return table


def _read_images(data_dir: str, names: list[str], side: int, keep_border: bool
                 ) -> np.ndarray:
  """Decodes and preprocesses the images on a few threads (PIL releases the GIL)."""
  folder = _require(data_dir, IMAGE_DIR)
  resized, border = geometry(side)
  out_side = resized if keep_border else resized - 2 * border
  images = np.empty((len(names), out_side, out_side, 3), np.uint8)

  def load(index):
    path = os.path.join(folder, names[index])
    if not os.path.isfile(path):
      raise FileNotFoundError(f"celeba_dve: {path} not found; {_HOW_TO_GET}")
    try:
      with Image.open(path) as image:
        images[index] = preprocess(image, side, keep_border)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
      reason = str(error).splitlines()[0] if str(error) else ""
      raise ValueError(f"celeba_dve: cannot read image {path} "
                       f"({type(error).__name__}: {reason})") from error

  workers = min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for _ in pool.map(load, range(len(names))):
      pass
  return images
