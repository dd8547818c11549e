"""Particles drawn on images, for Deep Latent Particles' pictures (numpy, no drawing library).

As the original's plots: each particle a circle of radius 3 pixels and thickness 1, in a
fixed 11-colour palette cycled by particle index; boxes for the object model's glimpses.
Positions are (row, col) in pixels.
"""

import numpy as np

PALETTE = np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in (
    "FF355E", "8FFE09", "1D5DEC", "FF9933", "FFFF66", "CCFF00", "AAF0D1", "FF6EFF",
    "FF00CC", "299617", "AF6E4D")], np.float32) / 255.0


def draw_circles(image: np.ndarray, centres: np.ndarray, radius: float | np.ndarray = 3.0,
                 colours: np.ndarray | None = None, strength: np.ndarray | None = None
                 ) -> np.ndarray:
  """[H, W, 3] in [0, 1] with a ring of width ~1 px around each of ``centres`` [K, 2].

  ``radius``: one for all rings or one per ring [K] (e.g. the posterior std in pixels).
  ``strength`` [K] in [0, 1] blends each ring with the image (e.g. obj_on), 1 = opaque.
  """
  out = np.array(image, np.float32, copy=True)
  height, width = out.shape[:2]
  rows, cols = np.mgrid[0:height, 0:width]
  colours = PALETTE if colours is None else colours
  radii = np.broadcast_to(np.asarray(radius, np.float64), (len(centres),))
  for k, (row, col) in enumerate(np.asarray(centres, np.float64)):
    ring = np.abs(np.hypot(rows - row, cols - col) - radii[k]) <= 0.5
    alpha = 1.0 if strength is None else float(strength[k])
    out[ring] = (1 - alpha) * out[ring] + alpha * colours[k % len(colours)]
  return out


def draw_boxes(image: np.ndarray, centres: np.ndarray, side: int,
               colours: np.ndarray | None = None) -> np.ndarray:
  """[H, W, 3] with the outline of a side x side box centred on each of ``centres``."""
  out = np.array(image, np.float32, copy=True)
  height, width = out.shape[:2]
  colours = PALETTE if colours is None else colours
  for k, (row, col) in enumerate(np.asarray(centres, np.float64)):
    top, left = int(round(row - side / 2)), int(round(col - side / 2))
    bottom, right = top + side - 1, left + side - 1
    colour = colours[k % len(colours)]
    for r in (top, bottom):
      if 0 <= r < height:
        out[r, max(left, 0):min(right, width - 1) + 1] = colour
    for c in (left, right):
      if 0 <= c < width:
        out[max(top, 0):min(bottom, height - 1) + 1, c] = colour
  return out
