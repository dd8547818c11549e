"""Procedural articulated figures: determinism, labels, colours, geometry, statistics."""

import numpy as np
import pytest

from data_pipelines import articulated
from data_pipelines import sources


@pytest.fixture(scope="module")
def scenes():
  return articulated.generate(500, seed=1)  # The benchmark's test split.


def test_images_are_a_function_of_seed_and_index(monkeypatch):
  whole = articulated.generate(12, seed=3)
  again = articulated.generate(12, seed=3)
  tail = articulated.generate(4, seed=3, start_index=8)
  monkeypatch.setattr(articulated, "_CHUNK", 5)  # Chunking must not matter either.
  chunked = articulated.generate(12, seed=3)
  for other, rows in ((again, slice(None)), (tail, slice(8, 12)), (chunked, slice(None))):
    np.testing.assert_array_equal(other.images, whole.images[rows])
    np.testing.assert_array_equal(other.instance, whole.instance[rows])
    np.testing.assert_array_equal(other.semantic, whole.semantic[rows])
    for key, value in whole.factors.items():
      np.testing.assert_array_equal(other.factors[key], value[rows])
  assert not np.array_equal(articulated.generate(12, seed=4).images, whole.images)


def test_shapes_and_label_values(scenes):
  num = len(scenes.images)
  assert scenes.images.shape == (num, 64, 64, 3) and scenes.images.dtype == np.uint8
  assert scenes.instance.shape == (num, 64, 64) and scenes.instance.dtype == np.uint8
  np.testing.assert_array_equal(scenes.semantic, scenes.instance)
  assert scenes.semantic is not scenes.instance
  for labels in scenes.instance:  # Every part is visible in every image.
    assert set(np.unique(labels)) == set(range(6))


def test_statistics_match_the_spec(scenes):
  # Spec section 12 (prototype, 500 images): foreground 23.7 %; shares of the
  # foreground head 22 %, torso 39 %, wing 23 %, tail 9 %, legs 7 %.
  assert abs((scenes.instance > 0).mean() - 0.237) < 0.01
  counts = np.bincount(scenes.instance.ravel(), minlength=6)[1:]
  np.testing.assert_allclose(counts / counts.sum(), [0.22, 0.39, 0.23, 0.09, 0.07],
                             atol=0.01)
  facing = scenes.factors["facing"]
  assert set(facing) == {-1, 1} and abs(facing.mean()) < 0.15
  scale, rotation = scenes.factors["scale"], scenes.factors["rotation"]
  assert 1.2 <= scale.min() and scale.max() <= 1.6
  assert -0.6 <= rotation.min() and rotation.max() <= 0.6


def test_part_colours_follow_the_palette(scenes):
  hue, colour = scenes.factors["hue"], scenes.factors["color"]
  # Each part's hue is within the jitter of one of its type's two hues.
  gap = np.abs(hue[..., None] - articulated.PART_HUES[None])
  gap = np.minimum(gap, 1 - gap).min(axis=-1)
  assert gap.max() <= articulated.HUE_JITTER + 1e-12
  # Head and legs are plain: their pixels are the part colour plus N(0, 0.02) noise.
  for label in (articulated.HEAD, articulated.LEGS):
    index, rows, cols = np.nonzero(scenes.instance == label)
    error = scenes.images[index, rows, cols] / 255.0 - colour[index, label - 1]
    assert abs(error.std() - 0.02) < 0.002 and np.abs(error).max() < 0.15
  # Torso stripes multiply the colour by 1 -+ 0.18: two shades per torso.
  index, rows, cols = np.nonzero(scenes.instance == articulated.TORSO)
  ratio = scenes.images[index, rows, cols] / 255.0 / np.maximum(
      colour[index, articulated.TORSO - 1], 0.2)
  bright = colour[index, articulated.TORSO - 1] > 0.3
  assert np.median(np.abs(np.abs(ratio[bright] - 1) - 0.18)) < 0.05


def test_keypoints_and_facing(scenes):
  keypoints = scenes.factors["keypoints"]
  visible = scenes.factors["keypoint_visible"]
  np.testing.assert_allclose(keypoints[:, 1], scenes.factors["centre"], atol=1e-4)
  # The head is ahead of the torso along x on the side the figure faces.
  ahead = np.sign(keypoints[:, 0, 0] - keypoints[:, 1, 0])
  np.testing.assert_array_equal(ahead, scenes.factors["facing"])
  # The head is drawn last: its centre pixel is always labelled head.
  num = len(keypoints)
  assert visible[:, 0].all()
  cols, rows = np.floor(keypoints[:, 0]).astype(int).T
  np.testing.assert_array_equal(scenes.instance[np.arange(num), rows, cols],
                                articulated.HEAD)


def test_other_sides_scale_the_figure():
  small = articulated.generate(20, seed=5)
  large = articulated.generate(20, seed=5, side=128)
  # Same figure at twice the resolution (the noise differs): the label maps agree
  # except along part boundaries.
  agreement = (large.instance[:, ::2, ::2] == small.instance).mean()
  assert agreement > 0.95
  np.testing.assert_allclose(large.factors["keypoints"], 2 * small.factors["keypoints"],
                             rtol=1e-5)


def test_load_source_and_errors():
  source = sources.load_source("parts_toy_procedural", num_examples=8, seed=2)
  scenes = articulated.generate(8, seed=2)
  assert source.images.shape == (8, 64, 64, 3)
  np.testing.assert_array_equal(source.images, scenes.images)
  np.testing.assert_array_equal(source.masks, scenes.instance)
  np.testing.assert_array_equal(source.semantic, scenes.semantic)
  assert source.num_classes is None and source.name == "parts_toy_procedural"
  with pytest.raises(ValueError, match="num_examples >= 1"):
    articulated.generate(0)
