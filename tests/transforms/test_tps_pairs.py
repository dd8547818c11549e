"""DVE's TPS Warper: identity at zero, translations in pixels, pairs and their statistics."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.methods.dlp import tps_pairs


def _image(side=20, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (side, side, 3)).astype(np.float32) / 255.0


def test_features_hold_the_kernel_and_the_affine_columns():
  features = tps_pairs.tps_features(7, 5)
  assert features.shape == (35, 103)
  np.testing.assert_allclose(features[:, 100], 1.0)
  np.testing.assert_allclose(features[:5, 101], np.linspace(-1, 1, 5), atol=1e-6)  # x fastest
  np.testing.assert_allclose(features[::5, 102], np.linspace(-1, 1, 7), atol=1e-6)
  # Pixel (-1, -1) is control point 0: U(0) = 0; control point 1 is at x = -1 + 2/9.
  d2 = (2.0 / 9.0) ** 2
  np.testing.assert_allclose(features[0, :2], [0.0, d2 * np.log(d2 + 1e-5)], atol=1e-7)


def test_zero_parameters_are_the_identity():
  image = _image()
  warp = jax.jit(tps_pairs.warp)
  np.testing.assert_allclose(warp(jnp.asarray(image), tps_pairs.identity_weights()), image,
                             atol=1e-4)
  zero = dict(warp_sd_all=0.0, warp_sd_subset=0.0, trans_sd=0.0, scale_sd=0.0,
              rot_sd_degrees=0.0)
  pair = jax.jit(functools.partial(tps_pairs.tps_pair, **zero))
  view_a, view_b = pair(jax.random.key(0), jnp.asarray(image)[None])
  # 8-bit values survive the round trip (up to float rounding of k / 255).
  np.testing.assert_allclose(np.asarray(view_a[0]), image, atol=1e-6)
  np.testing.assert_allclose(np.asarray(view_b[0]), image, atol=1e-6)


def test_translation_moves_by_the_expected_pixels():
  image, side = _image(), 20
  # align_corners=True: a shift t in normalised units is t (side - 1) / 2 pixels.
  tx, ty = 2.0 * 3 / (side - 1), -2.0 * 2 / (side - 1)
  weights = tps_pairs.identity_weights().at[100:].set(
      tps_pairs.affine_weights(tx, ty, 1.0, 0.0))
  out = np.asarray(jax.jit(tps_pairs.warp)(jnp.asarray(image), weights))
  # Output (r, c) reads input (r - 2, c + 3); outside the input is zero.
  np.testing.assert_allclose(out[2:, :-3], image[:-2, 3:], atol=1e-4)
  np.testing.assert_allclose(out[:2], 0.0, atol=1e-4)
  np.testing.assert_allclose(out[:, -3:], 0.0, atol=1e-4)


def test_random_weights_follow_the_warper():
  keys = jax.random.split(jax.random.key(1), 4000)
  weights = jax.jit(jax.vmap(tps_pairs.random_weights))(keys)
  weights = np.asarray(weights)
  tx, ty = weights[:, 100, 0], weights[:, 100, 1]
  assert 0.09 < tx.std() < 0.11 and 0.09 < ty.std() < 0.11
  scale = np.hypot(weights[:, 101, 0], weights[:, 102, 0])
  assert 0.09 < scale.std() < 0.11 and abs(scale.mean() - 1.0) < 0.01
  degrees = np.degrees(np.arctan2(weights[:, 102, 0], weights[:, 101, 0]))
  assert 4.5 < degrees.std() < 5.5
  # Half the radial weights ~ N(0, 0.01^2), half ~ N(0, 0.001^2): P(|w| > 0.004) ~ 0.345.
  assert 0.32 < np.mean(np.abs(weights[:, :100]) > 0.004) < 0.37


def test_view_b_is_warped_further_than_view_a():
  images = jnp.asarray(np.stack([_image(40, seed) for seed in range(4)]))
  smooth = jax.image.resize(images[:, ::4, ::4], images.shape, "linear")  # small shifts matter less
  view_a, view_b = jax.jit(tps_pairs.tps_pair)(jax.random.key(2), smooth)
  assert view_a.shape == view_b.shape == images.shape
  error_a = float(jnp.abs(view_a - smooth).mean())
  error_b = float(jnp.abs(view_b - smooth).mean())
  assert error_a < error_b
  levels = np.asarray(view_b) * 255
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)  # 8-bit
  assert tps_pairs.crop_border(view_a, 4).shape == (4, 32, 32, 3)
