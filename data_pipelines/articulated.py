"""Procedural articulated "birds" with part labels: the unsupervised-parts toy benchmark.

An offline stand-in for CUB-like part discovery (spec section 12): one figure per
image, five parts (head, torso, wing, tail, legs) with articulated geometry, part
colours drawn from two hues fixed per part type, and per-part textures, on a noisy
gradient background. Colour alone is ambiguous across part types and images, while
geometry, texture and within-part colour uniformity are consistent, so a method has
to use more than colour clustering to beat the baselines.

Geometry is given in pixels of a 64-pixel canvas (other sides scale it); x runs
along columns, y along rows (downwards), pixel centres at (col + 0.5, row + 0.5).
R(phi) is the rotation matrix [[cos, -sin], [sin, cos]] applied to (x, y) vectors.
Image i is a pure function of (seed, i): every image draws from its own stream.
"""

import numpy as np

from data_pipelines import procedural

DEFAULT_NUM_EXAMPLES = 2000
DEFAULT_SIDE = 64
PART_NAMES = ("background", "head", "torso", "wing", "tail", "legs")  # Label = position.
HEAD, TORSO, WING, TAIL, LEGS = range(1, 6)
# The two hues of each part type (labels 1..5), one drawn per part with p = 1/2.
PART_HUES = np.array([[0.0, 0.6], [0.33, 0.0], [0.6, 0.15], [0.15, 0.8], [0.8, 0.33]])
HUE_JITTER = 0.05
SATURATION = (0.5, 0.95)
VALUE = (0.45, 0.95)
BACKGROUND_SATURATION = (0.0, 0.4)
BACKGROUND_VALUE = (0.3, 0.9)
BACKGROUND_NOISE, FINAL_NOISE = 0.03, 0.02
SCALE = (1.2, 1.6)
MAX_ROTATION = 0.6  # Radians, body axis.
MAX_SHIFT = 4.0  # Pixels, figure centre from the image centre along x and y.
LEG_ANGLE, TAIL_ANGLE, HEAD_ANGLE = 0.4, 0.6, 0.6  # Symmetric ranges U(-r, r).
WING_ANGLE = (-0.7, 0.5)
# Keypoints in `factors`: the centres of head, torso and wing, the tail tip and
# the two leg tips (front leg first).
KEYPOINT_NAMES = ("head", "torso", "wing", "tail_tip", "front_leg_tip", "back_leg_tip")

_REFERENCE_SIDE = 64.0  # The side the geometry above is written for.
_CHUNK = 256  # Images rendered together: bounds the [chunk, H, W] float arrays.
_SALT = 4  # Separates these streams from the other generators' for the same seed.
# Uniforms per image, in this order: scale, rotation, facing, centre x, y, leg
# angles (2), tail, wing and head angles, hue choice (5), hue jitter (5),
# saturation (5), value (5), background direction, background HSV (2 x 3).
_NUM_UNIFORMS = 37


def generate(num_examples: int = DEFAULT_NUM_EXAMPLES, *, seed: int = 0,
             start_index: int = 0, side: int = DEFAULT_SIDE) -> procedural.Scenes:
  """Images start_index.. of side x side articulated figures with part labels.

  Returns:
    Scenes with images uint8 [N, side, side, 3]; instance = semantic = the part
    label map uint8 [N, side, side] (0 background, then PART_NAMES: 1 head,
    2 torso, 3 wing, 4 tail, 5 legs; foreground = label > 0); factors: scale,
    rotation (radians) float64 [N]; facing int64 [N] (+1 right, -1 left);
    centre float64 [N, 2] (x, y pixels); hue float64 [N, 5] (labels 1..5, after
    jitter); color float64 [N, 5, 3] (RGB in [0, 1] before texture);
    keypoints float32 [N, 6, 2] (x, y pixels, KEYPOINT_NAMES) and
    keypoint_visible bool [N, 6] (inside the canvas).
  """
  if num_examples < 1 or seed < 0 or start_index < 0 or side < 8:
    raise ValueError(f"need num_examples >= 1, seed >= 0, start_index >= 0, side >= 8; "
                     f"got {num_examples}, {seed}, {start_index}, {side}")
  indices = np.arange(start_index, start_index + num_examples)
  parts = [_chunk(seed, indices[i:i + _CHUNK], side)
           for i in range(0, num_examples, _CHUNK)]
  labels = np.concatenate([p.instance for p in parts])
  return procedural.Scenes(
      images=np.concatenate([p.images for p in parts]),
      instance=labels,
      semantic=labels.copy(),
      factors={key: np.concatenate([p.factors[key] for p in parts])
               for key in parts[0].factors})


