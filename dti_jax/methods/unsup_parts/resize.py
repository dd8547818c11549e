"""Bilinear resizing with PyTorch's ``align_corners=True`` convention, as matrices.

``jax.image.resize`` uses half-pixel centres (``align_corners=False``). Part discovery
upsamples logits and perceptual features with ``nn.Upsample(mode="bilinear",
align_corners=True)``, where output pixel i reads input position i (in - 1) / (out - 1):
the corner pixels coincide. The resize is separable and linear, so it is two small
interpolation matrices applied with einsum (exact, differentiable, and its transpose is
available for free when a sum over the upsampled image is wanted at low resolution).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def interpolation_matrix(out_size: int, in_size: int) -> np.ndarray:
  """[out_size, in_size] float32 weights of 1-D linear interpolation, corners aligned.

  Row i has weight 1 - f at floor(p) and f at floor(p) + 1, p = i (in - 1) / (out - 1).
  """
  matrix = np.zeros((out_size, in_size), np.float64)
  if out_size == 1 or in_size == 1:
    matrix[:, 0] = 1.0
    return matrix.astype(np.float32)
  positions = np.arange(out_size) * (in_size - 1) / (out_size - 1)
  low = np.minimum(np.floor(positions).astype(np.int64), in_size - 2)
  frac = positions - low
  rows = np.arange(out_size)
  matrix[rows, low] = 1.0 - frac
  matrix[rows, low + 1] += frac
  matrix = matrix.astype(np.float32)
  matrix.setflags(write=False)
  return matrix


def resize_align_corners(images: jax.Array, height: int, width: int) -> jax.Array:
  """[B, h, w, C] -> [B, height, width, C], bilinear with aligned corners."""
  rows = jnp.asarray(interpolation_matrix(height, images.shape[1]))
  cols = jnp.asarray(interpolation_matrix(width, images.shape[2]))
  return jnp.einsum("Hh,Ww,bhwc->bHWc", rows, cols, images,
                    precision=jax.lax.Precision.HIGHEST)
