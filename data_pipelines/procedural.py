"""Procedural multi-object scenes: Tetrominoes and Multi-dSprites (colored_on_grayscale).

Offline stand-ins for the multi-object-datasets files, with per-pixel instance and
semantic ground truth. Scene i is a pure function of (seed, i): it does not depend
on how many scenes are generated nor on where generation starts. Parameters the
published descriptions leave open (block size and border shade, sprite size,
position and colour ranges, the visibility threshold) follow the method spec and are
assumptions, not measurements of the real data.

Layers are drawn in paint order by rejection sampling, vectorised over scenes: a
candidate layer is kept when every earlier layer of its scene keeps enough of its
pixels visible under it (all of them for tetrominoes, which never overlap).
"""

import dataclasses
from typing import Callable

import numpy as np

DEFAULT_NUM_EXAMPLES = 60_000

# The 19 fixed tetrominoes as (row, col) cells; class id = position, semantic = id + 1.
TETROMINO_SHAPES = (
    ((0, 0), (0, 1), (0, 2), (0, 3)), ((0, 0), (1, 0), (2, 0), (3, 0)),  # I
    ((0, 0), (0, 1), (1, 0), (1, 1)),  # O
    ((0, 1), (1, 0), (1, 1), (1, 2)), ((0, 0), (1, 0), (1, 1), (2, 0)),  # T
    ((0, 0), (0, 1), (0, 2), (1, 1)), ((0, 1), (1, 0), (1, 1), (2, 1)),
    ((0, 1), (0, 2), (1, 0), (1, 1)), ((0, 0), (1, 0), (1, 1), (2, 1)),  # S
    ((0, 0), (0, 1), (1, 1), (1, 2)), ((0, 1), (1, 0), (1, 1), (2, 0)),  # Z
    ((0, 0), (1, 0), (1, 1), (1, 2)), ((0, 0), (0, 1), (1, 0), (2, 0)),  # J
    ((0, 0), (0, 1), (0, 2), (1, 2)), ((0, 1), (1, 1), (2, 0), (2, 1)),
    ((0, 2), (1, 0), (1, 1), (1, 2)), ((0, 0), (1, 0), (2, 0), (2, 1)),  # L
    ((0, 0), (0, 1), (0, 2), (1, 0)), ((0, 0), (0, 1), (1, 1), (2, 1)),
)
# Red, green, blue, yellow, magenta, cyan at full saturation.
TETROMINO_COLORS = np.array(
    [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], np.float64)
TETROMINO_SIZE = 35
TETROMINO_BLOCK = 5  # Pixels per cell side: a piece spans at most 20 pixels.
TETROMINO_BORDER_SHADE = 0.8  # The 1-pixel edge of every block, times the colour.
NUM_TETROMINOES = 3

DSPRITES_SIZE = 64
DSPRITES_SHAPES = ("square", "ellipse", "heart")  # Semantic ids 1, 2, 3.
DSPRITES_MIN_OBJECTS, DSPRITES_MAX_OBJECTS = 2, 5
DSPRITES_MIN_VISIBLE = 0.25  # Fraction of a sprite's pixels later sprites must leave.
DSPRITES_SIDE = 20.0  # Sprite width in pixels at scale 1.
# The heart {(x^2 + y^2 - 1)^3 - x^2 y^3 <= 0} spans |x| <= 1.139, y in [-1, 1.236].
_HEART_HALF_WIDTH, _HEART_CENTER_Y = 1.139, 0.118

_CHUNK = 1024  # Scenes rendered together: bounds the [chunk, layers, H, W] masks.
_RETRIES = 8  # Candidates per layer drawn with the scene; rare misses draw more.
_MAX_ROUNDS = 100
_TETROMINO_SALT, _DSPRITES_SALT = 1, 2