def _rotate(vectors: np.ndarray, angles: np.ndarray) -> np.ndarray:
  """R(angle) v for vectors [n, 2] (x, y) and angles [n]."""
  cos, sin = np.cos(angles), np.sin(angles)
  x, y = vectors[:, 0], vectors[:, 1]
  return np.stack([cos * x - sin * y, sin * x + cos * y], axis=-1)


def _frame(px, py, origin, axis):
  """Coordinates (along, across) [n, H, W] of pixels in the frame of a unit axis.

  `across` follows the axis turned by +90 degrees, R(pi/2) axis.
  """
  dx = px - origin[:, 0, None, None]
  dy = py - origin[:, 1, None, None]
  ax, ay = axis[:, 0, None, None], axis[:, 1, None, None]
  return dx * ax + dy * ay, dy * ax - dx * ay


def _bar(px, py, start, direction, length, width):
  """(mask, along, across) of a bar from start, `length` along direction, `width` wide."""
  along, across = _frame(px, py, start, direction)
  inside = (along >= 0) & (along <= length[:, None, None]) & (
      np.abs(across) <= width[:, None, None] / 2)
  return inside, along, across


def _ellipse(px, py, centre, axis, semi_along, semi_across):
  along, across = _frame(px, py, centre, axis)
  return ((along / semi_along[:, None, None]) ** 2
          + (across / semi_across[:, None, None]) ** 2 <= 1)


def _uniform(u, low, high):
  return low + (high - low) * u


def _random_streams(seed: int, indices: np.ndarray, side: int):
  """Per image: uniforms [n, _NUM_UNIFORMS], then the two noise fields [n, 2, side, side, 3]."""
  uniforms = np.empty((len(indices), _NUM_UNIFORMS))
  noise = np.empty((len(indices), 2, side, side, 3), np.float32)
  for row, index in enumerate(indices):
    rng = np.random.default_rng([seed, _SALT, int(index)])
    uniforms[row] = rng.random(_NUM_UNIFORMS)
    noise[row] = rng.standard_normal((2, side, side, 3), np.float32)
  return uniforms, noise


def _background(u, px, py, side):
  """float64 [n, H, W, 3]: a linear gradient between two HSV colours in direction u[:, 0]."""
  angle = 2 * np.pi * u[:, 0]
  direction = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
  colours = [procedural.hsv_to_rgb(np.stack(
      [u[:, k], _uniform(u[:, k + 1], *BACKGROUND_SATURATION),
       _uniform(u[:, k + 2], *BACKGROUND_VALUE)], axis=-1)) for k in (1, 4)]
  # 0 and 1 at the two canvas corners furthest along the direction.
  along, _ = _frame(px, py, np.full((len(u), 2), side / 2), direction)
  extent = side / 2 * (np.abs(direction[:, 0]) + np.abs(direction[:, 1]))
  t = (along / extent[:, None, None] + 1) / 2
  start, end = colours[0][:, None, None], colours[1][:, None, None]
  return start + t[..., None] * (end - start)


