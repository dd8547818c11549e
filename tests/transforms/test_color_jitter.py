"""Colour jitter: identity settings, HSV round trip, grayscale, hue rotation."""

import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.methods.unsup_parts import color_jitter


def _image(seed=0):
  return jnp.asarray(np.random.default_rng(seed).random((6, 7, 3)), jnp.float32)


def test_zero_strength_jitter_is_the_identity():
  image = _image()
  out = color_jitter.color_jitter(jax.random.key(0), image, brightness=0.0, contrast=0.0,
                                  saturation=0.0, hue=0.0, p_jitter=1.0, p_grayscale=0.0)
  np.testing.assert_allclose(out, image, atol=1e-5)


def test_hsv_round_trip_and_hue_rotation():
  image = _image(1)
  np.testing.assert_allclose(color_jitter.hsv_to_rgb(color_jitter.rgb_to_hsv(image)), image,
                             atol=1e-5)
  red = jnp.array([[[1.0, 0.0, 0.0]]])
  np.testing.assert_allclose(color_jitter.adjust_hue(red, 1 / 3), [[[0.0, 1.0, 0.0]]],
                             atol=1e-5)


def test_grayscale_and_brightness():
  image = _image(2)
  out = color_jitter.color_jitter(jax.random.key(0), image, brightness=0.3, contrast=0.3,
                                  saturation=0.2, hue=0.2, p_jitter=0.0, p_grayscale=1.0)
  gray = 0.2989 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]
  for channel in range(3):
    np.testing.assert_allclose(out[..., channel], gray, atol=1e-6)
  np.testing.assert_allclose(color_jitter.adjust_brightness(image, 0.5), image * 0.5)
  # Contrast blends with the mean grey level; saturation 0 gives the grey image.
  np.testing.assert_allclose(color_jitter.adjust_contrast(image, 0.0),
                             jnp.broadcast_to(gray.mean(), image.shape), atol=1e-6)
  np.testing.assert_allclose(color_jitter.adjust_saturation(image, 0.0)[..., 0], gray,
                             atol=1e-6)


def test_batch_draws_differ_per_image_and_stay_in_range():
  images = jnp.broadcast_to(_image(3), (8, 6, 7, 3))
  out = color_jitter.color_jitter_batch(jax.random.key(5), images, brightness=0.3,
                                        contrast=0.3, saturation=0.2, hue=0.2, p_jitter=1.0,
                                        p_grayscale=0.0)
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert len({round(float(x), 5) for x in out.mean(axis=(1, 2, 3))}) == 8
