"""Numerics of Deep Latent Particles (DLP): maps, glimpses, masks, stitching and KLs.

Positions are (y, x) = (row, col) in [-1, 1]. Two pixel conventions coexist, as in the
original, and both are kept exactly:

* Gaussian maps, the spatial softmax and the patch-to-image keypoint map use
  linspace(-1, 1, n): -1 is the centre of pixel 0, +1 the centre of pixel n - 1.
* Glimpse cropping, pasting and box masks use affine_grid / grid_sample translations
  with align_corners=False: a glimpse "at mu" is centred on pixel (n - 1) / 2 + mu n / 2.

Translations are separable (W_y X W_x^T with `placement.interpolation_matrix`), which
equals bilinear grid_sample with zero padding and is faster on CPU than a gather.
Arrays are channel-last: images [B, H, W, C], particles [B, N, 2].
"""

import jax
import jax.numpy as jnp
from jax import lax

from dti_jax.transforms import placement


def gaussian_maps(positions: jax.Array, side: int, std: float) -> jax.Array:
  """[B, N, 2] positions -> [B, side, side, N] isotropic Gaussians of std `std`.

  G[a, b] = exp(-((u_a - y)^2 + (u_b - x)^2) / (2 std^2)) on u = linspace(-1, 1, side),
  so a particle at (-1, -1) peaks at pixel (0, 0). Differentiable in the positions.
  """
  u = jnp.linspace(-1.0, 1.0, side, dtype=jnp.float32)
  rows = (u - positions[..., 0:1]) ** 2                       # [B, N, side]
  cols = (u - positions[..., 1:2]) ** 2
  maps = jnp.exp(-(rows[..., :, None] + cols[..., None, :]) / (2.0 * std ** 2))
  return jnp.moveaxis(maps, 1, -1)


def spatial_softmax_positions(heatmaps: jax.Array) -> jax.Array:
  """[B, h, w, C] heatmaps -> [B, C, 2] expected (y, x) positions (SpatialSoftmaxKP).

  Not a 2-D softmax: the rows' probabilities are a softmax over the row means and the
  columns' a softmax over the column means, each axis read on linspace(-1, 1, n); no
  temperature. A flat heatmap gives (0, 0) up to the rounding of linspace.
  """
  height, width = heatmaps.shape[1:3]
  rows = jax.nn.softmax(jnp.mean(heatmaps, axis=2), axis=1)   # [B, h, C]
  cols = jax.nn.softmax(jnp.mean(heatmaps, axis=1), axis=1)   # [B, w, C]
  u_rows = jnp.linspace(-1.0, 1.0, height, dtype=jnp.float32)
  u_cols = jnp.linspace(-1.0, 1.0, width, dtype=jnp.float32)
  y = jnp.sum(rows * u_rows[None, :, None], axis=1)
  x = jnp.sum(cols * u_cols[None, :, None], axis=1)
  return jnp.stack([y, x], axis=-1)