def _chunk(seed: int, indices: np.ndarray, side: int) -> procedural.Scenes:
  num = len(indices)
  unit = side / _REFERENCE_SIDE
  u, noise = _random_streams(seed, indices, side)
  s = _uniform(u[:, 0], *SCALE) * unit
  theta = _uniform(u[:, 1], -MAX_ROTATION, MAX_ROTATION)
  facing = np.where(u[:, 2] < 0.5, 1, -1)
  centre = side / 2 + _uniform(u[:, 3:5], -MAX_SHIFT, MAX_SHIFT) * unit
  leg_angles = _uniform(u[:, 5:7], -LEG_ANGLE, LEG_ANGLE)
  tail_angle = _uniform(u[:, 7], -TAIL_ANGLE, TAIL_ANGLE)
  wing_angle = _uniform(u[:, 8], *WING_ANGLE)
  head_angle = _uniform(u[:, 9], -HEAD_ANGLE, HEAD_ANGLE)
  choice = (u[:, 10:15] < 0.5).astype(np.int64)
  hue = np.mod(np.take_along_axis(PART_HUES[None], choice[..., None], 2)[..., 0]
               + _uniform(u[:, 15:20], -HUE_JITTER, HUE_JITTER), 1.0)
  colour = procedural.hsv_to_rgb(np.stack(
      [hue, _uniform(u[:, 20:25], *SATURATION), _uniform(u[:, 25:30], *VALUE)], -1))

  coords = np.arange(side, dtype=np.float64) + 0.5
  px, py = coords[None, None, :], coords[None, :, None]
  image = _background(u[:, 30:], px, py, side) + BACKGROUND_NOISE * noise[:, 0]
  labels = np.zeros((num, side, side), np.uint8)

  def paint(mask, label, texture=None):  # Texture t [n, H, W] multiplies by 1 + t.
    shade = colour[:, label - 1, None, None, :]
    if texture is not None:
      shade = shade * (1 + texture)[..., None]
    image[mask] = np.broadcast_to(shade, image.shape)[mask]
    labels[mask] = label

  axis = _rotate(np.stack([facing, np.zeros(num)], -1).astype(np.float64), theta)
  up = _rotate(np.broadcast_to([0.0, -1.0], (num, 2)), theta)
  sa, sn = s[:, None] * axis, s[:, None] * up  # s a and s n, [n, 2].
  keypoints = np.zeros((num, len(KEYPOINT_NAMES), 2))
  for leg, sign in enumerate((1, -1)):  # Front leg, then back leg.
    start = centre + sign * 3 * sa - 5 * sn
    direction = _rotate(-up, leg_angles[:, leg])
    paint(_bar(px, py, start, direction, 10 * s, 2.2 * s)[0], LEGS)
    keypoints[:, 4 + leg] = start + 10 * s[:, None] * direction
  start = centre - 9 * sa
  direction = _rotate(-axis, tail_angle)
  mask, along, across = _bar(px, py, start, direction, 11 * s, 6 * s)
  period = 3 * s[:, None, None]
  paint(mask, TAIL, 0.15 * np.sign(np.sin(np.pi * along / period)
                                    * np.sin(np.pi * across / period + 0.3)))
  keypoints[:, 3] = start + 11 * s[:, None] * direction
  along, _ = _frame(px, py, centre, axis)
  paint(_ellipse(px, py, centre, axis, 12 * s, 7.5 * s), TORSO,
        0.18 * np.sign(np.sin(np.pi * along / (2 * s[:, None, None]))))
  keypoints[:, 1] = centre
  wing_axis = _rotate(-axis, wing_angle)
  wing_centre = centre + 2 * sn + 6 * s[:, None] * wing_axis
  qx = (px - wing_centre[:, 0, None, None]) / period
  qy = (py - wing_centre[:, 1, None, None]) / period
  paint(_ellipse(px, py, wing_centre, wing_axis, 9 * s, 4 * s), WING,
        -0.25 * (np.sin(np.pi * qx) * np.sin(np.pi * qy) > 0.5))
  keypoints[:, 2] = wing_centre
  head_centre = centre + 10 * sa + 7 * s[:, None] * _rotate(axis, head_angle)
  disc = ((px - head_centre[:, 0, None, None]) ** 2
          + (py - head_centre[:, 1, None, None]) ** 2 <= (6 * s[:, None, None]) ** 2)
  paint(disc, HEAD)
  keypoints[:, 0] = head_centre

  image = np.clip(image + FINAL_NOISE * noise[:, 1], 0.0, 1.0)
  return procedural.Scenes(
      images=np.rint(image * 255).astype(np.uint8),
      instance=labels,
      semantic=labels,
      factors={
          "scale": s / unit, "rotation": theta, "facing": facing.astype(np.int64),
          "centre": centre, "hue": hue, "color": colour,
          "keypoints": keypoints.astype(np.float32),
          "keypoint_visible": np.all((keypoints >= 0) & (keypoints < side), axis=-1),
      })
