"""Separable Gaussian maps: DTI-Clustering's SVHN pixel weights and DTI-Sprites' mask init."""

import numpy as np


def gaussian_map(height: int, width: int, std: float) -> np.ndarray:
  """w[i, j] = g(i) g(j), g(n) = exp(-((n - (N-1)/2) / std)^2 / 2); [H, W, 1] float32.

  Not normalised: the peak is exactly 1 only for odd sizes (scipy.signal.gaussian's
  symmetric window, as the originals). Built in float64, stored as float32 so it does
  not promote the losses it multiplies.
  """
  def window(n):
    x = np.arange(n, dtype=np.float64)
    return np.exp(-0.5 * ((x - (n - 1) / 2) / std) ** 2)
  return np.outer(window(height), window(width))[..., None].astype(np.float32)
