"""Procedural Tetrominoes and Multi-dSprites, instance masks in sources and batches."""

import colorsys
import itertools

import numpy as np
import pytest

from data_pipelines import pipeline
from data_pipelines import procedural
from data_pipelines import sources


@pytest.fixture(scope="module")
def tetro():
  return procedural.tetrominoes(60, seed=7)


@pytest.fixture(scope="module")
def sprites():
  return procedural.multi_dsprites(200, seed=7)


def _normalise(cells):
  rows, cols = zip(*cells)
  return frozenset((r - min(rows), c - min(cols)) for r, c in cells)


def _all_fixed_tetrominoes():
  """Every connected 4-cell subset of a 4x4 grid, up to translation."""
  grid = [(r, c) for r in range(4) for c in range(4)]
  found = set()
  for cells in itertools.combinations(grid, 4):
    reached, frontier = {cells[0]}, [cells[0]]
    while frontier:
      r, c = frontier.pop()
      for n in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
        if n in cells and n not in reached:
          reached.add(n)
          frontier.append(n)
    if len(reached) == 4:
      found.add(_normalise(cells))
  return found


def _pixel_footprint(cells, block=procedural.TETROMINO_BLOCK):
  return frozenset((r * block + i, c * block + j) for r, c in cells
                   for i in range(block) for j in range(block))


def test_shape_list_is_the_19_fixed_tetrominoes():
  shapes = [_normalise(cells) for cells in procedural.TETROMINO_SHAPES]
  assert len(shapes) == 19 and set(shapes) == _all_fixed_tetrominoes()
  assert all(shape == frozenset(cells)  # Listed top-left aligned.
             for shape, cells in zip(shapes, procedural.TETROMINO_SHAPES))


@pytest.mark.parametrize("generate", [procedural.tetrominoes, procedural.multi_dsprites])
def test_scenes_are_a_function_of_seed_and_index(generate, monkeypatch):
  whole = generate(12, seed=3)
  again = generate(12, seed=3)
  tail = generate(4, seed=3, start_index=8)
  monkeypatch.setattr(procedural, "_CHUNK", 5)  # Chunking must not matter either.
  chunked = generate(12, seed=3)
  for other, rows in ((again, slice(None)), (tail, slice(8, 12)), (chunked, slice(None))):
    np.testing.assert_array_equal(other.images, whole.images[rows])
    np.testing.assert_array_equal(other.instance, whole.instance[rows])
    np.testing.assert_array_equal(other.semantic, whole.semantic[rows])
    for key, value in whole.factors.items():
      np.testing.assert_array_equal(other.factors[key], value[rows])
  assert not np.array_equal(generate(12, seed=4).images, whole.images)


def test_tetromino_pieces_colours_and_masks(tetro):
  footprints = {_pixel_footprint(cells) for cells in procedural.TETROMINO_SHAPES}
  assert tetro.images.shape == (60, 35, 35, 3) and tetro.instance.shape == (60, 35, 35)
  np.testing.assert_array_equal(tetro.images[tetro.instance == 0], 0)  # Black background.
  for i in range(len(tetro.images)):
    assert set(np.unique(tetro.instance[i])) == {0, 1, 2, 3}
    for k in range(3):
      rows, cols = np.nonzero(tetro.instance[i] == k + 1)
      shape, top, left = (tetro.factors[key][i, k] for key in ("shape", "top", "left"))
      footprint = frozenset(zip(rows - rows.min(), cols - cols.min()))
      # All 100 pixels visible (no overlap), the listed shape at (top, left).
      assert footprint in footprints and len(rows) == 100
      assert footprint == _pixel_footprint(procedural.TETROMINO_SHAPES[shape])
      assert (rows.min(), cols.min()) == (top, left)
      np.testing.assert_array_equal(tetro.semantic[i][rows, cols], shape + 1)
      # One colour per piece: full on block interiors, 0.8x on the 1-pixel block edges.
      color = procedural.TETROMINO_COLORS[tetro.factors["color"][i, k]]
      edge = np.isin((rows - top) % 5, (0, 4)) | np.isin((cols - left) % 5, (0, 4))
      expected = np.where(edge[:, None], 204, 255) * color[None, :]
      np.testing.assert_array_equal(tetro.images[i][rows, cols], expected)
  assert set(tetro.factors["shape"].ravel()) <= set(range(19))
  assert set(tetro.factors["color"].ravel()) <= set(range(6))


