"""Keypoint recall, precision and their chance level against hand-made scenes."""

import numpy as np
import pytest

from dti_jax.methods.dlp import keypoints


def test_pixels_follow_the_align_corners_convention():
  np.testing.assert_allclose(keypoints.to_pixels(np.array([[-1.0, 1.0], [0.0, 0.0]]), 64),
                             [[0.0, 63.0], [31.5, 31.5]])


def test_recall_and_precision_on_a_hand_made_scene():
  nan = np.nan
  centres = np.array([[[10.0, 10.0], [40.0, 40.0], [nan, nan]]])     # 2 objects present
  particles = np.array([[[12.0, 10.0], [40.0, 45.0], [60.0, 0.0]]])
  # Object 1 has a particle 2 px away, object 2 only one 5 px away.
  assert keypoints.object_recall(particles, centres, 3) == 0.5
  assert keypoints.object_recall(particles, centres, 5) == 1.0
  assert keypoints.particle_precision(particles, centres, 3) == pytest.approx(1 / 3)
  active = np.array([[False, True, False]])
  assert keypoints.object_recall(particles, centres, 3, active) == 0.0
  assert keypoints.object_recall(particles, centres, 5, active) == 0.5
  assert keypoints.particle_precision(particles, centres, 5, active) == 1.0


def test_random_recall_matches_the_area_it_covers():
  # One object in the middle of a 64 x 64 image, one random point: the chance that it
  # falls within r of the centre is pi r^2 / 63^2 (the disc lies inside the square).
  centres = np.full((4000, 1, 2), 31.5)
  chance = keypoints.random_recall(centres, 1, 4.0, 64, seed=1, repeats=5)
  assert chance == pytest.approx(np.pi * 16 / 63 ** 2, rel=0.1)
  assert keypoints.random_recall(centres, 10, 4.0, 64) > chance
