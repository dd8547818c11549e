"""CUB-200-2011 for unsupervised part discovery (Choudhury et al. 2021; spec 8.1, 9.2).

Two readers of one CUB_200_2011 folder (`data_dir`, unpacked from Caltech's
CUB_200_2011.tgz, with CMR's `cachedir` unpacked inside it):

- Training crops (`read_train`), as the original's CMR-derived loader: per image of
  cachedir/cub/data/{split}_cub_cleaned.mat (fields rel_path, bbox.x1 y1 x2 y2 1-based,
  the full-image 0/1 `mask`, `parts` 3 x 15 = x, y, visibility), the box made 0-based,
  each side grown by 5 % of the box width / height, squared around its centre with
  integer rounding, cropped with out-of-image pixels 1 (image, uint8 scale) and 0
  (mask), and resized to side x side with cv2's INTER_LINEAR (image) / INTER_NEAREST
  (mask) geometry, re-implemented in numpy (`resize_linear_cv2`, `resize_nearest_cv2`;
  cv2 is not a dependency). The image goes through the resize in float64 and is cast
  to uint8 by truncation, as the original's float crop is. The training loader's
  per-epoch box jitter (U(-1, 1) x 5 % per side) is left out, because the source is
  computed once and held in memory: every split gets the original's test-time crop.
  The random horizontal flip belongs to the train step (`KEYPOINT_FLIP_PERMUTATION`
  swaps left and right keypoints).
- The evaluation protocol of the original's notebook, on the official files
  (`data_pipelines.cub_eval`).

Keypoint coordinates are (x, y) = (column, row) here, as in the annotation files.
"""

import concurrent.futures
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.io
from PIL import Image

SPLITS = ("train", "test")
DEFAULT_SIDE = 256
NUM_KEYPOINTS = 15
# Caffe's BGR means, subtracted from the RGB channels by the original (spec 3).
CAFFE_MEAN = np.array([104.00698793, 116.66876762, 122.67891434], np.float32)
PADDING_FRACTION = 0.05   # growth of each side of the box, fraction of its width / height
CUT_MULTIPLE = 16         # `cut_borders` keeps the largest multiple of 16 of each side
# Keypoint order after a horizontal flip (left and right eye, leg, wing swapped); the
# original's flip also maps pixel x to side - 1 - x.
KEYPOINT_FLIP_PERMUTATION = (0, 1, 2, 3, 4, 5, 10, 11, 12, 9, 6, 7, 8, 13, 14)

IMAGE_DIR = "images"
CMR_ANNOTATIONS = os.path.join("cachedir", "cub", "data", "{split}_cub_cleaned.mat")
IMAGES_FILE = "images.txt"
SPLIT_FILE = "train_test_split.txt"
BOXES_FILE = "bounding_boxes.txt"
PART_LOCS_FILE = os.path.join("parts", "part_locs.txt")

HOW_TO_GET = ("data_dir must be the CUB_200_2011 folder unpacked from CUB_200_2011.tgz "
               "(Caltech, www.vision.caltech.edu/datasets/cub_200_2011), holding images/, "
               "images.txt, train_test_split.txt, bounding_boxes.txt and parts/")
HOW_TO_GET_CMR = ("unpack CMR's cachedir.tar.gz (github.com/akanazawa/cmr, issue #3) "
                   "inside the CUB_200_2011 folder, so that it holds "
                   "cachedir/cub/data/{train,test}_cub_cleaned.mat")
HOW_TO_GET_MASKS = ("masks_dir must hold the supervised foreground masks "
                     "<class folder>/<image>.png (unsup-parts README: "
                     "cub_supervisedlabels.tar.gz, the 'supervisedlabels' folder)")


class TrainCrops(NamedTuple):
  """The training loader's crops of one split (see `read_train`)."""

  images: np.ndarray       # uint8 [N, S, S, 3]
  masks: np.ndarray        # uint8 [N, S, S], 1 = bird (CUB's ground-truth segmentation)
  keypoints: np.ndarray    # float32 [N, 15, 2] (x, y) / S in [0, 1]; 0.5 where invisible
  visible: np.ndarray      # bool [N, 15]
  class_ids: np.ndarray    # int32 [N], species 1..200 (the folder prefix of rel_path)
  rel_paths: tuple[str, ...]


# ---------------------------------------------------------------------------------------
# cv2-style resizing and the CMR crop.
# ---------------------------------------------------------------------------------------


