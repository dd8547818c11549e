"""Procedural Shapes: the DLP toy set of random flat shapes on a cyan background.

Offline stand-in for the DLP shapes data: scikit-image 0.18's
`random_shapes((64, 64), min_shapes=2, max_shapes=5, intensity_range=((0, 200),),
min_size=11, max_size=13, allow_overlap=False, num_trials=100)` with the white
background turned cyan, re-implemented in NumPy with per-object ground truth.
Scene i is a pure function of (seed, i): a held-out set is another seed, and any
range of scenes can be regenerated without the others.

The rules, as the 0.18 generators work out with those arguments:
* 2-5 shapes (uniform), each with a colour (every channel uniform in 0..200) and a
  class uniform over SHAPE_NAMES, fixed for all its trials. Up to 100 trials of an
  anchor (row, col), each uniform in 0..side-12; a trial fails when the shape does
  not fit or shares a pixel with an earlier shape (shapes may touch). After 100
  failures the shape is dropped and its colour is skipped.
* rectangle: anchor = top-left; height and width each 11 or 12 pixels, 11 when the
  anchor is 12 pixels from the bottom (right) border.
* circle: anchor = centre; fits when row, col >= 5; radius always 5. Pixels with
  (dr / 5)^2 + (dc / 5)^2 < 1 in float64: 69 of them, 9 across.
* triangle (pointing up): anchor = bottom-left; side 11 when row >= 13 and
  col <= side-13 and a fair coin says so, else 10; height ceil(sqrt(3)/2 * side).
  Every pixel of the closed triangle (r, c), (r - h, c + side // 2), (r, c + side),
  boundary included (52 pixels for side 10, 65 for 11), rows < 0 cut off.
* ellipse: anchor = centre; fits when row, col >= 6; semi-axes (row, col) each
  uniform in [5.5, m + 1), m = min(row, col, 6.5); rotation uniform in [-pi, pi),
  taken mod pi; pixels with distance < 1 under skimage's rotated-ellipse formula
  (same float64 operations) inside its bounding box, clipped to the image.
Where the DLP spec's summary is looser, the 0.18 source is followed: "touches an
already filled pixel" means shares one (adjacent shapes are fine), and the circle
is skimage's strict-inequality disk of 69 pixels, 9 across (not a 9x9 block).
Only the random streams differ from the original, so scenes match skimage's in
distribution, not image for image.

Shapes are placed in drawing order; each trial is vectorised over the scenes of a
chunk still waiting for that shape, on a window around the anchor.
"""

import numpy as np

from data_pipelines import procedural

DEFAULT_NUM_EXAMPLES = 40_000
DEFAULT_SIDE = 64
SHAPE_NAMES = ("rectangle", "circle", "triangle", "ellipse")  # Class id = position.
_RECTANGLE, _CIRCLE, _TRIANGLE, _ELLIPSE = range(len(SHAPE_NAMES))
MIN_OBJECTS, MAX_OBJECTS = 2, 5
NUM_TRIALS = 100
MAX_INTENSITY = 200
BACKGROUND = (0, 255, 255)  # Cyan: white with red 255 set to 0 (shapes stay <= 200).
MIN_SIZE, MAX_SIZE = 11, 13
CIRCLE_RADIUS = 5  # min_size // 2: the 11..13 size range leaves no other radius.
ELLIPSE_MIN_RADIUS, ELLIPSE_MAX_RADIUS = MIN_SIZE / 2, MAX_SIZE / 2

# Pixels a shape can cover around its anchor: triangles reach 10 rows up, ellipses
# 7 pixels left, rectangles and triangles 11 pixels down / right.
_ROW_OFFSETS = np.arange(-10, 12)
_COL_OFFSETS = np.arange(-7, 12)
_PAD = 12  # Canvas margin: every window index stays in range.
_CHUNK = 1024  # Scenes generated together.
_TRIAL_FIELDS = 5  # Uniforms per trial: row, col, then up to three shape parameters.
_SALT = 3  # Separates these streams from `procedural`'s for the same seed.


