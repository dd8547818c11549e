"""Particle drawings: rings at the right radius and colour, boxes of the right side."""

import numpy as np

from dti_jax.methods.dlp import pictures as particles


def test_ring_is_at_the_radius_and_in_the_palette_colour():
  image = np.zeros((32, 32, 3), np.float32)
  drawn = particles.draw_circles(image, np.array([[10.0, 20.0], [25.0, 5.0]]))
  rows, cols = np.nonzero(np.all(drawn == particles.PALETTE[0], axis=-1))
  distances = np.hypot(rows - 10, cols - 20)
  assert len(rows) >= 12 and np.all(np.abs(distances - 3) <= 0.5)
  assert np.all(drawn[25, 5] == 0) and np.all(drawn[22, 5] == particles.PALETTE[1])
  faded = particles.draw_circles(image, np.array([[10.0, 20.0]]), strength=np.array([0.5]))
  np.testing.assert_allclose(faded[7, 20], 0.5 * particles.PALETTE[0])
  assert not image.any()  # the input is left as it was


def test_box_outline_has_the_glimpse_side():
  drawn = particles.draw_boxes(np.zeros((64, 64, 3), np.float32), np.array([[31.5, 31.5]]), 16)
  rows, cols = np.nonzero(drawn.any(axis=-1))
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (24, 39, 24, 39)
  assert not drawn[25:39, 25:39].any()


def test_per_ring_radius():
  image = np.zeros((40, 40, 3), np.float32)
  drawn = particles.draw_circles(image, np.array([[10.0, 10.0], [28.0, 28.0]]),
                                 radius=np.array([2.0, 6.0]))
  for k, (row, col, radius) in enumerate([(10, 10, 2.0), (28, 28, 6.0)]):
    rows, cols = np.nonzero(np.all(drawn == particles.PALETTE[k], axis=-1))
    assert np.all(np.abs(np.hypot(rows - row, cols - col) - radius) <= 0.5)
