"""Evaluation-time resizing of part logits (spec 9.2): bilinear with half-pixel centres.

The CUB evaluation upsamples the segmenter's logits to the input size with PyTorch's
``F.interpolate(mode='bilinear', align_corners=False)``: source coordinate
(d + 0.5) h / H - 0.5, clamped at 0, neighbours clamped to the last pixel.
``jax.image.resize`` with the triangle kernel and no antialiasing samples the same
coordinates and renormalises the weights where a tap leaves the image, which gives
the same edge pixels, so the two agree (tested against a numpy transcription of
PyTorch's rule). Training-time upsampling is align_corners=True and lives elsewhere.
"""

import jax
import jax.numpy as jnp


def upsample_logits(logits: jax.Array, size: tuple[int, int]) -> jax.Array:
  """[..., h, w, K] -> [..., H, W, K] bilinear, align_corners=False, no antialiasing."""
  if logits.ndim < 3:
    raise ValueError(f"upsample_logits: logits must be [..., h, w, K], got {logits.shape}")
  height, width = size
  shape = logits.shape[:-3] + (height, width, logits.shape[-1])
  return jax.image.resize(jnp.asarray(logits), shape, method="bilinear", antialias=False)