def generate(num_examples: int = DEFAULT_NUM_EXAMPLES, *, seed: int = 0,
             start_index: int = 0, side: int = DEFAULT_SIDE) -> procedural.Scenes:
  """Scenes start_index.. of side x side Shapes with instance and class masks.

  Returns:
    Scenes with images uint8 [N, side, side, 3]; instance uint8 [N, side, side]
    (0 background, 1..n the placed shapes in drawing order, contiguous);
    semantic = 1 + class id; factors, per placed shape in instance order:
    num_objects int64 [N] (2..5, fewer only when a shape is dropped); shape
    int64 [N, 5] (index into SHAPE_NAMES, -1 past num_objects); row, col int64
    [N, 5] (the anchor); extent float64 [N, 5, 2] (rectangle height, width in
    pixels; circle radius twice; triangle height, side; ellipse row and column
    semi-axes); rotation float64 [N, 5] (ellipse angle in [-pi, pi), else 0);
    color int64 [N, 5, 3] in 0..200; centroid float32 [N, 5, 2] (row, col), the
    mean pixel coordinate of each instance mask (NaN past num_objects). Zeros
    past num_objects unless stated. Shape k is `render_shapes` of its factors.
  """
  if num_examples < 1 or seed < 0 or start_index < 0 or side < MAX_SIZE:
    raise ValueError(f"need num_examples >= 1, seed >= 0, start_index >= 0, side >= "
                     f"{MAX_SIZE}; got {num_examples}, {seed}, {start_index}, {side}")
  indices = np.arange(start_index, start_index + num_examples)
  parts = [_chunk(seed, indices[i:i + _CHUNK], side)
           for i in range(0, num_examples, _CHUNK)]
  return procedural.Scenes(
      images=np.concatenate([p.images for p in parts]),
      instance=np.concatenate([p.instance for p in parts]),
      semantic=np.concatenate([p.semantic for p in parts]),
      factors={key: np.concatenate([p.factors[key] for p in parts])
               for key in parts[0].factors})


def object_centroids(instance: np.ndarray, max_objects: int = MAX_OBJECTS) -> np.ndarray:
  """Mean (row, col) pixel coordinate of each object of instance masks.

  Args:
    instance: int [N, H, W], 0 = background, 1..max_objects = objects.

  Returns:
    float32 [N, max_objects, 2]; NaN for ids absent from an image. The centre
    of mass, not the bounding-box centre: a clipped triangle's box centre can
    lie outside the image.
  """
  if instance.size and instance.max() > max_objects:
    raise ValueError(f"instance ids must be <= max_objects={max_objects}, got "
                     f"{int(instance.max())}")
  centroids = np.full((len(instance), max_objects, 2), np.nan, np.float32)
  rows = np.arange(instance.shape[1], dtype=np.float64)
  cols = np.arange(instance.shape[2], dtype=np.float64)
  for k in range(max_objects):
    mask = instance == k + 1
    count = mask.sum(axis=(1, 2))
    present = count > 0
    # Sums of coordinates from the row and column marginals: no [N, H, W] floats.
    centroids[present, k, 0] = mask.sum(axis=2)[present] @ rows / count[present]
    centroids[present, k, 1] = mask.sum(axis=1)[present] @ cols / count[present]
  return centroids


def render_shapes(shape: np.ndarray, row: np.ndarray, col: np.ndarray,
                  extent: np.ndarray, rotation: np.ndarray,
                  side: int = DEFAULT_SIDE) -> np.ndarray:
  """Pixel masks of shapes from their factors (see `generate`), one per shape.

  Args:
    shape: int [M] in 0..3 (SHAPE_NAMES); row, col: int [M] anchors in
      0..side-12; extent float [M, 2]; rotation float [M].

  Returns:
    bool [M, side, side], clipped to the image.
  """
  row, col = np.asarray(row, np.int64), np.asarray(col, np.int64)
  window = _windows(np.asarray(shape), row, col, np.asarray(extent, np.float64),
                    np.asarray(rotation, np.float64), side)
  canvas = np.zeros((len(row), side + 2 * _PAD, side + 2 * _PAD), bool)
  rows, cols = _window_pixels(row, col)
  canvas[np.arange(len(row))[:, None, None], rows, cols] = window
  return canvas[:, _PAD:_PAD + side, _PAD:_PAD + side]


def _window_pixels(row, col):
  """Padded-canvas indices [M, R, 1] and [M, 1, C] of the windows around anchors."""
  rows = (row + _PAD)[:, None, None] + _ROW_OFFSETS[None, :, None]
  cols = (col + _PAD)[:, None, None] + _COL_OFFSETS[None, None, :]
  return rows, cols


