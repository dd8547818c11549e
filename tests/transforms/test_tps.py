"""Thin-plate spline basis and warp, including the faithful zoom-out at zero."""

import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.transforms import control_points, grid_sample, tps_basis, warp_tps


def linspace_grid(height, width):
  ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width),
                       indexing="ij")
  return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def test_control_points_row_major_x_fastest():
  points = control_points(3)
  np.testing.assert_allclose(points[:3], [[-1, -1], [0, -1], [1, -1]])
  np.testing.assert_allclose(points[3], [-1, 0])


@pytest.mark.parametrize("grid_size,height,width", [(4, 10, 10), (3, 9, 13)])
def test_basis_reproduces_affine_functions(grid_size, height, width):
  basis = tps_basis(grid_size, height, width)
  assert basis.shape == (height * width, grid_size**2)
  np.testing.assert_allclose(basis.sum(axis=1), 1.0, atol=1e-5)
  matrix = np.array([[0.9, -0.3], [0.2, 1.1]])
  offset = np.array([0.1, -0.25])
  points = control_points(grid_size) @ matrix.T + offset
  np.testing.assert_allclose(basis @ points,
                             linspace_grid(height, width) @ matrix.T + offset,
                             atol=1e-5)


def test_basis_interpolates_control_points():
  # linspace(-1, 1, 10) contains linspace(-1, 1, 4), so the rows at the
  # control points must be one-hot: no smoothing term.
  basis = tps_basis(4, 10, 10)
  for n, (col, row) in enumerate([(c, r) for r in (0, 3, 6, 9) for c in (0, 3, 6, 9)]):
    np.testing.assert_allclose(basis[row * 10 + col], np.eye(16)[n], atol=1e-5)


def test_basis_is_cached_and_read_only():
  assert tps_basis(4, 8, 8) is tps_basis(4, 8, 8)
  assert not tps_basis(4, 8, 8).flags.writeable


def test_zero_params_sample_the_corner_aligned_grid():
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.uniform(size=(11, 9, 2)).astype(np.float32))
  grid = jnp.asarray(linspace_grid(11, 9).reshape(11, 9, 2).astype(np.float32))
  expected = grid_sample(image, grid, align_corners=False, padding_mode="border")
  got = warp_tps(image, jnp.zeros(32), grid_size=4, padding_mode="border")
  np.testing.assert_allclose(got, expected, atol=1e-5)
  assert np.max(np.abs(np.asarray(got) - np.asarray(image))) > 0.05  # not identity


def test_zero_params_zoom_out_closed_form():
  # On a horizontal ramp, output column j reads input position
  # j * W / (W - 1) - 1/2 (clamped by the border padding).
  width = 8
  ramp = np.tile(np.arange(width, dtype=np.float32), (5, 1))[..., None]
  got = warp_tps(jnp.asarray(ramp), jnp.zeros(32), grid_size=4, padding_mode="border")
  expected = np.clip(np.arange(width) * width / (width - 1) - 0.5, 0, width - 1)
  np.testing.assert_allclose(got[2, :, 0], expected, atol=1e-4)


def test_zero_params_keep_centre_pixel_of_odd_image():
  rng = np.random.default_rng(1)
  image = jnp.asarray(rng.uniform(size=(9, 9, 1)).astype(np.float32))
  got = warp_tps(image, jnp.zeros(32), grid_size=4, padding_mode="zeros")
  np.testing.assert_allclose(got[4, 4], image[4, 4], atol=1e-5)


def test_translating_all_control_points_translates_the_grid():
  # Moving every source point by d moves the whole sampling grid by d.
  rng = np.random.default_rng(2)
  image = jnp.asarray(rng.uniform(size=(8, 10, 1)).astype(np.float32))
  shift = np.array([0.1, -0.2], np.float32)
  beta = jnp.asarray(np.tile(shift, 16))
  grid = jnp.asarray((linspace_grid(8, 10) + shift).reshape(8, 10, 2)
                     .astype(np.float32))
  expected = grid_sample(image, grid, align_corners=False, padding_mode="zeros")
  got = warp_tps(image, beta, grid_size=4, padding_mode="zeros")
  np.testing.assert_allclose(got, expected, atol=1e-5)
