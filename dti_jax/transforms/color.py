"""Colour transformation module (2C parameters): a per-channel affine map.

The parameters are read as C interleaved pairs (a_0, b_0, a_1, b_1, ...) and
applied as out_c = (1 + a_c) * x_c + b_c: diagonal only (no channel mixing),
no clamp, exact identity at beta = 0.
"""

import jax
import jax.numpy as jnp


def _scale_and_offset(beta: jax.Array) -> tuple[jax.Array, jax.Array]:
  pairs = beta.reshape(-1, 2)  # [C, 2], rows (a_c, b_c)
  return 1.0 + pairs[:, 0], pairs[:, 1]


def apply_color(image: jax.Array, beta: jax.Array) -> jax.Array:
  """Applies out_c = (1 + a_c) x_c + b_c.

  Args:
    image: [H, W, C] image.
    beta: [2C] parameters, interleaved (a_c, b_c) pairs.

  Returns:
    [H, W, C] image.
  """
  scale, offset = _scale_and_offset(beta)
  return image * scale + offset


def invert_color_params(beta: jax.Array) -> jax.Array:
  """Parameters of the inverse map x_c = (out_c - b_c) / (1 + a_c).

  Args:
    beta: [2C] parameters.

  Returns:
    [2C] parameters (a'_c, b'_c) with 1 + a'_c = 1 / (1 + a_c) and
    b'_c = -b_c / (1 + a_c).
  """
  scale, offset = _scale_and_offset(beta)
  inverse_scale = 1.0 / scale
  pairs = (inverse_scale - 1.0, -offset * inverse_scale)
  return jnp.stack(pairs, axis=1).reshape(-1)
