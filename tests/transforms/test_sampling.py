"""grid_sample against a literal numpy transcription of PyTorch's semantics."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.transforms import grid_sample


def reference_grid_sample(image, grid, align_corners, padding_mode):
  """Loop-by-loop bilinear sampling following the spec's three steps."""
  height, width, channels = image.shape
  out = np.zeros(grid.shape[:2] + (channels,), np.float64)
  for i, j in itertools.product(range(grid.shape[0]), range(grid.shape[1])):
    gx, gy = float(grid[i, j, 0]), float(grid[i, j, 1])
    if align_corners:
      px, py = (gx + 1) / 2 * (width - 1), (gy + 1) / 2 * (height - 1)
    else:
      px, py = ((gx + 1) * width - 1) / 2, ((gy + 1) * height - 1) / 2
    if padding_mode == "border":
      px, py = min(max(px, 0), width - 1), min(max(py, 0), height - 1)
    x0, y0 = int(np.floor(px)), int(np.floor(py))
    wx, wy = px - x0, py - y0
    for yc, xc, weight in [
        (y0, x0, (1 - wy) * (1 - wx)),
        (y0, x0 + 1, (1 - wy) * wx),
        (y0 + 1, x0, wy * (1 - wx)),
        (y0 + 1, x0 + 1, wy * wx),
    ]:
      if 0 <= yc < height and 0 <= xc < width:
        out[i, j] += weight * image[yc, xc]
  return out


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("padding_mode", ["border", "zeros"])
def test_grid_sample_matches_reference(align_corners, padding_mode):
  rng = np.random.default_rng(0)
  image = rng.uniform(size=(7, 9, 2)).astype(np.float32)
  # Range beyond [-1, 1] so that clamping and zero padding are exercised,
  # plus exact edge values.
  grid = rng.uniform(-1.4, 1.4, size=(6, 5, 2)).astype(np.float32)
  grid[0, :, 0] = [-1.0, 1.0, -1.0, 1.0, 0.0]
  grid[0, :, 1] = [-1.0, -1.0, 1.0, 1.0, 0.0]
  expected = reference_grid_sample(image, grid, align_corners, padding_mode)
  got = grid_sample(
      jnp.asarray(image), jnp.asarray(grid),
      align_corners=align_corners, padding_mode=padding_mode,
  )
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


def test_pixel_centres_read_exact_pixels():
  rng = np.random.default_rng(1)
  image = rng.uniform(size=(4, 6, 1)).astype(np.float32)
  xs = (2 * np.arange(6) + 1) / 6 - 1
  ys = (2 * np.arange(4) + 1) / 4 - 1
  grid = np.stack(np.meshgrid(xs, ys), axis=-1).astype(np.float32)
  got = grid_sample(jnp.asarray(image), jnp.asarray(grid),
                    align_corners=False, padding_mode="zeros")
  np.testing.assert_allclose(np.asarray(got), image, atol=1e-6)


def test_unknown_padding_mode_is_named():
  with pytest.raises(ValueError, match="reflection"):
    grid_sample(jnp.zeros((2, 2, 1)), jnp.zeros((1, 1, 2)),
                align_corners=False, padding_mode="reflection")
