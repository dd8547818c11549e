"""DeepFashion in-shop segmentation for unsupervised part discovery (spec 8.2, 9.3).

`data_dir` is the "In-shop Clothes Retrieval Benchmark" folder laid out as the
original expects: Anno/segmentation/ holds the split files
DeepFashion_segmentation_{train,query,gallery}.json ({"images": [{"file_name": ...}]},
file names relative to Anno/segmentation/, e.g. img_highres/MEN/.../01_1_front.jpg,
from img_highres_seg.zip) and, beside every image, its colour-coded part map
<name>_segment.png. Split "train" is the train file, "test" the query file followed
by the gallery file (6,922 images in the original's notebook).

Part maps: each of the 16 colour codes of `PART_COLOURS` is identified by the sum of
its RGB values (unique per code, as in the original) and becomes label 0..15, 0 the
background; a pixel whose sum is no code's is an error (the original would map it to
255 silently).

`read` returns the original's test geometry for both splits: the longer side resized
to 256 with cv2's INTER_LINEAR (image) / INTER_NEAREST (labels) geometry
(`cub_parts.resize_linear_cv2` rounded to uint8, `cub_parts.resize_nearest_cv2`), then
padded to 256 x 256, half of the padding before (image: edge pixels repeated, labels:
0). The training loader's `RandomResizedCrop` (scale 0.5..1, ratio 3/4..4/3) is an
augmentation and is left out, like the random flip, which belongs to the train step.
The FG-NMI / FG-ARI protocol reads these test images.

`full_eval_samples` is the notebook's input for the full-image NMI / ARI: the image
with its shorter side resized to 256 (PIL bilinear, no padding), minus the Caffe
means, the label map resized with PIL nearest (or, with `legacy_label_resize`, with
PIL bilinear as the notebook does, which invents in-between labels along part
boundaries), and optionally the supervised foreground mask, binarised.
"""

import concurrent.futures
import json
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image

from data_pipelines import cub_eval, cub_parts

SPLITS = ("train", "test")
DEFAULT_SIDE = 256
SEGMENTATION_DIR = os.path.join("Anno", "segmentation")
SPLIT_FILES = {
    "train": ("DeepFashion_segmentation_train.json",),
    "test": ("DeepFashion_segmentation_query.json", "DeepFashion_segmentation_gallery.json"),
}
SEGMENT_SUFFIX = "_segment.png"
# RGB colour code of each label, as in the original (0 = background).
PART_COLOURS = np.array([
    [0, 0, 0], [0, 100, 0], [16, 78, 139], [50, 205, 50], [70, 130, 180],
    [127, 255, 212], [144, 238, 144], [211, 211, 211], [220, 220, 220], [245, 222, 179],
    [250, 235, 215], [255, 0, 0], [255, 140, 0], [255, 250, 205], [255, 250, 250],
    [255, 255, 0]], np.int64)
NUM_LABELS = len(PART_COLOURS)
_UNKNOWN = 255
_LABEL_OF_SUM = np.full(3 * 255 + 1, _UNKNOWN, np.uint8)
_LABEL_OF_SUM[PART_COLOURS.sum(axis=1)] = np.arange(NUM_LABELS)

_HOW_TO_GET = ("data_dir must be DeepFashion's 'In-shop Clothes Retrieval Benchmark' "
               "folder (mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html) "
               "with the 'segmentation' folder of its download links in Anno/ and "
               "img_highres_seg.zip unpacked inside it")
_HOW_TO_GET_MASKS = ("masks_dir must hold the supervised foreground masks "
                     "<file_name>.png (unsup-parts README: "
                     "deepfashion_supervisedlabels.tar.gz, the 'supervisedlabels' folder)")


def labels_from_colours(segment: np.ndarray, path: str = "segment") -> np.ndarray:
  """uint8 [H, W, 3] colour-coded part map -> uint8 [H, W] labels 0..15 (by RGB sum).

  Raises:
    ValueError: a colour sum that is no code's, naming ``path`` and the colour.
  """
  segment = np.asarray(segment)
  labels = _LABEL_OF_SUM[segment.astype(np.int64).sum(axis=-1)]
  unknown = labels == _UNKNOWN
  if unknown.any():
    row, col = np.argwhere(unknown)[0]
    raise ValueError(f"deepfashion_parts: {path} has {int(unknown.sum())} pixels of no "
                     f"part colour, e.g. RGB {segment[row, col].tolist()} at row {row}, "
                     f"column {col}")
  return labels