@dataclasses.dataclass(frozen=True, eq=False)
class Scenes:
  """Generated scenes with ground truth.

  Attributes:
    images: uint8 [N, H, W, 3], round(255 * colour).
    instance: uint8 [N, H, W], 0 = background, 1..n = objects in paint order
      (visible pixels only).
    semantic: uint8 [N, H, W], 0 = background, 1 + shape class elsewhere.
    factors: per-object generative factors, arrays with leading axis N.
  """

  images: np.ndarray
  instance: np.ndarray
  semantic: np.ndarray
  factors: dict[str, np.ndarray]


def tetrominoes(num_examples: int = DEFAULT_NUM_EXAMPLES, *, seed: int = 0,
                start_index: int = 0) -> Scenes:
  """Scenes start_index.. of 35x35 Tetrominoes: 3 non-overlapping pieces on black.

  Each piece draws a uniform shape, a uniform colour (with replacement) and an
  integer top-left corner uniform over the positions keeping it inside the
  canvas; a piece overlapping an earlier one is redrawn whole. Factors: shape,
  color (index into TETROMINO_COLORS), top, left (pixels), all int64 [N, 3].
  """
  return _generate(_tetromino_chunk, num_examples, seed, start_index)


def multi_dsprites(num_examples: int = DEFAULT_NUM_EXAMPLES, *, seed: int = 0,
                   start_index: int = 0) -> Scenes:
  """Scenes start_index.. of 64x64 Multi-dSprites: 2-5 HSV sprites on a gray level.

  Sprites are painted in order (later ones on top); one that would leave an
  earlier sprite less than DSPRITES_MIN_VISIBLE of its pixels is redrawn whole.
  Factors: num_objects int64 [N]; background float64 [N] (gray level g); shape
  int64 [N, 5] (index into DSPRITES_SHAPES, -1 past num_objects); scale,
  orientation (radians), x, y (pixels, x along columns) float32 [N, 5]; color
  float64 [N, 5, 3] RGB in [0, 1]; zeros past num_objects. Sprite k is
  `render_sprites` of its factors.
  """
  return _generate(_dsprites_chunk, num_examples, seed, start_index)


def tetromino_footprints() -> tuple[np.ndarray, np.ndarray]:
  """Pixel footprints of the 19 shapes, top-left aligned in a 20x20 box.

  Returns:
    (mask bool [19, 20, 20], shade float64 [19, 20, 20]): shade is 1 inside a
    block, TETROMINO_BORDER_SHADE on its 1-pixel edge, 0 outside the piece.
  """
  side = 4 * TETROMINO_BLOCK
  block = np.full((TETROMINO_BLOCK, TETROMINO_BLOCK), TETROMINO_BORDER_SHADE)
  block[1:-1, 1:-1] = 1.0
  shade = np.zeros((len(TETROMINO_SHAPES), side, side))
  for index, cells in enumerate(TETROMINO_SHAPES):
    for row, col in cells:
      shade[index, row * TETROMINO_BLOCK:(row + 1) * TETROMINO_BLOCK,
            col * TETROMINO_BLOCK:(col + 1) * TETROMINO_BLOCK] = block
  return shade > 0, shade


