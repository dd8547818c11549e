"""The CUB-200-2011 part evaluation of the original's notebook (spec 9.2).

On the official release files under the CUB_200_2011 folder (images.txt,
train_test_split.txt, bounding_boxes.txt, parts/part_locs.txt): each image (cropped to
its ground-truth box, or whole), shorter side resized to 256 with PIL bilinear
(torchvision's `Resize(256)` on PIL images), Caffe means subtracted from the RGB
channels (`cub_parts.CAFFE_MEAN`), then `cut_borders`: each side centre-cropped down to
a multiple of 16, keypoints that fall outside becoming invisible. `sample_nearest` reads
a label map at keypoints exactly as the notebook's `grid_sample(mode='nearest',
align_corners=False)`. The supervised masks of the full-image scores are read and
binarised by `load_grey_mask` / `binarize_mask` (shared with DeepFashion).

Keypoint coordinates are (x, y) = (column, row), as in the annotation files.
"""

import os
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
from PIL import Image

from data_pipelines import cub_parts


def resize_shorter_side(image: Image.Image, side: int, resample: int) -> Image.Image:
  """torchvision's ``Resize(side)`` on a PIL image: shorter side -> side, the longer to
  int(side x longer / shorter) (truncated); PIL filters (bilinear antialiases)."""
  width, height = image.size
  if width <= height:
    size = (side, int(side * height / width))
  else:
    size = (int(side * width / height), side)
  return image if size == image.size else image.resize(size, resample)


def normalize_caffe(image: np.ndarray) -> np.ndarray:
  """uint8 [..., 3] RGB -> float32, minus `cub_parts.CAFFE_MEAN` per channel (no scaling)."""
  return np.asarray(image, np.float32) - cub_parts.CAFFE_MEAN


def load_grey_mask(path: str, how_to_get: str) -> Image.Image:
  """A supervised mask PNG as the original reads it: to RGB, then to grey ('L')."""
  cub_parts.require_file(path, how_to_get)
  try:
    with Image.open(path) as mask:
      return mask.convert("RGB").convert("L")
  except (OSError, SyntaxError, ValueError) as error:
    reason = str(error).splitlines()[0] if str(error) else ""
    raise ValueError(f"cannot read mask {path} ({type(error).__name__}: {reason})"
                     ) from error


def binarize_mask(grey: Image.Image, size: tuple[int, int]) -> np.ndarray:
  """A supervised grey-level mask ('L') -> uint8 [h, w] in {0, 1} at PIL ``size`` (w, h).

  The notebook multiplies the bilinearly resized grey levels into its prediction
  (soft weights, 0..255 or 0..1 depending on how the PNGs were written). Here the
  levels are read as [0, 1] (divided by 255 unless the file only holds 0 and 1),
  resized with PIL bilinear like the notebook, and thresholded at > 0.5.
  """
  levels = 1.0 if int(np.asarray(grey).max(initial=0)) <= 1 else 255.0
  if grey.size != size:
    grey = grey.resize(size, Image.Resampling.BILINEAR)
  return (np.asarray(grey, np.float32) / levels > 0.5).astype(np.uint8)


