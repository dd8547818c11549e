"""Procedural DLP Shapes: determinism, skimage's geometry rules, statistics, centroids."""

import numpy as np
import pytest

from data_pipelines import shapes
from data_pipelines import sources

RECTANGLE, CIRCLE, TRIANGLE, ELLIPSE = range(4)


@pytest.fixture(scope="module")
def scenes():
  return shapes.generate(2000, seed=11)


def _objects(scenes, limit=None):
  """(image index, slot) of every placed shape, in order."""
  counts = scenes.factors["num_objects"][:limit]
  return [(i, k) for i in range(len(counts)) for k in range(counts[i])]


def _offsets(mask, row, col):
  rows, cols = np.nonzero(mask)
  return rows - row, cols - col


def test_scenes_are_a_function_of_seed_and_index(monkeypatch):
  whole = shapes.generate(12, seed=3)
  again = shapes.generate(12, seed=3)
  tail = shapes.generate(4, seed=3, start_index=8)
  monkeypatch.setattr(shapes, "_CHUNK", 5)  # Chunking must not matter either.
  chunked = shapes.generate(12, seed=3)
  for other, rows in ((again, slice(None)), (tail, slice(8, 12)), (chunked, slice(None))):
    np.testing.assert_array_equal(other.images, whole.images[rows])
    np.testing.assert_array_equal(other.instance, whole.instance[rows])
    np.testing.assert_array_equal(other.semantic, whole.semantic[rows])
    for key, value in whole.factors.items():
      np.testing.assert_array_equal(other.factors[key], value[rows])  # NaN == NaN here.
  assert not np.array_equal(shapes.generate(12, seed=4).images, whole.images)


def test_images_masks_and_colours(scenes):
  f = scenes.factors
  num = len(scenes.images)
  assert scenes.images.shape == (num, 64, 64, 3) and scenes.images.dtype == np.uint8
  assert scenes.instance.shape == (num, 64, 64) and scenes.instance.dtype == np.uint8
  background = scenes.instance == 0
  assert np.all(scenes.images[background] == [0, 255, 255])  # Cyan.
  assert scenes.images[~background].max() <= 200
  assert 0 <= f["color"].min() and f["color"].max() <= 200
  # Every object has one colour: the image is the palette indexed by the mask.
  palette = np.concatenate([np.broadcast_to([0, 255, 255], (num, 1, 3)), f["color"]], 1)
  np.testing.assert_array_equal(scenes.images,
                                palette[np.arange(num)[:, None, None], scenes.instance])
  for i in range(num):
    n = f["num_objects"][i]
    assert set(np.unique(scenes.instance[i])) == set(range(n + 1))  # Contiguous 1..n.
    assert set(f["shape"][i, n:]) <= {-1} and set(f["shape"][i, :n]) <= {0, 1, 2, 3}
  np.testing.assert_array_equal(
      scenes.semantic, np.take_along_axis(
          np.concatenate([np.zeros((num, 1), np.int64), f["shape"] + 1], 1),
          scenes.instance.reshape(num, -1).astype(np.int64), 1).reshape(num, 64, 64))
  # No overlap: each mask is its whole shape (nothing of it painted over later),
  # and masks are disjoint as the instance map holds one id per pixel.
  objects = _objects(scenes)
  index, slot = np.array(objects).T
  rendered = shapes.render_shapes(*(f[key][index, slot] for key in
                                    ("shape", "row", "col", "extent", "rotation")))
  masks = scenes.instance[index] == (slot + 1)[:, None, None]
  np.testing.assert_array_equal(rendered, masks)


