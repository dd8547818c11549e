"""Thin-plate spline transformation module (2 * grid_size**2 parameters).

A thin-plate spline (no smoothing term) maps the regular g x g control grid
P to predicted source points Q = P + delta and is evaluated at every output
pixel. Because the spline is linear in Q, the whole map collapses to one
precomputed matrix: grid = G (P + delta), with G of shape [H * W, N].

Faithful quirk: the target grid is corner-aligned (linspace(-1, 1, W)) but is
read with `align_corners=False`, so beta = 0 is NOT the identity. It is a
uniform zoom-out by (W - 1) / W about the centre (output pixel j reads input
position j * W / (W - 1) - 1/2) plus bilinear smoothing, as in the original.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.transforms.sampling import grid_sample


def _radial_kernel(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
  """U(d^2) = 1/2 d^2 log d^2 (= r^2 log r) between [M, 2] and [N, 2] points.

  Returns [M, N]; U(0) = 0, the limit the original obtains by replacing NaN.
  """
  diff = points[:, None, :] - centres[None, :, :]
  squared = np.sum(diff * diff, axis=-1)
  with np.errstate(divide="ignore", invalid="ignore"):
    values = 0.5 * squared * np.log(squared)
  return np.where(squared > 0.0, values, 0.0)


def control_points(grid_size: int) -> np.ndarray:
  """Regular control grid, row-major with x fastest.

  Args:
    grid_size: g, the number of control points per side.

  Returns:
    [g * g, 2] float32 array; point n = r * g + c is (l[c], l[r]) with
    l = linspace(-1, 1, g).
  """
  line = np.linspace(-1.0, 1.0, grid_size)
  grid_y, grid_x = np.meshgrid(line, line, indexing="ij")
  return np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float32)


@functools.lru_cache(maxsize=None)
def tps_basis(grid_size: int, height: int, width: int) -> np.ndarray:
  """Matrix G such that the TPS sampling grid is G @ (source control points).

  Built once on the host in float64 (L is badly conditioned for float32 and
  only needs inverting once), stored as float32.

  Args:
    grid_size: g, the number of control points per side (N = g * g).
    height: image height H.
    width: image width W.

  Returns:
    [H * W, N] read-only float32 array. Row i * W + j gives the spline's
    interpolation weights at target (linspace(-1, 1, W)[j],
    linspace(-1, 1, H)[i]). Rows sum to 1 and reproduce affine functions.
  """
  points = control_points(grid_size).astype(np.float64)
  n_points = points.shape[0]
  system = np.zeros((n_points + 3, n_points + 3))
  system[:n_points, :n_points] = _radial_kernel(points, points)
  system[:n_points, n_points] = 1.0
  system[n_points, :n_points] = 1.0
  system[:n_points, n_points + 1:] = points
  system[n_points + 1:, :n_points] = points.T
  system_inverse = np.linalg.inv(system)

  xs = np.linspace(-1.0, 1.0, width)
  ys = np.linspace(-1.0, 1.0, height)
  target_y, target_x = np.meshgrid(ys, xs, indexing="ij")
  targets = np.stack([target_x.ravel(), target_y.ravel()], axis=1)
  target_repr = np.concatenate(
      [_radial_kernel(targets, points), np.ones((targets.shape[0], 1)), targets],
      axis=1,
  )
  # Only the first N rows of [Q; 0] are non-zero, hence the column slice.
  basis = (target_repr @ system_inverse[:, :n_points]).astype(np.float32)
  basis.setflags(write=False)  # shared through the cache
  return basis


def warp_tps(
    image: jax.Array, beta: jax.Array, *, grid_size: int, padding_mode: str
) -> jax.Array:
  """Warps one image with the TPS module's parameters.

  Args:
    image: [H, W, C] image (a prototype).
    beta: [2 * N] displacements of the control points, (x, y) interleaved
      over the row-major control grid.
    grid_size: g, with N = g * g.
    padding_mode: 'border' or 'zeros'.

  Returns:
    [H, W, C] warped image (zoomed out by (W - 1) / W at beta = 0, see the
    module docstring).
  """
  height, width, _ = image.shape
  basis = jnp.asarray(tps_basis(grid_size, height, width))
  source_points = jnp.asarray(control_points(grid_size)) + beta.reshape(-1, 2)
  grid = jnp.matmul(basis, source_points,  # full float32, also on GPUs (no TF32)
                    precision=jax.lax.Precision.HIGHEST).reshape(height, width, 2)
  return grid_sample(image, grid, align_corners=False, padding_mode=padding_mode)
