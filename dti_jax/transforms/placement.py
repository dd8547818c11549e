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
