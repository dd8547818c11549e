"""Affine and projective warps: identity, one-pixel shifts, inverses."""

import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.transforms import (
    affine_grid,
    invert_affine_params,
    invert_projective_params,
    warp_affine,
    warp_projective,
)
from dti_jax.transforms.projective import homography_grid

HEIGHT, WIDTH = 10, 12


def random_image(seed=0, channels=2):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.uniform(size=(HEIGHT, WIDTH, channels)).astype(np.float32))


def smooth_image(height=24, width=24):
  """Low-frequency image, so bilinear resampling loses little."""
  ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width),
                       indexing="ij")
  image = 0.5 + 0.3 * np.sin(2.0 * xs + 1.0) * np.cos(1.5 * ys - 0.5)
  return jnp.asarray(image[..., None].astype(np.float32))


def test_affine_grid_is_pixel_centres_at_identity():
  grid = affine_grid(jnp.array([[1.0, 0, 0], [0, 1.0, 0]]), HEIGHT, WIDTH)
  np.testing.assert_allclose(grid[0, :, 0], (2 * np.arange(WIDTH) + 1) / WIDTH - 1,
                             atol=1e-7)
  np.testing.assert_allclose(grid[:, 0, 1], (2 * np.arange(HEIGHT) + 1) / HEIGHT - 1,
                             atol=1e-7)


@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_zero_params_are_exact_identity(padding_mode):
  image = random_image()
  np.testing.assert_allclose(
      warp_affine(image, jnp.zeros(6), padding_mode=padding_mode), image, atol=1e-6)
  np.testing.assert_allclose(
      warp_projective(image, jnp.zeros(9), padding_mode=padding_mode), image,
      atol=1e-6)


def test_affine_one_pixel_translation():
  # out(x) = in(x + 2/W): output column j shows input column j + 1.
  image = random_image(1)
  beta = jnp.zeros(6).at[2].set(2.0 / WIDTH)
  out = warp_affine(image, beta, padding_mode="border")
  np.testing.assert_allclose(out[:, :-1], image[:, 1:], atol=1e-5)
  np.testing.assert_allclose(out[:, -1], image[:, -1], atol=1e-5)  # clamped


def test_affine_one_pixel_vertical_translation_with_zeros():
  image = random_image(2)
  beta = jnp.zeros(6).at[5].set(-2.0 / HEIGHT)  # out row i shows row i - 1
  out = warp_affine(image, beta, padding_mode="zeros")
  np.testing.assert_allclose(out[1:], image[:-1], atol=1e-5)
  np.testing.assert_allclose(out[0], 0.0, atol=1e-6)


def test_projective_one_pixel_translation():
  # Corner-aligned grid read with align_corners=True: one pixel is 2/(W-1).
  image = random_image(3)
  beta = jnp.zeros(9).at[2].set(2.0 / (WIDTH - 1))
  out = warp_projective(image, beta, padding_mode="border")
  np.testing.assert_allclose(out[:, :-1], image[:, 1:], atol=1e-5)


def test_projective_division_by_z():
  # Scaling the whole homography does not change the map (division by z).
  image = random_image(4)
  beta = jnp.array([0.05, -0.1, 0.1, 0.08, 0.02, -0.05, 0.1, -0.05, 0.0])
  scaled = 2.0 * (beta + jnp.eye(3).reshape(9)) - jnp.eye(3).reshape(9)
  np.testing.assert_allclose(
      warp_projective(image, beta, padding_mode="zeros"),
      warp_projective(image, scaled, padding_mode="zeros"), atol=1e-5)


def test_affine_inverse_params_compose_to_identity():
  beta = jnp.array([0.1, -0.2, 0.3, 0.15, -0.1, -0.2])
  inverse = invert_affine_params(beta)
  matrix = np.vstack([np.reshape(beta, (2, 3)) + np.eye(2, 3), [0, 0, 1]])
  inverse_matrix = np.vstack([np.reshape(inverse, (2, 3)) + np.eye(2, 3), [0, 0, 1]])
  np.testing.assert_allclose(matrix @ inverse_matrix, np.eye(3), atol=1e-6)


def test_projective_inverse_params_compose_to_identity():
  beta = jnp.array([0.1, -0.2, 0.3, 0.15, -0.1, -0.2, 0.05, 0.02, 0.1])
  inverse = invert_projective_params(beta)
  product = (np.reshape(beta, (3, 3)) + np.eye(3)) @ (np.reshape(inverse, (3, 3))
                                                      + np.eye(3))
  np.testing.assert_allclose(product, np.eye(3), atol=1e-6)


def test_affine_warp_then_inverse_restores_interior():
  image = smooth_image()
  angle = 0.2
  beta = jnp.array([np.cos(angle) * 0.9 - 1, -np.sin(angle), 0.1,
                    np.sin(angle), np.cos(angle) * 0.9 - 1, -0.05])
  warped = warp_affine(image, beta, padding_mode="border")
  restored = warp_affine(warped, invert_affine_params(beta), padding_mode="border")
  np.testing.assert_allclose(restored[6:-6, 6:-6], image[6:-6, 6:-6], atol=0.006)


def test_projective_warp_then_inverse_restores_interior():
  image = smooth_image()
  beta = jnp.array([0.05, -0.1, 0.05, 0.08, 0.02, -0.05, 0.1, -0.05, 0.0])
  warped = warp_projective(image, beta, padding_mode="border")
  restored = warp_projective(warped, invert_projective_params(beta),
                             padding_mode="border")
  np.testing.assert_allclose(restored[6:-6, 6:-6], image[6:-6, 6:-6], atol=0.006)


def test_homography_grid_divides_by_z_except_near_zero():
  matrix = np.array([[1.1, 0.2, 0.1], [-0.1, 0.9, 0.05], [0.2, -0.1, 1.0]],
                    np.float32)
  xs, ys = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 4))
  uvz = np.stack([xs, ys, np.ones_like(xs)], -1) @ matrix.T
  np.testing.assert_allclose(homography_grid(jnp.asarray(matrix), 4, 5),
                             uvz[..., :2] / uvz[..., 2:], atol=1e-6)
  # z = 0 everywhere: kornia keeps (u, v) undivided.
  flat = matrix.copy()
  flat[2] = 0.0
  np.testing.assert_allclose(homography_grid(jnp.asarray(flat), 4, 5),
                             uvz[..., :2], atol=1e-6)
