"""The random warp of part discovery's equivariance loss (SCOPS' ``RandTPS``, affine mode).

A thin-plate spline on the 5 x 5 control grid {-1, -0.5, 0, 0.5, 1}^2: each source
point is its target point plus U(-sigma, sigma)^2 jitter, then moved by a random
similarity rho R(theta) s + t. The spline maps every output pixel (align_corners=True
coordinates) to a source position, read with bilinear sampling and zero padding. The
spline is linear in the source points, so the grid is `tps_basis` (built once on the
host) times the [25, 2] source points. One warp per image; within a step the same grid
warps the jittered image, the foreground mask and the detached logits.

The zoom range is given as the original's config gives it (random_scale 0.7 .. 2.0):
the map goes target -> source, so rho is drawn in [1 / 2.0, 1 / 0.7].
"""

import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.transforms.sampling import grid_sample
from dti_jax.transforms.tps import control_points, tps_basis

GRID_SIZE = 5


def source_points(key: jax.Array, *, sigma: float, max_rotation_degrees: float,
                  scale_range: tuple[float, float], max_translation: float) -> jax.Array:
  """[25, 2] (x, y) source control points of one random warp."""
  jitter_key, angle_key, scale_key, shift_key = jax.random.split(key, 4)
  targets = jnp.asarray(control_points(GRID_SIZE))
  points = targets + jax.random.uniform(jitter_key, targets.shape, minval=-sigma,
                                        maxval=sigma)
  theta = jnp.deg2rad(jax.random.uniform(angle_key, (), minval=-max_rotation_degrees,
                                         maxval=max_rotation_degrees))
  low, high = scale_range
  rho = jax.random.uniform(scale_key, (), minval=1.0 / high, maxval=1.0 / low)
  shift = jax.random.uniform(shift_key, (2,), minval=-max_translation,
                             maxval=max_translation)
  rotation = rho * jnp.array([[jnp.cos(theta), -jnp.sin(theta)],
                              [jnp.sin(theta), jnp.cos(theta)]])
  return points @ rotation.T + shift


def sampling_grid(points: jax.Array, height: int, width: int) -> jax.Array:
  """[H, W, 2] normalised source (x, y) of every output pixel for source ``points``."""
  basis = jnp.asarray(tps_basis(GRID_SIZE, height, width))
  grid = jnp.matmul(basis, points, precision=jax.lax.Precision.HIGHEST)
  return grid.reshape(height, width, 2)


def identity_points() -> jax.Array:
  return jnp.asarray(control_points(GRID_SIZE))


def random_grids(key: jax.Array, batch: int, height: int, width: int, *, sigma: float,
                 max_rotation_degrees: float, scale_range: tuple[float, float],
                 max_translation: float) -> jax.Array:
  """[B, H, W, 2] sampling grids of ``batch`` independent random warps."""
  points = jax.vmap(lambda k: source_points(
      k, sigma=sigma, max_rotation_degrees=max_rotation_degrees, scale_range=scale_range,
      max_translation=max_translation))(jax.random.split(key, batch))
  return jax.vmap(lambda p: sampling_grid(p, height, width))(points)


def warp(images: jax.Array, grids: jax.Array) -> jax.Array:
  """[B, H, W, C] images read at ``grids`` (bilinear, align_corners=True, zeros outside)."""
  return jax.vmap(lambda image, grid: grid_sample(image, grid, align_corners=True,
                                                  padding_mode="zeros"))(images, grids)


def identity_grid(height: int, width: int) -> np.ndarray:
  """[H, W, 2] the align_corners=True grid of the identity map, for tests."""
  ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
  return np.stack([xs, ys], axis=-1).astype(np.float32)
