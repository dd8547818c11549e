"""DeepCluster's frozen Sobel front end: grayscale, then horizontal and vertical gradients.

The original applies two fixed convolutions to the normalised image: a 1x1 averaging of
the three channels (the mean of the normalised channels, not luminance) and a 3x3
convolution with zero padding whose two filters are, as cross-correlations (not flipped):

  gx = [[1, 0, -1], [2, 0, -2], [1, 0, -1]],   gy = [[1, 2, 1], [0, 0, 0], [-1, -2, -1]].

Being constants here rather than parameters, they are never trained nor decayed. A
single-channel input skips the averaging.
"""

import jax
import jax.numpy as jnp
from jax import lax

SOBEL_X = ((1.0, 0.0, -1.0), (2.0, 0.0, -2.0), (1.0, 0.0, -1.0))
SOBEL_Y = ((1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (-1.0, -2.0, -1.0))


def sobel(images: jax.Array) -> jax.Array:
  """[B, H, W, 1 or 3] -> [B, H, W, 2]: (gx, gy) of the channel mean, zero-padded."""
  if images.shape[-1] not in (1, 3):
    raise ValueError(f"sobel: images need 1 or 3 channels, got shape {images.shape}")
  gray = jnp.mean(images, axis=-1, keepdims=True)
  kernel = jnp.stack([jnp.asarray(SOBEL_X), jnp.asarray(SOBEL_Y)], axis=-1)[:, :, None, :]
  return lax.conv_general_dilated(gray, kernel.astype(images.dtype), (1, 1), ((1, 1), (1, 1)),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  precision=lax.Precision.HIGHEST)