def test_dsprites_painting_occlusion_and_statistics(sprites):
  f = sprites.factors
  n = f["num_objects"]
  assert set(n) == {2, 3, 4, 5}
  gray = np.rint(f["background"] * 255).astype(np.uint8)
  for i in range(len(sprites.images)):
    used = slice(0, n[i])
    assert set(f["shape"][i, n[i]:]) <= {-1}
    masks = procedural.render_sprites(
        f["shape"][i, used], f["scale"][i, used], f["orientation"][i, used],
        f["x"][i, used], f["y"][i, used])
    # Painter's algorithm from the factors reproduces the ground truth.
    instance = np.zeros((64, 64), np.uint8)
    image = np.broadcast_to(gray[i], (64, 64, 3)).copy()
    for k, mask in enumerate(masks):
      instance[mask] = k + 1
      image[mask] = np.rint(f["color"][i, k] * 255)
    np.testing.assert_array_equal(sprites.instance[i], instance)
    np.testing.assert_array_equal(sprites.images[i], image)
    np.testing.assert_array_equal(sprites.images[i][instance == 0], gray[i])
    assert np.all(sprites.instance[i][masks[-1]] == n[i])  # The last one is on top.
    visible = [(instance == k + 1).sum() / mask.sum() for k, mask in enumerate(masks)]
    assert min(visible) >= procedural.DSPRITES_MIN_VISIBLE
    np.testing.assert_array_equal(
        sprites.semantic[i], np.concatenate([[0], f["shape"][i, used] + 1])[instance])
  valid = f["shape"] >= 0
  assert set(f["shape"][valid]) == {0, 1, 2}
  for key, low, high in (("scale", 0.5, 1.0), ("x", 10, 54), ("y", 10, 54),
                         ("orientation", 0, 2 * np.pi)):
    assert low <= f[key][valid].min() and f[key][valid].max() <= high
  hsv = np.array([colorsys.rgb_to_hsv(*rgb) for rgb in f["color"][valid]])
  assert hsv[:, 1:].min() >= 0.5 - 1e-9  # Saturation and value in [0.5, 1].


def test_render_sprites_closed_forms():
  centre = np.float32(32.0)  # A pixel corner: the masks are symmetric about it.
  square, ellipse, heart = procedural.render_sprites(
      np.array([0, 1, 2]), np.ones(3), np.zeros(3), np.full(3, centre), np.full(3, centre))
  expected = np.zeros((64, 64), bool)
  expected[22:42, 22:42] = True  # Side 20: pixel centres 22.5..41.5.
  np.testing.assert_array_equal(square, expected)
  rows, cols = np.nonzero(ellipse)  # Semi-axes 10 (along columns) and 5.
  assert (cols.min(), cols.max(), rows.min(), rows.max()) == (22, 41, 27, 36)
  assert abs(ellipse.sum() - np.pi * 10 * 5) < 10
  np.testing.assert_array_equal(ellipse, ellipse[:, ::-1])
  np.testing.assert_array_equal(ellipse, ellipse[::-1])
  np.testing.assert_array_equal(heart, heart[:, ::-1])  # Upright: mirror-symmetric.
  heart_cols = np.nonzero(heart.any(axis=0))[0]
  assert heart_cols.max() - heart_cols.min() + 1 == 20
  top_half, bottom_half = heart[:32].sum(), heart[32:].sum()
  assert top_half > bottom_half  # The lobes are up, the point down.


