"""Pictures of part segmentations: palette overlays, per-part maps, mean-colour renders.

Labels follow the original's visualiser (spec 10): 0 is background, parts are 1..K;
colours come from the PASCAL-VOC bit-interleaved colour map (0 black, 1 (128, 0, 0),
2 (0, 128, 0), 3 (128, 128, 0), 4 (0, 0, 128), ...), and an overlay is the mean of the
image and the colour image.
"""

import numpy as np


def voc_palette(count: int) -> np.ndarray:
  """[count, 3] float colours in [0, 1] of the PASCAL-VOC colour map."""
  palette = np.zeros((count, 3), np.float32)
  for label in range(count):
    value, colour = label, [0, 0, 0]
    for bit in range(8):
      for channel in range(3):
        colour[channel] |= ((value >> channel) & 1) << (7 - bit)
      value >>= 3
    palette[label] = colour
  return palette / 255.0


def labels_with_background(probabilities: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """[N, H, W] labels: argmax over [1 - m, m p_1, ..., m p_K] (0 = background)."""
  masks = masks.astype(np.float32)[..., None]
  stacked = np.concatenate([1.0 - masks, masks * probabilities], axis=-1)
  return np.argmax(stacked, axis=-1)


def overlay(images: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
  """[N, H, W, 3] (image + colour) / 2 for images in [0, 1] and labels in 0..num_labels-1."""
  return 0.5 * (images + voc_palette(num_labels)[labels])


def part_heat_maps(probabilities: np.ndarray, masks: np.ndarray) -> np.ndarray:
  """[N, K, H, W] each part's m p_k divided by its spatial maximum (the original's maps)."""
  maps = np.moveaxis(probabilities * masks[..., None], -1, 1)
  return maps / np.maximum(maps.max(axis=(2, 3), keepdims=True), 1e-8)


def mean_colour_render(images: np.ndarray, labels: np.ndarray, num_labels: int
                       ) -> np.ndarray:
  """[N, H, W, 3]: every pixel painted with the mean colour of its label in its image
  (background label 0 kept as the image): the piecewise-constant "reconstruction"."""
  out = images.copy()
  for index, (image, label) in enumerate(zip(images, labels)):
    for part in range(1, num_labels):
      selected = label == part
      if selected.any():
        out[index][selected] = image[selected].mean(axis=0)
  return out