def cut_borders(array: np.ndarray, keypoints: np.ndarray | None = None,
                visible: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
  """The notebook's `cut_borders`: [H, W, ...] centre-cropped to multiples of 16.

  Each dimension loses d % 16 pixels, (d % 16) // 2 of them before. Visible keypoints
  (x, y) shift by the same offsets; those that land outside [0, w) x [0, h) become
  invisible. Invisible keypoints are returned as (0, 0).
  """
  height, width = array.shape[:2]
  border_h, border_w = height % cub_parts.CUT_MULTIPLE, width % cub_parts.CUT_MULTIPLE
  top, left = border_h // 2, border_w // 2
  new_h, new_w = height - border_h, width - border_w
  cropped = array[top:top + new_h, left:left + new_w]
  if keypoints is None:
    return cropped, None, None
  xy = np.asarray(keypoints, np.float32).copy()
  visible = np.asarray(visible, bool).copy()
  xy[visible] -= np.array([left, top], np.float32)
  inside = ((xy[:, 0] >= 0) & (xy[:, 0] < new_w) & (xy[:, 1] >= 0) & (xy[:, 1] < new_h))
  visible &= inside
  xy[~visible] = 0.0
  return cropped, xy, visible


def _read_table(data_dir: str, relative: str, columns: int) -> np.ndarray:
  """A whitespace-separated numeric file of the official release, float64 [M, columns]."""
  path = cub_parts.require_file(os.path.join(data_dir, relative), cub_parts.HOW_TO_GET)
  try:
    table = np.loadtxt(path, dtype=np.float64, ndmin=2)
  except ValueError as error:
    raise ValueError(f"cub_parts: {path} is not a numeric table ({error})") from None
  if table.shape[1] != columns:
    raise ValueError(f"cub_parts: {path} must have {columns} columns per line, "
                     f"got {table.shape[1]}")
  return table


class _Annotation(NamedTuple):
  image_id: int
  rel_path: str
  box: np.ndarray      # float64 [4] x, y, width, height (pixels)
  parts: np.ndarray    # float64 [15, 3] x, y, visibility


def _official_annotations(data_dir: str | None, split: str) -> list[_Annotation]:
  """The official split's images in images.txt order, with boxes and part locations."""
  if split not in cub_parts.SPLITS:
    raise ValueError(f"cub_parts: split={split!r} is not one of {cub_parts.SPLITS}")
  if not data_dir:
    raise FileNotFoundError(f"cub_parts: no data directory; {cub_parts.HOW_TO_GET}")
  images_path = cub_parts.require_file(os.path.join(data_dir, cub_parts.IMAGES_FILE),
                                       cub_parts.HOW_TO_GET)
  with open(images_path) as f:
    names = [line.split() for line in f if line.strip()]
  if any(len(fields) != 2 for fields in names):
    raise ValueError(f"cub_parts: {images_path}: expected '<image_id> <path>' lines")
  is_train = {int(i): int(t) for i, t in _read_table(data_dir, cub_parts.SPLIT_FILE, 2)}
  boxes = {int(row[0]): row[1:] for row in _read_table(data_dir, cub_parts.BOXES_FILE, 5)}
  parts: dict[int, np.ndarray] = {}
  for image_id, part_id, x, y, seen in _read_table(data_dir, cub_parts.PART_LOCS_FILE, 5):
    part = int(part_id) - 1
    if not 0 <= part < cub_parts.NUM_KEYPOINTS:
      raise ValueError(f"cub_parts: part id {int(part_id)} in "
                       f"{os.path.join(data_dir, cub_parts.PART_LOCS_FILE)} is not in 1..15")
    table = parts.setdefault(int(image_id), np.full((cub_parts.NUM_KEYPOINTS, 3), np.nan))
    table[part] = (x, y, seen)
  wanted = 1 if split == "train" else 0
  annotations = []
  for fields in names:
    image_id = int(fields[0])
    for table, relative in ((is_train, cub_parts.SPLIT_FILE), (boxes, cub_parts.BOXES_FILE),
                            (parts, cub_parts.PART_LOCS_FILE)):
      if image_id not in table:
        raise ValueError(f"cub_parts: {os.path.join(data_dir, relative)} has no line "
                         f"for image {image_id}")
    if np.isnan(parts[image_id]).any():
      raise ValueError(f"cub_parts: {os.path.join(data_dir, cub_parts.PART_LOCS_FILE)} lacks some "
                       f"of the 15 parts of image {image_id}")
    if is_train[image_id] == wanted:
      annotations.append(_Annotation(image_id, fields[1], boxes[image_id], parts[image_id]))
  return annotations


def eval_example(image: Image.Image, parts: np.ndarray, box: np.ndarray | None,
                 side: int = cub_parts.DEFAULT_SIDE
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
  """The notebook's preprocessing of one image, before `cut_borders`.

  Args:
    image: the RGB image.
    parts: [15, 3] part_locs x, y, visibility (no -1 shift, as the original).
    box: x, y, width, height to crop to (each truncated to an integer, the crop being
      rows int(y)..int(y) + int(h)), or None for the whole image. Visible keypoints
      become max(x - box x, 0), max(y - box y, 0), with the box's unrounded origin.
    side: the shorter side after resizing.

  Returns:
    uint8 [h, w, 3] resized image, keypoints float32 [15, 2] (x, y) pixels of it
    (scaled by side / shorter side of the crop, in float32 as the original's tensors),
    visible bool [15], and the PIL size (w, h) of the resized image.
  """
  xy = np.asarray(parts, np.float32)[:, :2].copy()
  visible = np.abs(np.asarray(parts, np.float32)[:, 2]) > 1e-5
  if box is not None:
    x, y, w, h = (int(v) for v in np.asarray(box, np.float32))
    image = image.crop((x, y, min(x + w, image.width), min(y + h, image.height)))
    origin = np.asarray(box, np.float32)[:2]
    xy[visible] = np.maximum(xy[visible] - origin, np.float32(0))
  factor = side / min(image.width, image.height)
  xy[visible] *= np.float32(factor)
  resized = resize_shorter_side(image, side, Image.Resampling.BILINEAR)
  return np.asarray(resized), xy, visible, resized.size


def _eval_samples(data_dir: str | None, split: str, side: int, limit: int | None,
                  crop_to_box: bool, masks_dir: str | None) -> Iterator[dict]:
  """Reads the annotations now (errors surface at the call), the images lazily."""
  annotations = _official_annotations(data_dir, split)
  if limit is not None and limit > 0:
    annotations = annotations[:limit]
  return _generate_eval_samples(data_dir, annotations, side, crop_to_box, masks_dir)


def _generate_eval_samples(data_dir: str, annotations: list[_Annotation], side: int,
                           crop_to_box: bool, masks_dir: str | None) -> Iterator[dict]:
  for annotation in annotations:
    image = cub_parts.load_rgb(
        os.path.join(data_dir, cub_parts.IMAGE_DIR, annotation.rel_path), cub_parts.HOW_TO_GET)
    if masks_dir is not None:
      mask_path = os.path.join(masks_dir, annotation.rel_path.replace(".jpg", ".png"))
      mask = load_grey_mask(mask_path, cub_parts.HOW_TO_GET_MASKS)
      if mask.size != image.size:
        raise ValueError(f"cub_parts: mask {mask_path} is {mask.size[0]}x{mask.size[1]}, "
                         f"its image {image.size[0]}x{image.size[1]}")
    pixels, xy, visible, size = eval_example(
        image, annotation.parts, annotation.box if crop_to_box else None, side)
    pixels, xy, visible = cut_borders(normalize_caffe(pixels), xy, visible)
    sample = {"image": pixels, "keypoints": xy, "visible": visible,
              "image_id": annotation.image_id,
              "class_id": int(annotation.rel_path.split(".")[0]),
              "rel_path": annotation.rel_path}
    if masks_dir is not None:
      sample["mask"] = cut_borders(binarize_mask(mask, size))[0]
    yield sample


def keypoint_eval_samples(data_dir: str | None, split: str = "test",
                          side: int = cub_parts.DEFAULT_SIDE, limit: int | None = None
                          ) -> Iterator[dict]:
  """FG-NMI / FG-ARI inputs: official-split images cropped to their ground-truth box.

  Args:
    data_dir: the CUB_200_2011 folder.
    split: "test" (5,794 images) or "train" (5,994), from train_test_split.txt.
    side: shorter side after resizing (256).
    limit: only the first n images (None or <= 0: all).

  Yields:
    Per image, in images.txt order, a dict: "image" float32 [h, w, 3] (box crop,
    `Resize(side)`, minus `cub_parts.CAFFE_MEAN`, `cut_borders`; h, w multiples of 16),
    "keypoints" float32 [15, 2] (x, y) pixels of that image, "visible" bool [15],
    "image_id" (images.txt id), "class_id" (species 1..200), "rel_path".

  Raises:
    FileNotFoundError: a missing file, naming it and where to get the data.
    ValueError: unknown split, malformed annotation files, unreadable images.
  """
  return _eval_samples(data_dir, split, side, limit, crop_to_box=True, masks_dir=None)


def full_image_eval_samples(data_dir: str | None, masks_dir: str | None,
                            split: str = "test", side: int = cub_parts.DEFAULT_SIDE,
                            limit: int | None = None) -> Iterator[dict]:
  """Full-image NMI / ARI inputs: whole images with the supervised foreground mask.

  As `keypoint_eval_samples` without the box crop, plus "mask": uint8 [h, w] in
  {0, 1} from masks_dir/<rel_path with .png>, read as the notebook does (grey levels,
  PIL bilinear `Resize(side)`, the same `cut_borders`) and binarised at 0.5 of its
  range (`binarize_mask`).
  """
  if not masks_dir:
    raise FileNotFoundError("cub_parts: no supervised mask directory; "
                            f"{cub_parts.HOW_TO_GET_MASKS}")
  cub_parts.require_file(masks_dir, cub_parts.HOW_TO_GET_MASKS)
  return _eval_samples(data_dir, split, side, limit, crop_to_box=False,
                       masks_dir=masks_dir)


def sample_nearest(label_map: np.ndarray, keypoints_xy: np.ndarray) -> np.ndarray:
  """Labels at (x, y) pixel keypoints, as ``grid_sample(mode='nearest',
  align_corners=False)`` at the notebook's normalised 2 x / W - 1.

  The normalisation and PyTorch's unnormalisation ((g + 1) W - 1) / 2 run in float32
  as in the original, then round half to even (``nearbyint``): a keypoint reads pixel
  round(x - 0.5), so x = 10.0 reads column 10 and x = 11.0 also column 10.

  Args:
    label_map: int [h, w] (an argmax map: sampling then argmax is the same).
    keypoints_xy: [L, 2] (x, y) pixels.

  Returns:
    [L] labels, the label map's dtype.

  Raises:
    ValueError: a keypoint whose pixel lies outside the map (the original would read
      zero padding there).
  """
  label_map = np.asarray(label_map)
  height, width = label_map.shape
  xy = np.asarray(keypoints_xy, np.float32).reshape(-1, 2)
  size = np.array([width, height], np.float32)
  grid = xy / size * np.float32(2) - np.float32(1)
  source = ((grid + np.float32(1)) * size - np.float32(1)) / np.float32(2)
  index = np.rint(source).astype(np.int64)
  outside = (index < 0).any(axis=1) | (index[:, 0] >= width) | (index[:, 1] >= height)
  if outside.any():
    raise ValueError(f"sample_nearest: keypoint {xy[outside][0].tolist()} lies outside "
                     f"the {height}x{width} map")
  return label_map[index[:, 1], index[:, 0]]
