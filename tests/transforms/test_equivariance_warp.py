"""The equivariance warp: identity, translation, and a perfectly equivariant predictor."""

import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.methods.unsup_parts import losses as part_losses
from dti_jax.methods.unsup_parts import equivariance


def _image(height=12, width=16, channels=3, seed=0):
  return np.random.default_rng(seed).random((1, height, width, channels)).astype(np.float32)


def test_zero_displacement_is_the_identity():
  points = equivariance.source_points(jax.random.key(0), sigma=0.0, max_rotation_degrees=0.0,
                                      scale_range=(1.0, 1.0), max_translation=0.0)
  grid = equivariance.sampling_grid(points, 12, 16)
  np.testing.assert_allclose(grid, equivariance.identity_grid(12, 16), atol=1e-5)
  image = _image()
  warped = equivariance.warp(jnp.asarray(image), grid[None])
  np.testing.assert_allclose(warped, image, atol=1e-5)


def test_translation_by_one_pixel_moves_the_image_by_one_pixel():
  width = 16
  shift = np.array([2.0 / (width - 1), 0.0], np.float32)   # one pixel in x
  points = equivariance.identity_points() + shift
  grid = equivariance.sampling_grid(points, 12, width)
  image = _image(width=width)
  warped = np.asarray(equivariance.warp(jnp.asarray(image), grid[None]))
  # Output column j reads input column j + 1; the last column reads outside: zeros.
  np.testing.assert_allclose(warped[0, :, :-1], image[0, :, 1:], atol=1e-5)
  np.testing.assert_allclose(warped[0, :, -1], 0.0, atol=1e-5)


def test_similarity_warp_matches_its_closed_form():
  """With sigma = 0 the spline reproduces the similarity exactly (TPS reproduces affine
  maps): the grid is rho R p + t at every pixel p."""
  key = jax.random.key(3)
  points = equivariance.source_points(key, sigma=0.0, max_rotation_degrees=60.0,
                                      scale_range=(0.7, 2.0), max_translation=0.1)
  identity = equivariance.identity_points()
  # Recover the similarity from two control points, then check every pixel.
  matrix, *_ = np.linalg.lstsq(np.c_[identity, np.ones(len(identity))], points, rcond=None)
  grid = np.asarray(equivariance.sampling_grid(points, 9, 11)).reshape(-1, 2)
  pixels = equivariance.identity_grid(9, 11).reshape(-1, 2)
  np.testing.assert_allclose(grid, np.c_[pixels, np.ones(len(pixels))] @ matrix, atol=2e-5)
  rotation_scale = matrix[:2]
  assert abs(rotation_scale[0, 0] - rotation_scale[1, 1]) < 1e-5   # a similarity
  scale = np.sqrt(np.linalg.det(rotation_scale))
  assert 1 / 2.0 - 1e-5 <= scale <= 1 / 0.7 + 1e-5


def test_equivariance_loss_of_an_equivariant_predictor_is_zero():
  """A per-pixel linear predictor commutes with any bilinear warp with zero padding, so
  the warped prediction equals the prediction of the warped image: L_e = 0."""
  images = jnp.asarray(np.random.default_rng(1).random((3, 20, 20, 3)), jnp.float32)
  weights = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4)), jnp.float32)
  predictor = lambda x: jnp.einsum("bhwc,ck->bhwk", x, weights)
  grids = equivariance.random_grids(jax.random.key(0), 3, 20, 20, sigma=0.01,
                                    max_rotation_degrees=60.0, scale_range=(0.7, 2.0),
                                    max_translation=0.1)
  masks = jnp.ones((3, 20, 20, 1))
  loss = part_losses.equivariance_loss(equivariance.warp(predictor(images), grids),
                                       predictor(equivariance.warp(images, grids)),
                                       equivariance.warp(masks, grids))
  assert abs(float(loss)) < 1e-5
  # ... and a predictor that is not equivariant (it reads absolute position) is not.
  ramp = jnp.linspace(0, 3, 20)[None, None, :, None]
  biased = lambda x: predictor(x) + ramp * jnp.array([1.0, 0, 0, -1.0])
  loss = part_losses.equivariance_loss(equivariance.warp(biased(images), grids),
                                       biased(equivariance.warp(images, grids)),
                                       equivariance.warp(masks, grids))
  assert float(loss) > 1e-3
