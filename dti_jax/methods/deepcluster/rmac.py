"""R-MAC descriptors (Tolias et al., ICLR 2016) as DeepCluster's ``eval_retrieval.py``
computes them from a conv feature map.

Regions: at levels l = 1..L, squares of side floor(2 min(H, W) / (l + 1)) on a grid of l
positions along the shorter side and l + m along the longer one, m in 1..6 chosen (once
per map) so that neighbouring squares of level 1 overlap closest to 40 %; centres are
spread evenly and rounded down, squares that cross the border are shifted back inside.
Each region is max-pooled (MAC), L2-normalised, PCA-whitened (learned on another
dataset), L2-normalised again, the regions summed and the sum L2-normalised.

The maps of a batch are zero-padded to one shape; the regions become row and column
masks, so that the pooling is one jitted max over masked maps. The whitening is fitted
in float64 numpy (the original: float32); a zero vector stays zero when normalised
(the original divides by its zero norm).
"""

import jax
import jax.numpy as jnp
import numpy as np

OVERLAP = 0.4                               # Tolias et al.'s target overlap of level 1
LONG_SIDE_EXTRA = np.arange(2, 8)           # candidate region counts along the longer side


def region_grid(height: int, width: int, levels: int) -> np.ndarray:
  """int64 [R, 4]: the (x, y, w, h) R-MAC regions of a height x width map, level 1 first,
  rows of each level top to bottom and left to right within a row."""
  if height < 1 or width < 1 or levels < 1:
    raise ValueError(f"region_grid: map {height}x{width} and levels={levels} must be positive")
  short, long = min(height, width), max(height, width)
  # Level-1 step along the longer side for each candidate count, in float32 as the original.
  steps = np.float32(long - short) / (LONG_SIDE_EXTRA.astype(np.float32) - 1)
  short32 = np.float32(short)
  overlap = (short32 * short32 - short32 * steps) / (short32 * short32)
  extra = int(np.argmin(np.abs(overlap - np.float32(OVERLAP)))) + 1
  extra_x = extra if height < width else 0
  extra_y = extra if height > width else 0
  regions = []
  for level in range(1, levels + 1):
    side = np.floor(2 * short / (level + 1))
    half = np.floor(side / 2 - 1)

    xs, ys = (_centres(extent, level + extra_dim, side, half)
              for extent, extra_dim in ((width, extra_x), (height, extra_y)))
    for y in ys:
      for x in xs:
        regions.append((x, y, side, side))
  regions = np.round(np.array(regions)).astype(np.int64)
  regions[:, 0] -= np.maximum(regions[:, 0] + regions[:, 2] - width, 0)
  regions[:, 1] -= np.maximum(regions[:, 1] + regions[:, 3] - height, 0)
  return regions


def _centres(extent: int, count: int, side: float, half: float) -> np.ndarray:
  """Top-left corners of ``count`` squares of ``side`` spread evenly over ``extent``."""
  spacing = (extent - side) / (count - 1) if count > 1 else 0.0
  return np.floor(half + spacing * np.arange(count)) - half


def max_regions(levels: int) -> int:
  """The most regions ``region_grid`` gives at ``levels`` (6 extra along the long side)."""
  return sum(level * (level + LONG_SIDE_EXTRA[-1] - 1) for level in range(1, levels + 1))


def region_masks(regions: np.ndarray, height: int, width: int, count: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(rows bool [count, height], cols bool [count, width], valid bool [count]) of
  ``regions`` (x, y, w, h) on a map padded to height x width; rows past R are invalid."""
  if len(regions) > count:
    raise ValueError(f"region_masks: {len(regions)} regions exceed count={count}")
  rows, cols = np.zeros((count, height), bool), np.zeros((count, width), bool)
  valid = np.zeros(count, bool)
  for r, (x, y, w, h) in enumerate(regions):
    if w < 1 or h < 1:
      raise ValueError(f"region_masks: region {(x, y, w, h)} is empty; the feature map is too "
                       "small for these levels (raise the image size or lower the levels)")
    rows[r, y:y + h], cols[r, x:x + w], valid[r] = True, True, True
  return rows, cols, valid


def region_max_pool(features: jax.Array, rows: jax.Array, cols: jax.Array) -> jax.Array:
  """[B, R, C]: the maximum of ``features`` [B, H, W, C] over each region's rows [B, R, H]
  and columns [B, R, W]; 0 for a region without rows or columns."""
  low = jnp.array(-jnp.inf, features.dtype)
  over_cols = jnp.max(jnp.where(cols[:, :, None, :, None], features[:, None], low), axis=3)
  pooled = jnp.max(jnp.where(rows[..., None], over_cols, low), axis=2)
  return jnp.where(jnp.isfinite(pooled), pooled, 0.0)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
  """x / ||x|| along ``axis``; zero vectors stay zero."""
  norm = np.linalg.norm(x, axis=axis, keepdims=True)
  return x / np.where(norm > 0, norm, 1.0)


def fit_whitening(x: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
  """(mean [C], projection [D, C]) of the original's PCA-whitening of the rows of ``x``:
  eigenvectors of the scatter matrix (X - mean)^T (X - mean), eigenvalues floored at
  1e-5 of the largest, the D = min(components, C) largest kept, each scaled by
  1 / sqrt(eigenvalue)."""
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"fit_whitening: need [N >= 2, C] vectors, got shape {x.shape}")
  mean = x.mean(axis=0)
  centred = x - mean
  values, vectors = np.linalg.eigh(centred.T @ centred)
  values = np.maximum(values, values.max() * 1e-5)
  order = np.argsort(values)[::-1][:components]
  return mean, (vectors[:, order] / np.sqrt(values[order])).T


def aggregate(regions: np.ndarray, valid: np.ndarray, mean: np.ndarray,
              projection: np.ndarray) -> np.ndarray:
  """float64 [N, D] R-MAC vectors from region MACs [N, R, C] (``valid`` [N, R]): L2,
  whitening, L2, sum over the valid regions, L2."""
  x = l2_normalize(np.asarray(regions, np.float64))
  x = l2_normalize((x - mean) @ projection.T)
  return l2_normalize(np.sum(x * np.asarray(valid, np.float64)[..., None], axis=1))