def patch_origins_to_global(local: jax.Array, patch: int, side: int) -> jax.Array:
  """[B, n*n, 2] positions inside P x P patches -> [B, n*n, 2] image positions.

  Patch i * n + j (row i, column j, n = side // patch) has its top-left pixel at
  (i P, j P); per axis m = 2 ((l + 1) / 2 (P - 1) + origin) / (S - 1) - 1, both sides
  in the linspace convention, so local (-1, -1) of patch 0 is image (-1, -1).

  Raises:
    ValueError: if the number of positions is not the number of patches.
  """
  per_side = side // patch
  if local.shape[1] != per_side * per_side:
    raise ValueError(f"{local.shape[1]} patch positions for side {side} and patch {patch}; "
                     f"expected {per_side * per_side}")
  index = jnp.arange(per_side * per_side)
  origin = jnp.stack([index // per_side, index % per_side], axis=-1).astype(jnp.float32) * patch
  pixel = (local + 1.0) * 0.5 * (patch - 1) + origin
  return 2.0 * pixel / (side - 1) - 1.0


def _separable(w_rows: jax.Array, image: jax.Array, w_cols: jax.Array) -> jax.Array:
  """W_rows X W_cols^T: [o, h] x [h, w, C] x [p, w] -> [o, p, C].

  HIGHEST precision so that accelerators do not round the interpolation weights to
  TF32 / bf16, which would move sub-pixel positions.
  """
  rows = jnp.einsum("oh,hwc->owc", w_rows, image, precision=lax.Precision.HIGHEST)
  return jnp.einsum("owc,pw->opc", rows, w_cols, precision=lax.Precision.HIGHEST)


def _crop_matrix(mu, size, in_size):
  """[size, in_size] weights: glimpse pixel r reads input pixel in_size//2 - size//2 + r
  + mu in_size / 2, i.e. translate by -mu, then take rows [S//2 - g//2, S//2 + g//2).

  With S - g even the glimpse centre is pixel (S - 1) / 2 + mu S / 2; otherwise it is
  half a pixel above/left of it, as in the original's integer slicing.
  """
  start = in_size // 2 - size // 2
  shift = mu + (2 * start + size - in_size) / in_size
  return placement.interpolation_matrix(size / in_size, shift, size, in_size)


def _crop_one(image, center, size):
  """[H, W, C] image, [2] centre -> [size, size, C] glimpse."""
  height, width = image.shape[:2]
  return _separable(_crop_matrix(center[0], size, height), image,
                    _crop_matrix(center[1], size, width))


def crop_glimpses(images: jax.Array, centers: jax.Array, size: int) -> jax.Array:
  """Bilinear size x size windows centred on the particles, zeros outside the image.

  Equals the original's translate-by-minus-centre (grid_sample, align_corners=False,
  zero padding) followed by cropping rows/columns [S//2 - size//2, S//2 + size//2).
  Differentiable in images and centres (the encoder passes detached centres).

  Args:
    images: [B, H, W, C], shared by all particles, or [B, N, H, W, C], one image per
      particle (e.g. the image masked by each particle's box).
    centers: [B, N, 2] (y, x) in [-1, 1].
    size: glimpse side g.

  Returns:
    [B, N, size, size, C] glimpses.
  """
  per_particle = jax.vmap(_crop_one, (0 if images.ndim == 5 else None, 0, None))
  return jax.vmap(per_particle, (0, 0, None))(images, centers, size)


def _check_even_margin(inner, side, name):
  if (side - inner) % 2:
    raise ValueError(f"{name} {inner} and side {side} must differ by an even number "
                     "of pixels to be padded symmetrically")


def _paste_one(patch, center, side):
  """[g, g, C] patch, [2] centre -> [side, side, C] canvas."""
  size = patch.shape[0]
  scale = side / size
  w_rows = placement.interpolation_matrix(scale, -center[0] * scale, side, size)
  w_cols = placement.interpolation_matrix(scale, -center[1] * scale, side, size)
  return _separable(w_rows, patch, w_cols)


def paste_glimpses(patches: jax.Array, centers: jax.Array, side: int) -> jax.Array:
  """Places each g x g patch on a side x side canvas, centred on its particle.

  Equals padding the patch by (side - g) / 2 on every side and translating by the centre
  (grid_sample, align_corners=False, bilinear, zero padding): the patch centre lands on
  pixel (side - 1) / 2 + mu side / 2. Differentiable in the centres (the decoder's
  gradient reaches the sampled positions this way). Values are not clamped.

  Args:
    patches: [B, N, g, g, C].
    centers: [B, N, 2] (y, x) in [-1, 1].
    side: canvas side S.

  Returns:
    [B, N, side, side, C].

  Raises:
    ValueError: if side - g is odd (the original's padding would change the size).
  """
  _check_even_margin(patches.shape[2], side, "glimpse size")
  per_particle = jax.vmap(_paste_one, (0, 0, None))
  return jax.vmap(per_particle, (0, 0, None))(patches, centers, side)


def _box_indicator(mu, box, side):
  """[side] 1-D box of width `box` sampled at the translated positions, nearest pixel
  (grid_sample 'nearest' rounds half to even, as jnp.round does)."""
  margin = (side - box) // 2
  nearest = jnp.round(placement.source_positions(1.0, -mu, side, side))
  return ((nearest >= margin) & (nearest < margin + box)).astype(jnp.float32)


def box_masks(centers: jax.Array, box: int, side: int) -> jax.Array:
  """[B, N, 2] centres -> [B, N, side, side] binary box x box squares (create_masks_fast).

  A centred box padded to side x side and translated to the particle with nearest
  sampling (align_corners=False, zeros outside). The square is separable, so it is the
  outer product of two 1-D indicators. Carries no gradient.

  Raises:
    ValueError: if side - box is odd.
  """
  _check_even_margin(box, side, "box")
  centers = lax.stop_gradient(centers)
  indicator = jax.vmap(jax.vmap(_box_indicator, (0, None, None)), (0, None, None))
  rows = indicator(centers[..., 0], box, side)                 # [B, N, side]
  cols = indicator(centers[..., 1], box, side)
  return rows[..., :, None] * cols[..., None, :]


def exclusive_masks(masks: jax.Array) -> jax.Array:
  """[B, N, ...] masks made exclusive in slot order (earlier slots win).

  m'_1 = m_1 and m'_k = min(1 - sg(sum_{j<k} m'_j), m_k): a slot only gets the space the
  earlier slots left, and the occupancy is detached so a later slot cannot push an
  earlier one away through the gradient.
  """
  first = masks[:, 0]

  def take_free_space(occupancy, mask):
    mask = jnp.minimum(1.0 - lax.stop_gradient(occupancy), mask)
    return occupancy + mask, mask

  _, rest = lax.scan(take_free_space, first, jnp.moveaxis(masks[:, 1:], 1, 0))
  return jnp.concatenate([first[:, None], jnp.moveaxis(rest, 0, 1)], axis=1)


def stitch(alphas: jax.Array, rgbs: jax.Array,
           background: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Alpha stitching of pasted glimpses over a background (the original's method "c").

  With m = `exclusive_masks(alphas)`, image = (1 - clip(sum_k m_k, 0, 1)) background +
  sum_k m_k rgb_k; slot order is depth order (earlier slots in front).

  Args:
    alphas: [B, N, S, S, 1] pasted alpha channels.
    rgbs: [B, N, S, S, 3] pasted colours.
    background: [B, S, S, 3].

  Returns:
    (image [B, S, S, 3], objects [B, S, S, 3] = sum_k m_k rgb_k, used for plots).
  """
  masks = exclusive_masks(alphas)
  objects = jnp.sum(masks * rgbs, axis=1)
  coverage = jnp.clip(jnp.sum(masks, axis=1), 0.0, 1.0)
  return (1.0 - coverage) * background + objects, objects


def chamfer_kl(mu: jax.Array, logvar: jax.Array, proposals: jax.Array,
               prior_logvar: float) -> jax.Array:
  """Chamfer-KL between posterior particles and prior proposals, per image: [B].

  KL_ij = KL(N(mu_i, e^logvar_i) || N(m_j, e^prior_logvar)) summed over (y, x);
  the loss is sum_j min_i KL_ij + sum_i min_j KL_ij (both directions use KL(q || p)).

  Args:
    mu, logvar: [B, K, 2] posterior particles.
    proposals: [B, M, 2] prior keypoints m_j (gradient flows: the prior is trained).
    prior_logvar: log sigma^2 of every proposal.
  """
  variance = jnp.exp(logvar)[:, :, None]                       # [B, K, 1, 2]
  squared = (mu[:, :, None] - proposals[:, None]) ** 2          # [B, K, M, 2]
  kl = 0.5 * jnp.sum(prior_logvar - logvar[:, :, None]
                     + (variance + squared) / jnp.exp(prior_logvar) - 1.0, axis=-1)
  return jnp.sum(jnp.min(kl, axis=1), axis=1) + jnp.sum(jnp.min(kl, axis=2), axis=1)


def gaussian_kl(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, e^logvar) || N(0, I)) summed over particles and dims: [B, N, D] -> [B]."""
  kl = -0.5 * (1.0 + logvar - mu ** 2 - jnp.exp(logvar))
  return jnp.sum(kl, axis=(1, 2))


def knn_indices(positions: jax.Array, k: int) -> jax.Array:
  """[B, N, 2] -> [B, N, k] int32 indices of each node's k nearest nodes, self included.

  Squared Euclidean distances from explicit differences, so a node's distance to itself
  is exactly 0 and it comes first unless another node sits at the same position (ties
  go to the lower index, as lax.top_k keeps).
  """
  distances = jnp.sum((positions[:, :, None] - positions[:, None]) ** 2, axis=-1)
  _, indices = lax.top_k(-distances, k)
  return indices.astype(jnp.int32)


def psnr(x: jax.Array, y: jax.Array, axis=None) -> jax.Array:
  """-10 log10(mean((x - y)^2)) in dB; inf for identical inputs.

  With axis=None the mean runs over every element (the original's logged training PSNR,
  one number per batch); pass e.g. axis=(1, 2, 3) for one PSNR per image [B].
  """
  return -10.0 * jnp.log10(jnp.mean((x - y) ** 2, axis=axis))
