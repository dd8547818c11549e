"""The Sobel front end: closed-form gradients of ramps and steps, zero padding, grayscale."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dti_jax.ops import sobel as sobel_lib


def test_horizontal_ramp_has_constant_gx_and_zero_gy_inside():
  ramp = jnp.tile(jnp.arange(6.0)[None, :], (5, 1))[None, :, :, None]   # value = column
  out = np.asarray(sobel_lib.sobel(ramp))
  # Cross-correlation with [[1,0,-1],[2,0,-2],[1,0,-1]]: left minus right = -2 per row, x4.
  np.testing.assert_allclose(out[0, 1:-1, 1:-1, 0], -8.0)
  np.testing.assert_allclose(out[0, 1:-1, 1:-1, 1], 0.0)
  # Zero padding: the top row has no upper neighbours, so gy = -(r[j-1] + 2 r[j] + r[j+1]).
  np.testing.assert_allclose(out[0, 0, 1:-1, 1], -4.0 * np.arange(1, 5))


def test_matches_scipy_correlate_with_zero_padding_on_the_channel_mean():
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, 7, 9, 3)).astype(np.float32)
  out = np.asarray(sobel_lib.sobel(jnp.asarray(images)))
  gray = images.mean(-1)
  for b in range(2):
    for channel, kernel in enumerate((sobel_lib.SOBEL_X, sobel_lib.SOBEL_Y)):
      expected = ndimage.correlate(gray[b], np.asarray(kernel), mode="constant", cval=0.0)
      np.testing.assert_allclose(out[b, :, :, channel], expected, rtol=1e-5, atol=1e-5)


def test_other_channel_counts_are_refused():
  with pytest.raises(ValueError, match=r"1 or 3 channels, got shape \(1, 4, 4, 2\)"):
    sobel_lib.sobel(jnp.zeros((1, 4, 4, 2)))