def test_render_sprites_window_matches_full_canvas():
  rng = np.random.default_rng(0)
  m = 40
  shape, scale = rng.integers(0, 3, m), rng.uniform(0.5, 1, m)
  angle, x, y = rng.uniform(0, 6.3, m), rng.uniform(10, 54, m), rng.uniform(10, 54, m)
  masks = procedural.render_sprites(shape, scale, angle, x, y)
  c = np.arange(64, dtype=np.float32) + np.float32(0.5)
  for i in range(m):
    s = np.float32(20) * np.float32(scale[i])
    a = np.float32(angle[i])
    dx = c[None, :] - np.float32(x[i])
    dy = c[:, None] - np.float32(y[i])
    u = np.cos(a) * dx + np.sin(a) * dy
    v = np.cos(a) * dy - np.sin(a) * dx
    if shape[i] == 0:
      reference = np.maximum(np.abs(u), np.abs(v)) <= s / 2
    elif shape[i] == 1:
      reference = (2 * u / s) ** 2 + (4 * v / s) ** 2 <= 1
    else:
      k = 2 * 1.139 / s
      hx, hy = u * k, 0.118 - v * k
      reference = (hx ** 2 + hy ** 2 - 1) ** 3 - hx ** 2 * hy ** 3 <= 0
    # Float rounding may differ on pixels lying exactly on the boundary.
    assert (masks[i] != reference).sum() <= 2 and masks[i].sum() > 20


def test_hsv_to_rgb_matches_colorsys():
  hsv = np.random.default_rng(1).random((50, 3))
  expected = np.array([colorsys.hsv_to_rgb(*row) for row in hsv])
  np.testing.assert_allclose(procedural.hsv_to_rgb(hsv), expected, atol=1e-12)


@pytest.mark.parametrize("name, generate, max_id", [
    ("tetrominoes_procedural", procedural.tetrominoes, 3),
    ("multi_dsprites_procedural", procedural.multi_dsprites, 5)])
def test_load_source_procedural(name, generate, max_id):
  source = sources.load_source(name, num_examples=40, seed=2)
  scenes = generate(40, seed=2)
  np.testing.assert_array_equal(source.images, scenes.images)
  np.testing.assert_array_equal(source.masks, scenes.instance)
  np.testing.assert_array_equal(source.labels, -1)
  assert source.num_classes is None and source.name == name
  assert sources.describe(source).endswith(f"unlabelled, instance masks 0..{max_id}")


def test_array_source_masks_validated():
  images, labels = np.zeros((3, 4, 5, 3), np.uint8), np.full(3, -1, np.int32)
  assert sources.ArraySource("toy", images, labels, None).masks is None
  sources.ArraySource("toy", images, labels, None, masks=np.zeros((3, 4, 5), np.uint8))
  for bad in (np.zeros((3, 4, 5), np.int32), np.zeros((3, 5, 4), np.uint8),
              np.zeros((2, 4, 5), np.uint8)):
    with pytest.raises(ValueError, match="masks must be uint8 \\[3, 4, 5\\]"):
      sources.ArraySource("toy", images, labels, None, masks=bad)


def test_batches_carry_masks(tetro):
  source = sources.ArraySource("tetro", tetro.images, np.full(60, -1, np.int32), None,
                               masks=tetro.instance)
  train = list(pipeline.train_batches(source, global_batch_size=16, seed=0, epoch=1))
  assert len(train) == 3
  for batch in train:
    assert set(batch) == {"image", "label", "mask", "_index"}
    assert batch["mask"].dtype == np.int32 and batch["mask"].shape == (16, 35, 35)
    np.testing.assert_array_equal(batch["mask"], tetro.instance[batch["_index"]])
  evals = list(pipeline.eval_batches(source, global_batch_size=16, limit=20))
  masks = np.concatenate([b["mask"] for b in evals])
  np.testing.assert_array_equal(masks[:20], tetro.instance[:20])
  np.testing.assert_array_equal(masks[20:], 0)  # Padding rows are zeros.
  plain = sources.ArraySource("plain", tetro.images, np.full(60, -1, np.int32), None)
  assert "mask" not in next(pipeline.eval_batches(plain, global_batch_size=16))