def render_sprites(shape: np.ndarray, scale: np.ndarray, orientation: np.ndarray,
                   x: np.ndarray, y: np.ndarray, size: int = DSPRITES_SIZE) -> np.ndarray:
  """Binary masks of dSprites shapes (no anti-aliasing), one per sprite.

  A pixel (row, col) is covered when its centre (col + 0.5, row + 0.5), rotated
  by -orientation about (x, y), lies in the shape: a square of side
  s = DSPRITES_SIDE * scale, an ellipse with semi-axes (s/2, s/4), or the heart
  curve scaled to width s (upright at orientation 0). Only a window around each
  sprite is evaluated (every shape lies within 0.71 s of its centre), which makes
  the cost independent of the canvas size.

  Args:
    shape: int [M] in 0..2 (DSPRITES_SHAPES); scale, orientation, x, y: [M].
    size: Canvas side in pixels.

  Returns:
    bool [M, size, size].
  """
  shape = np.asarray(shape)
  side = DSPRITES_SIDE * np.asarray(scale, np.float32)
  x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
  num = len(shape)
  half = int(np.ceil(0.71 * side.max(initial=0.0))) + 1
  offsets = np.arange(-half, half)
  rows = np.floor(y).astype(np.int64)[:, None] + offsets  # [M, window] canvas rows.
  cols = np.floor(x).astype(np.int64)[:, None] + offsets
  dy = (rows.astype(np.float32) + np.float32(0.5) - y[:, None])[:, :, None]
  dx = (cols.astype(np.float32) + np.float32(0.5) - x[:, None])[:, None, :]
  angle = np.asarray(orientation, np.float32)[:, None, None]
  cos, sin = np.cos(angle), np.sin(angle)
  window = np.zeros((num, 2 * half, 2 * half), bool)
  for index, inside in enumerate((_in_square, _in_ellipse, _in_heart)):
    sel = np.flatnonzero(shape == index)
    if sel.size:
      u = cos[sel] * dx[sel] + sin[sel] * dy[sel]
      v = cos[sel] * dy[sel] - sin[sel] * dx[sel]
      window[sel] = inside(u, v, side[sel][:, None, None])
  # Paste into a canvas padded by the window size, so every index is in range.
  pad = 2 * half
  canvas = np.zeros((num, size + 2 * pad, size + 2 * pad), bool)
  canvas[np.arange(num)[:, None, None], rows[:, :, None] + pad,
         cols[:, None, :] + pad] = window
  return canvas[:, pad:pad + size, pad:pad + size]


def _in_square(u, v, side):
  return np.maximum(np.abs(u), np.abs(v)) <= side / 2


def _in_ellipse(u, v, side):
  return (2 * u / side) ** 2 + (4 * v / side) ** 2 <= 1


def _in_heart(u, v, side):
  k = 2 * _HEART_HALF_WIDTH / side
  hx2, hy = (u * k) ** 2, _HEART_CENTER_Y - v * k  # Rows grow downwards, the heart's y up.
  return (hx2 + hy * hy - 1) ** 3 - hx2 * hy ** 3 <= 0


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
  """float [..., 3] HSV in [0, 1] -> RGB in [0, 1] (the colorsys formula, vectorised)."""
  h, s, v = np.moveaxis(hsv, -1, 0)
  sector = np.floor(h * 6.0)
  f = h * 6.0 - sector
  p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
  sector = sector.astype(np.int64) % 6
  rgb = [np.choose(sector, channel) for channel in
         ((v, q, p, p, t, v), (t, v, v, q, p, p), (p, p, t, v, v, q))]
  return np.stack(rgb, axis=-1)


def _generate(chunk_fn: Callable[[int, np.ndarray], Scenes], num_examples: int,
              seed: int, start_index: int) -> Scenes:
  if num_examples < 1 or seed < 0 or start_index < 0:
    raise ValueError(f"need num_examples >= 1, seed >= 0, start_index >= 0; got "
                     f"{num_examples}, {seed}, {start_index}")
  indices = np.arange(start_index, start_index + num_examples)
  parts = [chunk_fn(seed, indices[i:i + _CHUNK])
           for i in range(0, num_examples, _CHUNK)]
  return Scenes(
      images=np.concatenate([p.images for p in parts]),
      instance=np.concatenate([p.instance for p in parts]),
      semantic=np.concatenate([p.semantic for p in parts]),
      factors={key: np.concatenate([p.factors[key] for p in parts])
               for key in parts[0].factors})


def _uniforms(seed: int, salt: int, indices: np.ndarray, round_: int,
              count: int) -> np.ndarray:
  """float64 [n, count] ~ U[0, 1): a stream per (seed, generator, scene, round)."""
  return np.stack([np.random.default_rng([seed, salt, int(i), round_]).random(count)
                   for i in indices])