def fit_longer_side(image: np.ndarray, labels: np.ndarray, side: int = DEFAULT_SIDE
                    ) -> tuple[np.ndarray, np.ndarray]:
  """The test geometry: longer side -> ``side`` (cv2-style), then padded to side x side.

  Args:
    image: uint8 [H, W, 3].
    labels: uint8 [H, W].
    side: output side.

  Returns:
    image uint8 [side, side, 3] (edge-replicated padding), labels uint8 [side, side]
    (padding 0). Sizes are round(H x side / max(H, W)) etc. (numpy's round), and
    padding puts floor(p / 2) pixels before, as the original's `pad_if_smaller`.
  """
  height, width = labels.shape
  scale = side / float(max(height, width))
  new_h, new_w = (int(v) for v in np.round(np.array([height, width]) * scale))
  pixels = np.clip(np.rint(cub_parts.resize_linear_cv2(image, new_h, new_w)), 0, 255)
  pixels = pixels.astype(np.uint8)
  labels = cub_parts.resize_nearest_cv2(labels, new_h, new_w)
  missing = (max(side - new_h, 0), max(side - new_w, 0))
  pad = tuple((m // 2, m - m // 2) for m in missing)
  pixels = np.pad(pixels, pad + ((0, 0),), mode="edge")
  labels = np.pad(labels, pad, mode="constant", constant_values=0)
  return pixels, labels


def _require(path: str, how_to_get: str) -> str:
  if not os.path.exists(path):
    raise FileNotFoundError(f"deepfashion_parts: {path} not found; {how_to_get}")
  return path


def file_names(data_dir: str | None, split: str) -> list[str]:
  """The split's image names (relative to Anno/segmentation/), in the json files' order."""
  if split not in SPLITS:
    raise ValueError(f"deepfashion_parts: split={split!r} is not one of {SPLITS}")
  if not data_dir:
    raise FileNotFoundError(f"deepfashion_parts: no data directory; {_HOW_TO_GET}")
  names = []
  for file in SPLIT_FILES[split]:
    path = _require(os.path.join(data_dir, SEGMENTATION_DIR, file), _HOW_TO_GET)
    with open(path) as f:
      try:
        entries = json.load(f)["images"]
        names += [str(entry["file_name"]) for entry in entries]
      except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"deepfashion_parts: {path} must be a json object whose "
                         f"'images' list holds {{'file_name': ...}} entries "
                         f"({type(error).__name__}: {error})") from None
  return names


def _load(path: str, mode: str) -> Image.Image:
  _require(path, _HOW_TO_GET)
  try:
    with Image.open(path) as image:
      return image.convert(mode)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    reason = str(error).splitlines()[0] if str(error) else ""
    raise ValueError(f"deepfashion_parts: cannot read image {path} "
                     f"({type(error).__name__}: {reason})") from error


def load_example(data_dir: str, name: str) -> tuple[Image.Image, np.ndarray]:
  """The RGB image ``name`` and its part labels uint8 [H, W] (same size, checked)."""
  folder = os.path.join(data_dir, SEGMENTATION_DIR)
  image = _load(os.path.join(folder, name), "RGB")
  segment_path = os.path.join(folder, name.replace(".jpg", SEGMENT_SUFFIX))
  labels = labels_from_colours(np.asarray(_load(segment_path, "RGB")), segment_path)
  if labels.shape != (image.height, image.width):
    raise ValueError(f"deepfashion_parts: {segment_path} is {labels.shape[1]}x"
                     f"{labels.shape[0]}, its image {image.width}x{image.height}")
  return image, labels


def read(data_dir: str | None, split: str, side: int = DEFAULT_SIDE,
         num_examples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Reads one split in the test geometry (see the module docstring).

  Args:
    data_dir: the "In-shop Clothes Retrieval Benchmark" folder.
    split: "train" or "test".
    side: output side (the original's 256).
    num_examples: keep only the first n images (None or <= 0: all).

  Returns:
    images uint8 [N, side, side, 3] and part labels uint8 [N, side, side] in 0..15
    (0: background and padding), in the json files' order.

  Raises:
    FileNotFoundError: a missing file, naming it and where to get the data.
    ValueError: unknown split, malformed json, unknown colours, unreadable images.
  """
  if side <= 0:
    raise ValueError(f"deepfashion_parts: side={side} must be positive")
  names = file_names(data_dir, split)
  if num_examples is not None and num_examples > 0:
    names = names[:num_examples]
  if not names:
    raise ValueError(f"deepfashion_parts: split {split!r} is empty in {data_dir}")
  images = np.empty((len(names), side, side, 3), np.uint8)
  labels = np.empty((len(names), side, side), np.uint8)

  def load(index):
    image, part_labels = load_example(data_dir, names[index])
    images[index], labels[index] = fit_longer_side(np.asarray(image), part_labels, side)

  workers = min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for _ in pool.map(load, range(len(names))):
      pass
  return images, labels


def full_eval_samples(data_dir: str | None, masks_dir: str | None = None,
                      split: str = "test", side: int = DEFAULT_SIDE,
                      legacy_label_resize: bool = False, limit: int | None = None
                      ) -> Iterator[dict]:
  """Full-image NMI / ARI inputs, as the notebook's `DF` dataset.

  Args:
    data_dir: the "In-shop Clothes Retrieval Benchmark" folder.
    masks_dir: folder of the supervised masks <file_name>.png (the original's
      <data_dir>/supervisedlabels), or None for no "mask".
    split: "test" (query + gallery) or "train".
    side: shorter side after resizing (torchvision's `Resize(256)` on PIL images).
    legacy_label_resize: resize the label map with PIL bilinear like the notebook
      (needed to reproduce its 68.10 / 90.60), instead of nearest.
    limit: only the first n images (None or <= 0: all).

  Yields:
    Per image a dict: "image" float32 [side, w, 3] (or [h, side, 3]) minus
    `cub_parts.CAFFE_MEAN`, "labels" uint8 of the same size, "file_name", and with
    masks_dir "mask" uint8 {0, 1} of the same size (`cub_eval.binarize_mask`).

  Raises:
    FileNotFoundError: a missing file, naming it and where to get the data.
    ValueError: unknown split, malformed json, unknown colours, unreadable images.
  """
  names = file_names(data_dir, split)   # read now: errors surface at the call
  if masks_dir is not None:
    _require(masks_dir, _HOW_TO_GET_MASKS)
  if limit is not None and limit > 0:
    names = names[:limit]
  label_filter = (Image.Resampling.BILINEAR if legacy_label_resize
                  else Image.Resampling.NEAREST)
  return _generate_full_eval_samples(data_dir, names, masks_dir, side, label_filter)


def _generate_full_eval_samples(data_dir: str, names: list[str], masks_dir: str | None,
                                side: int, label_filter: int) -> Iterator[dict]:
  for name in names:
    image, labels = load_example(data_dir, name)
    resized = cub_eval.resize_shorter_side(image, side, Image.Resampling.BILINEAR)
    labels = cub_eval.resize_shorter_side(Image.fromarray(labels), side, label_filter)
    sample = {"image": cub_eval.normalize_caffe(np.asarray(resized)),
              "labels": np.asarray(labels, np.uint8), "file_name": name}
    if masks_dir is not None:
      mask_path = os.path.join(masks_dir, name + ".png")
      mask = cub_eval.load_grey_mask(
          _require(mask_path, _HOW_TO_GET_MASKS), _HOW_TO_GET_MASKS)
      if mask.size != image.size:
        raise ValueError(f"deepfashion_parts: mask {mask_path} is {mask.size[0]}x"
                         f"{mask.size[1]}, its image {image.width}x{image.height}")
      sample["mask"] = cub_eval.binarize_mask(mask, resized.size)
    yield sample