def _linear_taps(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """cv2 INTER_LINEAR taps along one axis: (index, next index, float64 weight of next).

  Half-pixel centres, (d + 0.5) * source / target - 0.5, clamped to the edge pixels;
  the fractional weight is float32 as in cv2 (and 1 - w is formed in float32).
  """
  scale = 1.0 / (target / source)
  position = ((np.arange(target) + 0.5) * scale - 0.5).astype(np.float32)
  index = np.floor(position).astype(np.int64)
  weight = position - index.astype(np.float32)
  low, high = index < 0, index >= source - 1
  weight[low | high] = 0.0
  index[low] = 0
  index[high] = source - 1
  following = np.minimum(index + 1, source - 1)
  return index, following, weight


def resize_linear_cv2(array: np.ndarray, height: int, width: int) -> np.ndarray:
  """``cv2.resize(array, (width, height))``, INTER_LINEAR, computed in float64.

  [H, W(, C)] -> [height, width(, C)]. Each row is interpolated horizontally, then
  the rows are blended vertically, each as v0 (1 - w) + v1 w with float32 weights and
  float64 sums, the order of cv2's float path. No antialiasing, as cv2. (cv2's 8-bit
  path uses 11-bit fixed-point weights instead; rounding this result reproduces it to
  within one grey level.)
  """
  values = np.asarray(array, np.float64)
  extra = (1,) * (values.ndim - 2)

  def weights(taps, shape):
    index, following, weight = taps
    return (index, following, (np.float32(1) - weight).astype(np.float64).reshape(shape),
            weight.astype(np.float64).reshape(shape))

  x0, x1, ax, bx = weights(_linear_taps(values.shape[1], width), (1, width) + extra)
  y0, y1, ay, by = weights(_linear_taps(values.shape[0], height), (height, 1) + extra)
  rows = values[:, x0] * ax + values[:, x1] * bx
  return rows[y0] * ay + rows[y1] * by


def resize_nearest_cv2(array: np.ndarray, height: int, width: int) -> np.ndarray:
  """``cv2.resize(..., interpolation=cv2.INTER_NEAREST)``: source index floor(d * S / T).

  This is cv2's legacy nearest rule (not pixel-centre based, unlike PIL's), clamped
  to the last pixel; dtype is kept.
  """
  def indices(source, target):
    step = 1.0 / (target / source)
    return np.minimum(np.floor(np.arange(target) * step).astype(np.int64), source - 1)

  array = np.asarray(array)
  return array[indices(array.shape[0], height)][:, indices(array.shape[1], width)]


def square_crop_box(bbox: Sequence[float], padding: float = PADDING_FRACTION
                    ) -> tuple[int, int, int]:
  """CMR's test-time box: 1-based (x1, y1, x2, y2) -> 0-based (left, top, side).

  Each side grows by ``padding`` x the box width (height), the corners are rounded
  (Python's round, halves to even), and the shorter dimension grows to the longer one,
  round((longer - shorter) / 2) of it before the box. The box may leave the image.
  """
  x1, y1, x2, y2 = (float(v) - 1.0 for v in bbox)
  width, height = x2 - x1 + 1, y2 - y1 + 1
  grown = (x1 - padding * width, y1 - padding * height,
           x2 + padding * width, y2 + padding * height)
  left, top, right, bottom = (int(round(v)) for v in grown)
  width, height = right - left + 1, bottom - top + 1
  side = max(width, height)
  left -= int(round((side - width) / 2.0))
  top -= int(round((side - height) / 2.0))
  return left, top, side


def crop_with_fill(array: np.ndarray, left: int, top: int, side: int, fill: float
                   ) -> np.ndarray:
  """[H, W(, C)] -> float64 [side, side(, C)], ``fill`` where the square leaves the array."""
  height, width = array.shape[:2]
  out = np.full((side, side) + array.shape[2:], fill, np.float64)
  x0, x1 = max(0, left), min(width, left + side)
  y0, y1 = max(0, top), min(height, top + side)
  if x0 < x1 and y0 < y1:
    out[y0 - top:y1 - top, x0 - left:x1 - left] = array[y0:y1, x0:x1]
  return out


def crop_train_example(image: np.ndarray, mask: np.ndarray, bbox: Sequence[float],
                       parts: np.ndarray, side: int = DEFAULT_SIDE
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """One image as the training loader crops it at test time (no jitter, no flip).

  Args:
    image: uint8 [H, W, 3].
    mask: [H, W] in {0, 1}.
    bbox: CMR's 1-based (x1, y1, x2, y2).
    parts: [3, 15] CMR keypoints: 1-based x, y, and visibility (> 0: visible).
    side: output side.

  Returns:
    image uint8 [side, side, 3] (truncated from the float64 resize, out-of-image
    pixels 1), mask uint8 [side, side], keypoints float32 [15, 2] (x, y) / side with
    x, y 0-based pixels of the crop (the original's [-1, 1] value v is 2 k - 1 of
    this k; invisible keypoints are 0.5, the original's zeroed v), visible bool [15].
  """
  left, top, crop_side = square_crop_box(bbox)
  scale = side / float(crop_side)
  new_side = int(np.round(crop_side * scale))
  pixels = crop_with_fill(image, left, top, crop_side, fill=1.0)
  pixels = resize_linear_cv2(pixels, new_side, new_side).astype(np.uint8)
  cropped_mask = crop_with_fill(mask, left, top, crop_side, fill=0.0)
  cropped_mask = resize_nearest_cv2(cropped_mask, new_side, new_side).astype(np.uint8)
  keypoints = np.asarray(parts, np.float64).T.copy()
  visible = keypoints[:, 2] > 0
  xy = keypoints[:, :2]
  xy[visible] -= 1.0
  xy[visible] -= (left, top)
  xy[visible] *= scale
  normalised = np.where(visible[:, None], xy / new_side, 0.5)
  return pixels, cropped_mask, normalised.astype(np.float32), visible


# ---------------------------------------------------------------------------------------
# Training crops from the CMR annotations.
# ---------------------------------------------------------------------------------------


def require_file(path: str, how_to_get: str) -> str:
  if not os.path.exists(path):
    raise FileNotFoundError(f"cub_parts: {path} not found; {how_to_get}")
  return path


def load_rgb(path: str, how_to_get: str) -> Image.Image:
  """The image at ``path`` as RGB (grey images get three equal channels)."""
  require_file(path, how_to_get)
  try:
    with Image.open(path) as image:
      return image.convert("RGB")
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    reason = str(error).splitlines()[0] if str(error) else ""
    raise ValueError(f"cub_parts: cannot read image {path} "
                     f"({type(error).__name__}: {reason})") from error


def _read_cmr_annotations(data_dir: str, split: str) -> list:
  """The `images` struct array of CMR's {split}_cub_cleaned.mat, one record per image."""
  path = require_file(os.path.join(data_dir, CMR_ANNOTATIONS.format(split=split)),
                  HOW_TO_GET_CMR)
  try:
    records = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)["images"]
  except KeyError:
    raise ValueError(f"cub_parts: {path} has no 'images' struct array") from None
  # squeeze_me turns a one-record array into the record itself.
  return [records] if isinstance(records, scipy.io.matlab.mat_struct) else list(records)


def read_train(data_dir: str | None, split: str, side: int = DEFAULT_SIDE,
               num_examples: int | None = None) -> TrainCrops:
  """Reads the training loader's crops of one CMR split (see the module docstring).

  Args:
    data_dir: the CUB_200_2011 folder, with CMR's cachedir inside.
    split: "train" or "test" (CMR's cleaned splits, not the official ones).
    side: output side (the original's 256).
    num_examples: keep only the first n records (None or <= 0: all).

  Returns:
    `TrainCrops`, records in the .mat file's order.

  Raises:
    FileNotFoundError: a missing file, naming it and where to get the data.
    ValueError: unknown split, malformed records or masks, unreadable images.
  """
  if split not in SPLITS:
    raise ValueError(f"cub_parts: split={split!r} is not one of {SPLITS}")
  if not data_dir:
    raise FileNotFoundError(f"cub_parts: no data directory; {HOW_TO_GET}")
  if side <= 0:
    raise ValueError(f"cub_parts: side={side} must be positive")
  records = _read_cmr_annotations(data_dir, split)
  if num_examples is not None and num_examples > 0:
    records = records[:num_examples]
  if not records:
    raise ValueError(f"cub_parts: split {split!r} is empty in {data_dir}")
  count = len(records)
  images = np.empty((count, side, side, 3), np.uint8)
  masks = np.empty((count, side, side), np.uint8)
  keypoints = np.empty((count, NUM_KEYPOINTS, 2), np.float32)
  visible = np.empty((count, NUM_KEYPOINTS), bool)
  rel_paths = tuple(str(record.rel_path) for record in records)
  class_ids = np.array([int(path.split(".")[0]) for path in rel_paths], np.int32)

  def load(index):
    record = records[index]
    path = os.path.join(data_dir, IMAGE_DIR, rel_paths[index])
    image = np.asarray(load_rgb(path, HOW_TO_GET))
    mask = np.asarray(record.mask)
    if mask.shape != image.shape[:2] or not np.isin(mask, (0, 1)).all():
      raise ValueError(f"cub_parts: the mask of {rel_paths[index]} must be 0/1 "
                       f"{list(image.shape[:2])} like its image, got {mask.dtype} "
                       f"{mask.shape} with values {np.unique(mask)[:4]}")
    parts = np.asarray(record.parts, np.float64)
    if parts.shape != (3, NUM_KEYPOINTS):
      raise ValueError(f"cub_parts: the parts of {rel_paths[index]} must be 3 x 15, "
                       f"got {parts.shape}")
    bbox = (record.bbox.x1, record.bbox.y1, record.bbox.x2, record.bbox.y2)
    (images[index], masks[index], keypoints[index],
     visible[index]) = crop_train_example(image, mask, bbox, parts, side)

  workers = min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for _ in pool.map(load, range(count)):
      pass
  return TrainCrops(images, masks, keypoints, visible, class_ids, rel_paths)
