"""Thin-plate-spline image pairs of DLP's CelebA training (DVE's `utils/tps.py` Warper).

Unlike DTI-Clustering's TPS module (`dti_jax.transforms.tps`), which solves a spline
through displaced control points, the Warper draws the spline's *weights* directly.
At every output pixel p = (x, y) on linspace(-1, 1) the sampling position is
F(p) @ W, with F(p) = [U(|p - c_1|^2), ..., U(|p - c_100|^2), 1, x, y] over the 10 x 10
control grid c_n (the same row-major, x-fastest grid as `tps.control_points`),
U(r^2) = r^2 log(r^2 + 1e-5), and W [103, 2] = 100 radial weights followed by the
affine block [[tx, ty], [s cos a, -s sin a], [s sin a, s cos a]]. Zero radial weights
with tx = ty = a = 0 and s = 1 give the identity. Images are read with
grid_sample(align_corners=True, zeros padding).

A pair (spec 5.2): view A = the image warped with every standard deviation x 0.1 (the
original's im1_multiplier = im1_multiplier_aff = 0.1); view B = view A warped again
with the full standard deviations (a second interpolation of view A, not a composed
grid, as there). As in the original's `train_dlp.py` (x_prior = im1, x = im2), DLP
proposes keypoints on view A (prior) and encodes and reconstructs view B (posterior,
reconstruction target). Both are applied to the resized image before the border
crop (`crop_border`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.transforms.sampling import grid_sample
from dti_jax.transforms.tps import control_points

NUM_CONTROL = 10          # control points per side
WARP_SD_ALL = 0.001       # radial weights ~ N(0, 0.001^2) ...
WARP_SD_SUBSET = 0.01     # ... a random half (per entry) redrawn ~ N(0, 0.01^2)
TRANS_SD = 0.1            # tx, ty ~ N(0, 0.1^2), normalised units
SCALE_SD = 0.1            # s = 1 + N(0, 0.1^2)
ROT_SD_DEGREES = 5.0      # a ~ N(0, 5^2) degrees
VIEW_A_MULTIPLIER = 0.1   # view A's standard deviations relative to view B's
# Added before truncating to 8 bits, in levels: values that are whole levels up to float
# rounding (an identity warp reads x/255*255 through bilinear weights 1 - 1e-5) stay
# put instead of dropping one level.
_QUANTIZE_SLACK = 0.01


def radial_kernel(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
  """U(d^2) = d^2 log(d^2 + 1e-5) between [M, 2] points and [N, 2] centres -> [M, N]."""
  diff = points[:, None, :] - centres[None, :, :]
  squared = np.sum(diff * diff, axis=-1)
  return squared * np.log(squared + 1e-5)


@functools.lru_cache(maxsize=None)
def tps_features(height: int, width: int) -> np.ndarray:
  """F [H * W, N + 3] (N = 100): radial terms, 1, x, y of every pixel, row-major.

  Built once on the host in float64, stored read-only as float32.
  """
  xs = np.linspace(-1.0, 1.0, width)
  ys = np.linspace(-1.0, 1.0, height)
  grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
  pixels = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
  centres = control_points(NUM_CONTROL).astype(np.float64)
  features = np.concatenate(
      [radial_kernel(pixels, centres), np.ones((len(pixels), 1)), pixels], axis=1)
  features = features.astype(np.float32)
  features.setflags(write=False)  # shared through the cache
  return features


def affine_weights(tx, ty, scale, rotation) -> jax.Array:
  """The Warper's affine block [3, 2] for a translation (normalised units), a scale
  and a rotation in radians."""
  cos, sin = scale * jnp.cos(rotation), scale * jnp.sin(rotation)
  return jnp.array([[tx, ty], [cos, -sin], [sin, cos]], jnp.float32)


def identity_weights() -> jax.Array:
  """W [N + 3, 2] of the identity warp."""
  return jnp.concatenate([jnp.zeros((NUM_CONTROL ** 2, 2), jnp.float32),
                          affine_weights(0.0, 0.0, 1.0, 0.0)])


def random_weights(key: jax.Array, *, warp_sd_all: float = WARP_SD_ALL,
                   warp_sd_subset: float = WARP_SD_SUBSET, trans_sd: float = TRANS_SD,
                   scale_sd: float = SCALE_SD,
                   rot_sd_degrees: float = ROT_SD_DEGREES) -> jax.Array:
  """One draw of the Warper's W [N + 3, 2] (`random_tps_weights`)."""
  keys = jax.random.split(key, 7)
  shape = (NUM_CONTROL ** 2, 2)
  radial = jax.random.normal(keys[0], shape) * warp_sd_all
  subset = jax.random.uniform(keys[1], shape) > 0.5
  radial = jnp.where(subset, jax.random.normal(keys[2], shape) * warp_sd_subset, radial)
  rotation = jax.random.normal(keys[3]) * rot_sd_degrees * jnp.pi / 180.0
  scale = 1.0 + jax.random.normal(keys[4]) * scale_sd
  tx = jax.random.normal(keys[5]) * trans_sd
  ty = jax.random.normal(keys[6]) * trans_sd
  return jnp.concatenate([radial, affine_weights(tx, ty, scale, rotation)])


def warp(image: jax.Array, weights: jax.Array) -> jax.Array:
  """[H, W, C] image read at the TPS grid F @ W (align_corners=True, zeros outside)."""
  height, width, _ = image.shape
  features = jnp.asarray(tps_features(height, width))
  grid = jnp.matmul(features, weights, precision=jax.lax.Precision.HIGHEST)
  return grid_sample(image, grid.reshape(height, width, 2), align_corners=True,
                     padding_mode="zeros")


def quantize(images: jax.Array) -> jax.Array:
  """The original's round trip through uint8: truncation of value * 255, then / 255."""
  levels = jnp.clip(images * 255.0, 0.0, 255.0) + _QUANTIZE_SLACK
  return jnp.floor(levels) / 255.0


def tps_pair(key: jax.Array, images: jax.Array, *, multiplier: float = VIEW_A_MULTIPLIER,
             quantize_views: bool = True, **stds: float) -> tuple[jax.Array, jax.Array]:
  """Warped views (A, B) of a batch, one independent pair of warps per image.

  Args:
    key: PRNG key of the batch.
    images: [B, H, W, C] in [0, 1] (the resized images, border still on).
    multiplier: view A's standard deviations relative to view B's (0.1).
    quantize_views: cut both views to 8 bits as the original does (`quantize`).
    **stds: overrides of `random_weights`' standard deviations (view B's).

  Returns:
    view_a, view_b: [B, H, W, C]; view B is view A warped again.
  """
  a_stds = {name: multiplier * value for name, value in {
      "warp_sd_all": WARP_SD_ALL, "warp_sd_subset": WARP_SD_SUBSET, "trans_sd": TRANS_SD,
      "scale_sd": SCALE_SD, "rot_sd_degrees": ROT_SD_DEGREES, **stds}.items()}

  def one(image_key, image):
    key_a, key_b = jax.random.split(image_key)
    view_a = warp(image, random_weights(key_a, **a_stds))
    view_b = warp(view_a, random_weights(key_b, **stds))
    return view_a, view_b

  view_a, view_b = jax.vmap(one)(jax.random.split(key, images.shape[0]), images)
  if quantize_views:
    view_a, view_b = quantize(view_a), quantize(view_b)
  return view_a, view_b


def crop_border(images: jax.Array, border: int) -> jax.Array:
  """[B, H, W, C] -> [B, H - 2 border, W - 2 border, C] (no-op for border 0)."""
  if border <= 0:
    return images
  return images[:, border:-border, border:-border]
