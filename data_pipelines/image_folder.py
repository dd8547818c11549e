"""A folder of the user's own images, flat or sorted into one subfolder per class.

Flat folders are the photo collections (Instagram, MegaDepth: unlabelled); class
subfolders are torchvision's ImageFolder layout, whose labels the clustering scores
use. Images keep one grey channel when every file is grey, so that grey scans train
with the transformations defined for one channel (morphology).
"""

import os

import numpy as np
from PIL import Image

from data_pipelines import files

# config.data.channels: 0 = as the files are, 1 = grey, 3 = RGB.
CHANNEL_CHOICES = (0, 1, 3)
# PIL modes that store one grey channel: bilevel, 8-bit (its alpha, if any, is dropped
# when read), 16- and 32-bit integer. Palette images count when their palette is grey.
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N")


def read(folder: str, image_size: int, channels: int = 0
         ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """The images of `folder` as size x size crops, with class labels when it has them.

  Two layouts (torchvision's ImageFolder is the second):
    flat: image files directly in `folder`, every label -1 (unknown); subfolders
      without images are skipped.
    class subfolders: each first-level subfolder holding images (at any depth) is
      a class, ids 0..C-1 in sorted name order, and every image below it gets that
      id. Subfolders without images are no class. Images directly in `folder` as
      well are a ValueError: they belong to no class, and a -1 among known labels
      would corrupt the scores.
  Images are read class by class, each class in torchvision's order (folders by
  sorted path, then files by name); files with other extensions than
  `files.IMAGE_EXTENSIONS` are skipped. Each image is resized so that its shorter
  side is `image_size` (PIL bilinear; smaller images are upscaled) and
  centre-cropped, as torchvision's `Resize(size)` then `CenterCrop(size)`.

  Args:
    folder: The folder to read.
    image_size: Side of the square crops, in pixels.
    channels: 0 = as the files are (1 when every file is grey, see `is_grey`,
      else 3), 1 = grey, 3 = RGB (grey files repeated in the three channels).

  Returns:
    images uint8 [N, image_size, image_size, C] (C = 1 or 3), labels int32 [N]
    (-1 for a flat folder) and the class names (empty for a flat folder).
  """
  if channels not in CHANNEL_CHOICES:
    raise ValueError(f"config.data.channels={channels!r} is not one of {CHANNEL_CHOICES} "
                     "(0: as the files are, 1: grey, 3: RGB)")
  if not os.path.isdir(folder):
    raise FileNotFoundError(
        f"image_folder: {folder} not found; see the expected layout with "
        f"`python scripts/download_data.py image_folder --data_dir={folder}`")
  paths, labels, classes = layout(folder)
  if channels == 0:  # headers only; stops at the first colour file
    channels = 1 if all(_opened(path, is_grey) for path in paths) else 3
  images = np.empty((len(paths), image_size, image_size, channels), np.uint8)
  for i, path in enumerate(paths):
    crop = _opened(path, lambda image: files.resize_and_center_crop(
        files.convert_image(image, channels), image_size))
    images[i] = crop.reshape(image_size, image_size, channels)
  return images, np.asarray(labels, np.int32), classes


def is_grey(image: Image.Image) -> bool:
  """Whether an opened image file stores grey only: a mode in `GREY_MODES`, or a
  palette ("P", "PA") whose entries are all grey (R == G == B). Reads no pixels."""
  if image.mode in GREY_MODES:
    return True
  if image.mode in ("P", "PA"):
    palette = np.asarray(image.getpalette("RGB"), np.int64).reshape(-1, 3)
    return bool((palette == palette[:, :1]).all())
  return False


def layout(folder: str) -> tuple[list[str], list[int], tuple[str, ...]]:
  """(paths, labels, class names) of a flat (labels -1, no names) or class-subfolder
  image folder, as `read` describes; ValueError when it holds no image or both."""
  top_paths = _files_in(folder)
  classes, class_paths = [], []
  for entry in sorted(os.listdir(folder)):
    below = _files_below(os.path.join(folder, entry))
    if below:
      classes.append(entry)
      class_paths.append(below)
  if classes and top_paths:
    more = ", ..." if len(classes) > 3 else ""
    raise ValueError(
        f"image_folder: {folder} holds {len(top_paths)} images directly (e.g. "
        f"{os.path.basename(top_paths[0])}) beside {len(classes)} class subfolders "
        f"({', '.join(classes[:3])}{more}); move those images into a class subfolder")
  if classes:
    labels = [label for label, paths in enumerate(class_paths) for _ in paths]
    return [path for paths in class_paths for path in paths], labels, tuple(classes)
  if not top_paths:
    raise ValueError(f"image_folder: no {'/'.join(files.IMAGE_EXTENSIONS)} images in "
                     f"{folder} or its subfolders")
  return top_paths, [-1] * len(top_paths), ()


def _is_image(folder: str, name: str) -> bool:
  return (name.lower().endswith(files.IMAGE_EXTENSIONS)
          and os.path.isfile(os.path.join(folder, name)))


def _files_in(folder: str) -> list[str]:
  """Image files directly in `folder`, sorted."""
  return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                if _is_image(folder, name))


def _files_below(folder: str) -> list[str]:
  """Image files at any depth below `folder` ([] for a file), in torchvision
  ImageFolder's order: folders by sorted path (links followed), files by name."""
  if not os.path.isdir(folder):
    return []
  return [os.path.join(root, name)
          for root, _, names in sorted(os.walk(folder, followlinks=True))
          for name in sorted(names) if _is_image(root, name)]


def _opened(path: str, read_image):
  """``read_image(image)`` on the file at `path`; unreadable -> one-line ValueError."""
  try:
    with Image.open(path) as image:
      return read_image(image)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    reason = str(error).splitlines()[0] if str(error) else ""
    raise ValueError(f"image_folder: cannot read image {path} "
                     f"({type(error).__name__}: {reason})") from error
