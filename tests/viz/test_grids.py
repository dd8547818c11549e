import numpy as np
from PIL import Image

from dti_jax.viz import grids


def test_grid_places_each_image_row_major_with_padding():
  images = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1) / 10
  grid = grids.make_grid(images, columns=2, padding=1, pad_value=1.0)
  assert grid.shape == (7, 5, 1)
  assert grid[1, 1, 0] == 0.0 and grid[1, 3, 0] == 0.1 and grid[3, 1, 0] == 0.2
  assert grid[5, 1, 0] == 0.4 and grid[5, 3, 0] == 1.0  # empty slot keeps the pad value


def test_png_round_trip_clips_to_unit_range(tmp_path):
  image = np.array([[[-0.5], [0.5], [2.0]]], np.float32)
  grids.save_png(str(tmp_path / "x.png"), image)
  pixels = np.asarray(Image.open(tmp_path / "x.png"))
  np.testing.assert_array_equal(pixels, [[0, 128, 255]])
  np.testing.assert_array_equal(grids.upscale(np.eye(2)[..., None], 2)[..., 0],
                                [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]])