def test_statistics_match_the_spec(scenes):
  f = scenes.factors
  n = f["num_objects"]
  assert set(n) == {2, 3, 4, 5}
  # Uniform on 2..5 (mean 3.5, sd 1.12): the standard error over 2,000 images is
  # 0.025, and dropped shapes (100 failed trials) are rare.
  assert abs(n.mean() - 3.5) < 0.1
  classes = f["shape"][f["shape"] >= 0]
  fractions = np.bincount(classes, minlength=4) / len(classes)
  assert np.all((fractions > 0.2) & (fractions < 0.3))  # Standard error 0.005.
  # About 3.5 shapes of ~97 pixels on average (rectangles 132, circles 69,
  # triangles 54, ellipses 131) out of 4,096: 8.3 %; standard error 0.07 %.
  assert abs((scenes.instance > 0).mean() - 0.083) < 0.005
  for i, k in _objects(scenes):  # Centroids exist exactly for placed shapes.
    assert np.all(np.isfinite(f["centroid"][i, k]))
  assert np.all(np.isnan(f["centroid"][f["shape"] < 0]))


def test_geometry_follows_the_rules(scenes):
  f = scenes.factors
  disk_5 = sorted((r, c) for r in range(-6, 7) for c in range(-6, 7)
                  if r * r + c * c < 25)
  for i, k in _objects(scenes):
    shape, row, col = f["shape"][i, k], f["row"][i, k], f["col"][i, k]
    (height, width), rotation = f["extent"][i, k], f["rotation"][i, k]
    mask = scenes.instance[i] == k + 1
    dr, dc = _offsets(mask, row, col)
    assert 0 <= row <= 52 and 0 <= col <= 52
    if shape != ELLIPSE:
      assert rotation == 0
    if shape == RECTANGLE:  # Anchor = top-left; sides 11 or 12, 11 at anchor 52.
      assert height in {11, 12} and width in {11, 12}
      assert (height == 11 or row <= 51) and (width == 11 or col <= 51)
      expected = np.zeros((64, 64), bool)
      expected[row:row + int(height), col:col + int(width)] = True
      np.testing.assert_array_equal(mask, expected)
    elif shape == CIRCLE:  # Anchor = centre, radius 5: 69 pixels, 9 across.
      assert row >= 5 and col >= 5 and (height, width) == (5, 5)
      assert sorted(zip(dr, dc)) == disk_5
    elif shape == TRIANGLE:  # Anchor = bottom-left, pointing up.
      base = int(width)
      assert height == np.ceil(np.sqrt(3) / 2 * base)
      assert base == 10 or (base == 11 and row >= 13 and col <= 51)
      bottom = dr == 0
      np.testing.assert_array_equal(np.sort(dc[bottom]), np.arange(base + 1))
      if row >= height:  # Whole: Pick's theorem, area + boundary / 2 + 1.
        assert mask.sum() == {10: 45 + 12 // 2 + 1, 11: 55 + 18 // 2 + 1}[base]
        np.testing.assert_array_equal(np.nonzero(mask[row - int(height)])[0],
                                      [col + base // 2])  # The apex alone.
      else:  # Cut off at the top edge.
        assert np.nonzero(mask)[0].min() == 0 and mask.sum() < 65
    else:  # Ellipse: centre anchor, semi-axes in [5.5, min(row, col, 6.5) + 1).
      assert row >= 6 and col >= 6
      high = min(row, col, 6.5) + 1
      assert 5.5 <= min(height, width) and max(height, width) < high
      assert -np.pi <= rotation < np.pi
      # Between the circles of its semi-axes (up to pixels on the boundaries).
      distance = np.hypot(dr, dc)
      assert distance.max() < max(height, width) + 1e-9
      inner = np.hypot(*np.mgrid[-8:9, -8:9]) < min(height, width) - 1e-9
      rows, cols = np.nonzero(inner)
      assert mask[rows - 8 + row, cols - 8 + col].all()
      if row >= 8 and col >= 8:  # Not clipped: symmetric about its centre.
        assert set(zip(dr, dc)) == set(zip(-dr, -dc))


def test_render_shapes_closed_forms():
  masks = shapes.render_shapes(
      np.array([RECTANGLE, CIRCLE, TRIANGLE, TRIANGLE, TRIANGLE, ELLIPSE]),
      np.array([3, 20, 30, 30, 0, 30]), np.array([40, 30, 10, 10, 5, 30]),
      np.array([[12, 11], [5, 5], [9, 10], [10, 11], [9, 10], [6, 7]], np.float64),
      np.zeros(6))
  rectangle, circle, triangle_10, triangle_11, cut, ellipse = masks
  expected = np.zeros((64, 64), bool)
  expected[3:15, 40:51] = True
  np.testing.assert_array_equal(rectangle, expected)
  assert circle.sum() == 69  # skimage's disk: (dr / 5)^2 + (dc / 5)^2 < 1.
  np.testing.assert_array_equal(circle.sum(axis=1)[15:26],
                                [0, 5, 7, 9, 9, 9, 9, 9, 7, 5, 0])
  # Closed triangles, boundary included (Pick: 45 + 12/2 + 1 and 55 + 18/2 + 1).
  assert triangle_10.sum() == 52 and triangle_11.sum() == 65
  # a rows above the base: columns ceil(5a / 9) .. floor(10 - 5a / 9).
  widths = [int(np.floor(10 - 5 * a / 9) - np.ceil(5 * a / 9)) + 1 for a in range(10)]
  np.testing.assert_array_equal(triangle_10.sum(axis=1)[21:31], widths[::-1])
  assert widths[::-1] == [1, 1, 3, 3, 5, 5, 7, 7, 9, 11] and triangle_10[20].sum() == 0
  np.testing.assert_array_equal(np.nonzero(triangle_11[20])[0], [15])  # Apex at c + 5.
  expected = np.zeros((64, 64), bool)
  expected[0, 5:16] = True  # Anchor on the top row: only the base survives.
  np.testing.assert_array_equal(cut, expected)
  dr, dc = np.mgrid[-30:34, -30:34]
  np.testing.assert_array_equal(ellipse, (dr / 6) ** 2 + (dc / 7) ** 2 < 1)
  turned = shapes.render_shapes(np.array([ELLIPSE]), np.array([30]), np.array([30]),
                                np.array([[6.0, 7.0]]), np.array([np.pi / 2]))[0]
  np.testing.assert_array_equal(turned, ellipse.T)  # A quarter turn swaps the axes.


def test_object_centroids():
  instance = np.zeros((2, 8, 9), np.uint8)
  instance[0, 3:5, 5:7] = 1
  instance[0, 0, 0] = 2
  instance[0, 7, 8] = 2
  instance[1, 2, 1:4] = 1
  centroids = shapes.object_centroids(instance, max_objects=3)
  assert centroids.dtype == np.float32 and centroids.shape == (2, 3, 2)
  np.testing.assert_array_equal(centroids[0, :2], [[3.5, 5.5], [3.5, 4.0]])
  np.testing.assert_array_equal(centroids[1, 0], [2.0, 2.0])
  assert np.isnan(centroids[0, 2]).all() and np.isnan(centroids[1, 1:]).all()
  with pytest.raises(ValueError, match="max_objects=1"):
    shapes.object_centroids(instance, max_objects=1)


def test_centroids_are_mask_means(scenes):
  for i, k in _objects(scenes, limit=200):
    rows, cols = np.nonzero(scenes.instance[i] == k + 1)
    np.testing.assert_allclose(scenes.factors["centroid"][i, k],
                               [rows.mean(), cols.mean()], rtol=1e-6)
  np.testing.assert_array_equal(shapes.object_centroids(scenes.instance),
                                scenes.factors["centroid"])


def test_load_source_and_errors():
  source = sources.load_source("dlp_shapes_procedural", num_examples=16, seed=3)
  scenes = shapes.generate(16, seed=3)
  assert source.images.shape == (16, 64, 64, 3) and source.masks.shape == (16, 64, 64)
  np.testing.assert_array_equal(source.images, scenes.images)
  np.testing.assert_array_equal(source.masks, scenes.instance)
  np.testing.assert_array_equal(source.semantic, scenes.semantic)
  np.testing.assert_array_equal(source.labels, -1)
  assert source.num_classes is None and source.name == "dlp_shapes_procedural"
  assert sources.describe(source).endswith(
      f"unlabelled, instance masks 0..{scenes.factors['num_objects'].max()}")
  with pytest.raises(ValueError, match="num_examples >= 1"):
    shapes.generate(0, seed=0)
