"""Projective (homography) transformation module (9 parameters).

Reproduces kornia 0.3.0 `homography_warp` as the original uses it: the output
grid is corner-aligned (linspace(-1, 1, W) by linspace(-1, 1, H)) and is read
with `align_corners=True`, which makes beta = 0 an exact identity.
"""

import jax
import jax.numpy as jnp

from dti_jax.transforms.sampling import grid_sample

# kornia's `convert_points_from_homogeneous` divides by z only where |z| > eps
# and leaves (u, v) unchanged elsewhere.
_HOMOGENEOUS_EPS = 1e-8


def homography_matrix(beta: jax.Array) -> jax.Array:
  """[9] parameters (row-major offset from identity) -> [3, 3] matrix."""
  return beta.reshape(3, 3) + jnp.eye(3, dtype=beta.dtype)


def homography_grid(matrix: jax.Array, height: int, width: int) -> jax.Array:
  """Corner-aligned output grid mapped through a homography.

  Args:
    matrix: [3, 3] homography mapping output (x, y, 1) to input (u, v, z).
    height: output height H.
    width: output width W.

  Returns:
    [H, W, 2] grid of (u / z, v / z), or (u, v) where |z| <= 1e-8.
  """
  xs = jnp.linspace(-1.0, 1.0, width, dtype=jnp.float32)
  ys = jnp.linspace(-1.0, 1.0, height, dtype=jnp.float32)
  grid_x, grid_y = jnp.meshgrid(xs, ys)
  homogeneous = jnp.stack([grid_x, grid_y, jnp.ones_like(grid_x)], axis=-1)
  mapped = jnp.matmul(homogeneous, matrix.T,
                      precision=jax.lax.Precision.HIGHEST)  # [H, W, 3], full float32
  z = mapped[..., 2:]
  # Replacing small z before the division keeps the unused branch of the
  # `where` finite, so its gradient cannot turn into NaN.
  is_finite_point = jnp.abs(z) > _HOMOGENEOUS_EPS
  scale = jnp.where(is_finite_point, 1.0 / jnp.where(is_finite_point, z, 1.0), 1.0)
  return mapped[..., :2] * scale


def warp_projective(
    image: jax.Array, beta: jax.Array, *, padding_mode: str
) -> jax.Array:
  """Warps one image with the projective module's parameters.

  Args:
    image: [H, W, C] image (a prototype).
    beta: [9] parameters; zero is the identity.
    padding_mode: 'border' or 'zeros'.

  Returns:
    [H, W, C] warped image.
  """
  height, width, _ = image.shape
  grid = homography_grid(homography_matrix(beta), height, width)
  return grid_sample(image, grid, align_corners=True, padding_mode=padding_mode)


def invert_projective_params(beta: jax.Array) -> jax.Array:
  """Parameters of the inverse homography (matrix inverse, no normalisation).

  Args:
    beta: [9] parameters.

  Returns:
    [9] parameters whose warp undoes the warp with `beta`.
  """
  inverse = jnp.linalg.inv(homography_matrix(beta))
  return (inverse - jnp.eye(3, dtype=beta.dtype)).reshape(9)