def _windows(shape, row, col, extent, rotation, side):
  """bool [M, R, C]: the shapes' pixels at _ROW_OFFSETS x _COL_OFFSETS of the anchor."""
  dr = _ROW_OFFSETS[None, :, None]
  dc = _COL_OFFSETS[None, None, :]
  window = np.zeros((len(shape), len(_ROW_OFFSETS), len(_COL_OFFSETS)), bool)
  sel = np.flatnonzero(shape == _RECTANGLE)
  if sel.size:
    height = extent[sel, 0, None, None]
    width = extent[sel, 1, None, None]
    window[sel] = (dr >= 0) & (dr < height) & (dc >= 0) & (dc < width)
  sel = np.flatnonzero(shape == _CIRCLE)
  if sel.size:
    radius = np.full(sel.size, float(CIRCLE_RADIUS))
    window[sel] = _ellipse(row[sel], col[sel], radius, radius, np.zeros(sel.size),
                           None)
  sel = np.flatnonzero(shape == _TRIANGLE)
  if sel.size:
    height = extent[sel, 0].astype(np.int64)[:, None, None]
    base = extent[sel, 1].astype(np.int64)[:, None, None]
    apex = base // 2
    # The closed triangle: below the apex, right of the left edge, left of the right.
    window[sel] = ((dr <= 0) & (height * dc + apex * dr >= 0)
                   & (height * (base - dc) + (base - apex) * dr >= 0))
  sel = np.flatnonzero(shape == _ELLIPSE)
  if sel.size:
    window[sel] = _ellipse(row[sel], col[sel], extent[sel, 0], extent[sel, 1],
                           rotation[sel], side)
  inside = ((row[:, None, None] + dr >= 0) & (row[:, None, None] + dr < side)
            & (col[:, None, None] + dc >= 0) & (col[:, None, None] + dc < side))
  return window & inside


def _ellipse(row, col, r_radius, c_radius, rotation, side):
  """skimage.draw.ellipse's pixels relative to integer centres, bool [M, R, C].

  The same float64 operations in the same order, so that pixels on the boundary
  fall on the same side; side=None leaves the bounding box unclipped (disk).
  """
  r_radius, c_radius = r_radius[:, None, None], c_radius[:, None, None]
  angle = np.mod(rotation, np.pi)[:, None, None]
  # Bounding box of the rotated ellipse, clipped to the image as skimage does.
  r_extent = np.abs(r_radius * np.cos(angle)) + c_radius * np.sin(angle)
  c_extent = r_radius * np.sin(angle) + np.abs(c_radius * np.cos(angle))
  row, col = row[:, None, None], col[:, None, None]
  top, left = np.ceil(row - r_extent), np.ceil(col - c_extent)
  bottom, right = np.floor(row + r_extent), np.floor(col + c_extent)
  if side is not None:
    top, left = np.maximum(top, 0), np.maximum(left, 0)
    bottom, right = np.minimum(bottom, side - 1), np.minimum(right, side - 1)
  angle = np.mod(angle, np.pi)  # skimage reduces the angle a second time.
  sin, cos = np.sin(angle), np.cos(angle)
  r = _ROW_OFFSETS[None, :, None].astype(np.float64)
  c = _COL_OFFSETS[None, None, :].astype(np.float64)
  distance = (((r * cos + c * sin) / r_radius) ** 2
              + ((r * sin - c * cos) / c_radius) ** 2)
  pixel_row = row + _ROW_OFFSETS[None, :, None]
  pixel_col = col + _COL_OFFSETS[None, None, :]
  return ((distance < 1) & (pixel_row >= top) & (pixel_row <= bottom)
          & (pixel_col >= left) & (pixel_col <= right))


def _trial_shapes(shape, uniforms, side):
  """One trial per scene: uniforms [m, 5] -> row, col, extent [m, 2], rotation, fits.

  Integers are floor(u * count) for skimage's randint(count); skimage's
  `uniform(low, high)` is low + (high - low) * u.
  """
  u = np.moveaxis(uniforms, -1, 0)
  span = side - MIN_SIZE  # skimage: randint(max(1, side - min_size)).
  row = (u[0] * span).astype(np.int64)
  col = (u[1] * span).astype(np.int64)
  # Rectangle: randint(max(1, min(side - anchor, max_size) - min_size)) extra pixels.
  rect_rows = np.maximum(1, np.minimum(side - row, MAX_SIZE) - MIN_SIZE)
  rect_cols = np.maximum(1, np.minimum(side - col, MAX_SIZE) - MIN_SIZE)
  rect = np.stack([MIN_SIZE + (u[2] * rect_rows).astype(np.int64),
                   MIN_SIZE + (u[3] * rect_cols).astype(np.int64)], -1)
  # Triangle side: min_size - 1 + randint(max(1, min(side - col, row, max_size)
  # - min_size)).
  tri_count = np.maximum(1, np.minimum(np.minimum(side - col, row), MAX_SIZE) - MIN_SIZE)
  tri_side = MIN_SIZE - 1 + (u[2] * tri_count).astype(np.int64)
  tri = np.stack([np.ceil(np.sqrt(3 / 4.0) * tri_side), tri_side], -1)
  # Ellipse: semi-axes uniform in [min_size / 2, margin + 1), margin <= max_size / 2.
  border = np.minimum(np.minimum(row, col), np.minimum(side - row, side - col))
  margin = np.minimum(border, ELLIPSE_MAX_RADIUS)
  high = margin + 1
  ellipse = np.stack([ELLIPSE_MIN_RADIUS + (high - ELLIPSE_MIN_RADIUS) * u[2],
                      ELLIPSE_MIN_RADIUS + (high - ELLIPSE_MIN_RADIUS) * u[3]], -1)
  fits = np.choose(shape, [np.ones_like(row, bool), border >= CIRCLE_RADIUS,
                           np.ones_like(row, bool), margin >= ELLIPSE_MIN_RADIUS])
  circle = np.full(rect.shape, float(CIRCLE_RADIUS))
  extent = np.choose(shape[:, None], [rect.astype(np.float64), circle, tri, ellipse])
  rotation = np.where(shape == _ELLIPSE, -np.pi + 2 * np.pi * u[4], 0.0)
  return row, col, extent, rotation, fits


