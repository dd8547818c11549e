"""Align-corners bilinear resizing against closed forms."""

import jax.numpy as jnp
import numpy as np

from dti_jax.methods.unsup_parts.resize import interpolation_matrix, resize_align_corners


def test_corners_are_kept_and_linear_ramps_are_reproduced():
  ys, xs = np.meshgrid(np.arange(5.0), np.arange(7.0), indexing="ij")
  ramp = (2 * xs - 3 * ys + 1)[None, ..., None].astype(np.float32)
  out = np.asarray(resize_align_corners(jnp.asarray(ramp), 33, 49))[0, ..., 0]
  # Output pixel (i, j) reads input (i * 4 / 32, j * 6 / 48): a ramp stays a ramp.
  oy, ox = np.meshgrid(np.arange(33) * 4 / 32, np.arange(49) * 6 / 48, indexing="ij")
  np.testing.assert_allclose(out, 2 * ox - 3 * oy + 1, atol=1e-4)
  np.testing.assert_allclose(out[[0, 0, -1, -1], [0, -1, 0, -1]],
                             ramp[0, [0, 0, -1, -1], [0, -1, 0, -1], 0], atol=1e-5)


def test_same_size_is_the_identity_and_rows_sum_to_one():
  np.testing.assert_allclose(interpolation_matrix(6, 6), np.eye(6), atol=1e-7)
  matrix = interpolation_matrix(256, 33)
  np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
  # Output 128 reads input 128 * 32 / 255 = 16.0627: weights 0.937 and 0.0627.
  np.testing.assert_allclose(matrix[128, 16:18], [1 - 128 * 32 / 255 + 16, 128 * 32 / 255 - 16],
                             atol=1e-6)
  assert np.count_nonzero(matrix[128]) == 2
