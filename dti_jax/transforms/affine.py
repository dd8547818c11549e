"""Affine transformation module (6 parameters).

The parameters are an offset from the identity: A = reshape(beta, (2, 3)) +
[[1, 0, 0], [0, 1, 0]], so beta = 0 is an exact identity. A maps output pixel
centres to input positions (`F.affine_grid` and `F.grid_sample` with
`align_corners=False`).
"""

import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.transforms.sampling import grid_sample

# A numpy constant, so importing this module does not start a JAX backend.
_IDENTITY_2X3 = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)


def affine_grid(theta: jax.Array, height: int, width: int) -> jax.Array:
  """Sampling grid of `F.affine_grid(theta, size, align_corners=False)`.

  Args:
    theta: [2, 3] matrix mapping output (x, y, 1) to input (x, y).
    height: output height H.
    width: output width W.

  Returns:
    [H, W, 2] grid, last axis (x, y), evaluated at the pixel centres
    x_j = (2j + 1) / W - 1 and y_i = (2i + 1) / H - 1.
  """
  xs = (2.0 * jnp.arange(width, dtype=jnp.float32) + 1.0) / width - 1.0
  ys = (2.0 * jnp.arange(height, dtype=jnp.float32) + 1.0) / height - 1.0
  grid_x, grid_y = jnp.meshgrid(xs, ys)  # [H, W] each, x along the width
  homogeneous = jnp.stack([grid_x, grid_y, jnp.ones_like(grid_x)], axis=-1)
  # Full float32: TF32 matmuls on GPUs would move the sampling points by ~1e-4.
  return jnp.matmul(homogeneous, theta.T, precision=jax.lax.Precision.HIGHEST)


def affine_matrix(beta: jax.Array) -> jax.Array:
  """[6] parameters (row-major offset from identity) -> [2, 3] matrix."""
  return beta.reshape(2, 3) + _IDENTITY_2X3


def warp_affine(
    image: jax.Array, beta: jax.Array, *, padding_mode: str
) -> jax.Array:
  """Warps one image with the affine module's parameters.

  Args:
    image: [H, W, C] image (a prototype).
    beta: [6] parameters; zero is the identity.
    padding_mode: 'border' or 'zeros'.

  Returns:
    [H, W, C] warped image: out(p) = image(A p) for every pixel centre p.
  """
  height, width, _ = image.shape
  grid = affine_grid(affine_matrix(beta), height, width)
  return grid_sample(image, grid, align_corners=False, padding_mode=padding_mode)


def invert_affine_params(beta: jax.Array) -> jax.Array:
  """Parameters of the inverse map, so that warping with them undoes `beta`.

  The 2x3 matrix is completed with the row [0, 0, 1], inverted, and its top
  two rows are turned back into an offset from the identity.

  Args:
    beta: [6] parameters.

  Returns:
    [6] parameters of the inverse affine map.
  """
  matrix = jnp.concatenate(
      [affine_matrix(beta), jnp.array([[0.0, 0.0, 1.0]], beta.dtype)], axis=0
  )
  inverse = jnp.linalg.inv(matrix)[:2]
  return (inverse - _IDENTITY_2X3).reshape(6)