def _chunk(seed: int, indices: np.ndarray, side: int) -> procedural.Scenes:
  num = len(indices)
  trial_count = MAX_OBJECTS * NUM_TRIALS * _TRIAL_FIELDS
  draws = np.stack([np.random.default_rng([seed, _SALT, int(i)]).random(
      1 + 4 * MAX_OBJECTS + trial_count) for i in indices])
  span = MAX_OBJECTS - MIN_OBJECTS + 1
  num_shapes = MIN_OBJECTS + (draws[:, 0] * span).astype(np.int64)
  colors = (draws[:, 1:1 + 3 * MAX_OBJECTS] * (MAX_INTENSITY + 1)).astype(np.int64)
  colors = colors.reshape(num, MAX_OBJECTS, 3)
  classes = (draws[:, 1 + 3 * MAX_OBJECTS:1 + 4 * MAX_OBJECTS]
             * len(SHAPE_NAMES)).astype(np.int64)
  trials = draws[:, 1 + 4 * MAX_OBJECTS:].reshape(
      num, MAX_OBJECTS, NUM_TRIALS, _TRIAL_FIELDS)

  canvas = np.zeros((num, side + 2 * _PAD, side + 2 * _PAD), np.uint8)
  placed = np.zeros(num, np.int64)
  factors = {
      "shape": np.full((num, MAX_OBJECTS), -1, np.int64),
      "row": np.zeros((num, MAX_OBJECTS), np.int64),
      "col": np.zeros((num, MAX_OBJECTS), np.int64),
      "extent": np.zeros((num, MAX_OBJECTS, 2)),
      "rotation": np.zeros((num, MAX_OBJECTS)),
      "color": np.zeros((num, MAX_OBJECTS, 3), np.int64),
  }
  for layer in range(MAX_OBJECTS):
    pending = np.flatnonzero(num_shapes > layer)
    for trial in range(NUM_TRIALS):
      if not pending.size:
        break
      shape = classes[pending, layer]
      row, col, extent, rotation, fits = _trial_shapes(
          shape, trials[pending, layer, trial], side)
      window = _windows(shape, row, col, extent, rotation, side) & fits[:, None, None]
      rows, cols = _window_pixels(row, col)
      under = canvas[pending[:, None, None], rows, cols]
      ok = fits & ~np.any(window & (under > 0), axis=(1, 2))
      done, slot = pending[ok], placed[pending[ok]]
      canvas[done[:, None, None], rows[ok], cols[ok]] = np.where(
          window[ok], (slot + 1).astype(np.uint8)[:, None, None], under[ok])
      for key, value in (("shape", shape), ("row", row), ("col", col),
                         ("extent", extent), ("rotation", rotation)):
        factors[key][done, slot] = value[ok]
      factors["color"][done, slot] = colors[done, layer]
      placed[done] += 1
      pending = pending[~ok]
    # Shapes still pending are dropped, as after skimage's num_trials failures.

  instance = canvas[:, _PAD:_PAD + side, _PAD:_PAD + side]
  background = np.broadcast_to(np.array(BACKGROUND, np.int64), (num, 1, 3))
  # [n, 1 + 5, 3]: the background, then the shapes' colours.
  palette = np.concatenate([background, factors["color"]], axis=1).astype(np.uint8)
  semantic_ids = np.concatenate([np.zeros((num, 1), np.int64), factors["shape"] + 1], 1)
  rows_index = np.arange(num)[:, None, None]
  return procedural.Scenes(
      images=palette[rows_index, instance],
      instance=np.ascontiguousarray(instance),
      semantic=semantic_ids[rows_index, instance].astype(np.uint8),
      factors={"num_objects": placed, **factors,
               "centroid": object_centroids(instance)})