def _sample_layers(seed: int, salt: int, indices: np.ndarray, pools: np.ndarray,
                   num_layers: np.ndarray,
                   render: Callable[[np.ndarray], np.ndarray],
                   min_visible: float, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Draws each scene's layers in paint order by rejection.

  Args:
    seed, salt, indices: Identify the scenes' random streams (for extra rounds).
    pools: float [n, L, R, F], the R candidate uniforms per layer drawn with the
      scene (round 0); more rounds come from `_uniforms(..., round_, L * R * F)`.
    num_layers: int [n], layers of each scene (<= L).
    render: uniforms [m, F] -> the candidates' pixels, bool [m, size, size].
    min_visible: A candidate is kept when every earlier layer keeps at least
      this fraction of its pixels visible once the candidate covers it.

  Returns:
    (uniforms [n, L, F] of the kept layers, zero past num_layers; visible bool
    [n, L, size, size], the pixels of each layer no later layer covers).
  """
  n, max_layers, retries, fields = pools.shape
  kept = np.zeros((n, max_layers, fields))
  visible = np.zeros((n, max_layers, size, size), bool)
  counts = np.zeros((n, max_layers), np.int64)
  for layer in range(max_layers):
    rows = np.flatnonzero(num_layers > layer)
    pool = pools[rows, layer]
    for attempt in range(retries * (_MAX_ROUNDS + 1)):
      if not rows.size:
        break
      if attempt and attempt % retries == 0:  # Only for the rare unlucky scenes.
        pool = _uniforms(seed, salt, indices[rows], attempt // retries,
                         pools[0].size).reshape((-1,) + pools.shape[1:])[:, layer]
      uniforms = pool[:, attempt % retries]
      candidate = render(uniforms)
      left = (visible[rows, :layer] & ~candidate[:, None]).sum(axis=(2, 3))
      ok = np.all(left >= min_visible * counts[rows, :layer], axis=1)
      done = rows[ok]
      visible[done, :layer] &= ~candidate[ok, None]
      visible[done, layer] = candidate[ok]
      counts[done, layer] = candidate[ok].sum(axis=(1, 2))
      kept[done, layer] = uniforms[ok]
      rows, pool = rows[~ok], pool[~ok]
    if rows.size:
      raise RuntimeError(f"no valid layer {layer} for scenes {indices[rows]} (seed "
                         f"{seed}) after {retries * (_MAX_ROUNDS + 1)} candidates")
  return kept, visible


def _ids(visible: np.ndarray, values: np.ndarray) -> np.ndarray:
  """uint8 [n, H, W]: values[i, k] where layer k of scene i is visible, else 0."""
  ids = np.zeros(visible.shape[:1] + visible.shape[2:], np.uint8)
  for k in range(visible.shape[1]):  # Visible pixels of different layers are disjoint.
    ids[visible[:, k]] = np.repeat(values[:, k], visible[:, k].sum(axis=(1, 2)))
  return ids


def _tetromino_chunk(seed: int, indices: np.ndarray) -> Scenes:
  masks, shades = tetromino_footprints()
  side = masks.shape[1]
  heights = TETROMINO_BLOCK * np.array([1 + max(r for r, _ in c) for c in TETROMINO_SHAPES])
  widths = TETROMINO_BLOCK * np.array([1 + max(c for _, c in cs) for cs in TETROMINO_SHAPES])
  num, layers, fields = len(indices), NUM_TETROMINOES, 4
  draws = _uniforms(seed, _TETROMINO_SALT, indices, 0, layers * _RETRIES * fields)
  pools = draws.reshape(num, layers, _RETRIES, fields)
  offsets = np.arange(side)

  def piece(uniforms):  # [..., 4] -> shape, colour, top, left (int64 [...] each).
    shape = (uniforms[..., 0] * len(TETROMINO_SHAPES)).astype(np.int64)
    color = (uniforms[..., 1] * len(TETROMINO_COLORS)).astype(np.int64)
    top = uniforms[..., 2] * (TETROMINO_SIZE - heights[shape] + 1)
    left = uniforms[..., 3] * (TETROMINO_SIZE - widths[shape] + 1)
    return shape, color, top.astype(np.int64), left.astype(np.int64)

  def place(table, shape, top, left):  # table [19, side, side] -> [m, 35, 35]
    # Pasted into a canvas padded by `side`: the box may overhang the bottom right.
    canvas = np.zeros((len(shape),) + (TETROMINO_SIZE + side,) * 2, table.dtype)
    canvas[np.arange(len(shape))[:, None, None], (top[:, None] + offsets)[:, :, None],
           (left[:, None] + offsets)[:, None, :]] = table[shape]
    return canvas[:, :TETROMINO_SIZE, :TETROMINO_SIZE]

  def render(uniforms):
    shape, _, top, left = piece(uniforms)
    return place(masks, shape, top, left)

  # The whole piece is redrawn on overlap: with its shape fixed, two earlier
  # pieces can leave no room for it.
  kept, visible = _sample_layers(seed, _TETROMINO_SALT, indices, pools,
                                 np.full(num, layers), render, 1.0, TETROMINO_SIZE)
  shape, color, top, left = piece(kept)
  shade = sum(place(shades, shape[:, k], top[:, k], left[:, k]) for k in range(layers))
  instance = _ids(visible, np.broadcast_to(np.arange(1, layers + 1), (num, layers)))
  palette = np.concatenate([np.zeros((num, 1, 3)), TETROMINO_COLORS[color]], axis=1)
  image = shade[..., None] * palette[np.arange(num)[:, None, None], instance]
  return Scenes(
      images=np.rint(image * 255).astype(np.uint8),
      instance=instance,
      semantic=_ids(visible, shape + 1),
      factors={"shape": shape, "color": color, "top": top, "left": left})


def _sprite_factors(uniforms: np.ndarray) -> dict[str, np.ndarray]:
  """Uniforms [..., 8] -> shape, scale, orientation, x, y and HSV colour of sprites."""
  u = np.moveaxis(uniforms, -1, 0)
  return {
      "shape": np.minimum((u[0] * len(DSPRITES_SHAPES)).astype(np.int64), 2),
      "scale": (0.5 + 0.5 * u[1]).astype(np.float32),
      "orientation": (2 * np.pi * u[2]).astype(np.float32),
      "x": (10.0 + 44.0 * u[3]).astype(np.float32),
      "y": (10.0 + 44.0 * u[4]).astype(np.float32),
      "color": hsv_to_rgb(np.stack([u[5], 0.5 + 0.5 * u[6], 0.5 + 0.5 * u[7]], -1)),
  }


def _dsprites_chunk(seed: int, indices: np.ndarray) -> Scenes:
  num, layers, fields = len(indices), DSPRITES_MAX_OBJECTS, 8
  draws = _uniforms(seed, _DSPRITES_SALT, indices, 0, 2 + layers * _RETRIES * fields)
  span = DSPRITES_MAX_OBJECTS - DSPRITES_MIN_OBJECTS + 1
  num_objects = DSPRITES_MIN_OBJECTS + (draws[:, 0] * span).astype(np.int64)
  background = draws[:, 1]
  pools = draws[:, 2:].reshape(num, layers, _RETRIES, fields)

  def render(uniforms):
    f = _sprite_factors(uniforms)
    return render_sprites(f["shape"], f["scale"], f["orientation"], f["x"], f["y"])

  kept, visible = _sample_layers(seed, _DSPRITES_SALT, indices, pools, num_objects,
                                 render, DSPRITES_MIN_VISIBLE, DSPRITES_SIZE)
  factors = _sprite_factors(kept)
  used = np.arange(layers)[None] < num_objects[:, None]
  factors["shape"] = np.where(used, factors["shape"], -1)
  for key in ("scale", "orientation", "x", "y", "color"):
    factors[key] = factors[key] * (used[..., None] if key == "color" else used)
  instance = _ids(visible, np.broadcast_to(np.arange(1, layers + 1), (num, layers)))
  palette = np.concatenate(  # [n, 1 + L, 3]: the background, then each sprite's colour.
      [np.repeat(background[:, None, None], 3, axis=2), factors["color"]], axis=1)
  palette = np.rint(palette * 255).astype(np.uint8)
  return Scenes(
      images=palette[np.arange(num)[:, None, None], instance],
      instance=instance,
      semantic=_ids(visible, factors["shape"] + 1),
      factors={"num_objects": num_objects, "background": background, **factors})
