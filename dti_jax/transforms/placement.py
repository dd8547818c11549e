"""Affine-family modules that can change the output size (DTI-Sprites layer placement).

``position`` (3 parameters) and ``similarity`` (4) map output canvas pixel centres to
sprite coordinates with F.affine_grid / F.grid_sample (align_corners=False) semantics;
the output size is the canvas, so a small sprite is placed on a larger image. Padding is
'zeros' for sprites (transparent outside the sprite).
"""

import jax
import jax.numpy as jnp

from dti_jax.transforms.affine import affine_grid
from dti_jax.transforms.sampling import grid_sample


def position_matrix(beta: jax.Array) -> jax.Array:
  """(sigma, tx, ty) -> [[1 + e^sigma, 0, tx], [0, 1 + e^sigma, ty]].

  The grid maps canvas to sprite coordinates, so the sprite appears with width
  2 / (1 + e^sigma) in normalised canvas units (half the canvas at beta = 0), centred at
  -t / (1 + e^sigma); it can never exceed the canvas.
  """
  scale = 1.0 + jnp.exp(beta[0])
  return jnp.array([[scale, 0.0, beta[1]], [0.0, scale, beta[2]]])


def similarity_matrix(beta: jax.Array) -> jax.Array:
  """(a, b, tx, ty) -> [[1 + a, -b, tx], [b, 1 + a, ty]] (identity at beta = 0)."""
  a, b, tx, ty = beta[0], beta[1], beta[2], beta[3]
  return jnp.array([[1.0 + a, -b, tx], [b, 1.0 + a, ty]])


def warp_to_canvas(image: jax.Array, matrix: jax.Array, height: int, width: int, *,
                   padding_mode: str = "zeros") -> jax.Array:
  """[h, w, C] sprite -> [height, width, C] canvas through a [2, 3] canvas-to-sprite map."""
  grid = affine_grid(matrix, height, width)
  return grid_sample(image, grid, align_corners=False, padding_mode=padding_mode)


def interpolation_taps(scale: jax.Array, shift: jax.Array, out_size: int, in_size: int):
  """The two bilinear taps of every output pixel of the 1-D map u -> scale * u + shift.

  Output pixel centres u = (2i + 1) / out_size - 1 are read at input pixel
  ((g + 1) in_size - 1) / 2 (align_corners=False). Returns (low, high, w_low, w_high),
  each [out_size]: indices clipped into the input, and weights zeroed for taps that
  fall outside it (zero padding).
  """
  u = (2.0 * jnp.arange(out_size, dtype=jnp.float32) + 1.0) / out_size - 1.0
  position = ((scale * u + shift + 1.0) * in_size - 1.0) * 0.5
  low = jnp.floor(position)
  frac = position - low
  low = low.astype(jnp.int32)
  high = low + 1
  w_low = jnp.where((low >= 0) & (low < in_size), 1.0 - frac, 0.0)
  w_high = jnp.where((high >= 0) & (high < in_size), frac, 0.0)
  return (jnp.clip(low, 0, in_size - 1), jnp.clip(high, 0, in_size - 1), w_low, w_high)


def place_with_position(image: jax.Array, beta: jax.Array, height: int,
                        width: int) -> jax.Array:
  """`warp_to_canvas(image, position_matrix(beta), height, width)` with zero padding.

  The position warp is axis-aligned, so bilinear sampling separates into a row pass
  and a column pass of two-tap gathers of whole rows / columns, which is several
  times faster on CPU than gathering the four corners of every pixel.
  """
  scale = 1.0 + jnp.exp(beta[0])
  y0, y1, wy0, wy1 = interpolation_taps(scale, beta[2], height, image.shape[0])
  x0, x1, wx0, wx1 = interpolation_taps(scale, beta[1], width, image.shape[1])
  rows = image[y0] * wy0[:, None, None] + image[y1] * wy1[:, None, None]
  return rows[:, x0] * wx0[None, :, None] + rows[:, x1] * wx1[None, :, None]


def source_positions(scale: jax.Array, shift: jax.Array, out_size: int,
                     in_size: int) -> jax.Array:
  """[out_size] input pixel coordinates read by the 1-D map u -> scale * u + shift.

  Same convention as `interpolation_taps`: output pixel centres u = (2i + 1) / out_size
  - 1, read at input pixel ((g + 1) in_size - 1) / 2 (align_corners=False), so pixel 0
  of the input is at coordinate 0.
  """
  u = (2.0 * jnp.arange(out_size, dtype=jnp.float32) + 1.0) / out_size - 1.0
  return ((scale * u + shift + 1.0) * in_size - 1.0) * 0.5


def interpolation_matrix(scale: jax.Array, shift: jax.Array, out_size: int,
                         in_size: int) -> jax.Array:
  """[out_size, in_size] bilinear weights of the 1-D map u -> scale * u + shift.

  Row i holds max(0, 1 - |p_i - j|) for input pixel j, with p_i from `source_positions`:
  the two taps of `interpolation_taps` written densely, zero outside the input (zero
  padding). An axis-aligned warp is then W_y X W_x^T, two small matmuls, which is
  faster than a gather on CPU and differentiable in scale and shift like grid_sample.
  """
  position = source_positions(scale, shift, out_size, in_size)
  grid = jnp.arange(in_size, dtype=jnp.float32)
  return jnp.maximum(0.0, 1.0 - jnp.abs(position[:, None] - grid[None, :]))
