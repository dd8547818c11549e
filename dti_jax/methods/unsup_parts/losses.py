"""The four losses of Unsupervised Part Discovery from Contrastive Reconstruction.

Shapes: P [B, H, W, K] soft part assignment (softmax over K), m [B, H, W, 1] binary
foreground mask, M = P * m. Every term is normalised by the foreground area of its
image, each with the original's epsilon (spec 4):

* feature loss L_f: per image, the expected squared distance of the masked perceptual
  features to their part means, sum_k sum_u M_ku |phi_u - mu_k|^2 / (sum_u m_u + 1e-5),
  summed over the batch (the original) or averaged (``reduction="mean"``);
* visual consistency L_v: the same on Lab colour, averaged over the batch;
* contrastive L_c: InfoNCE over the B x K part-mean descriptors: for part i of image a
  the positive is part i of one other image, the negatives every other part of every
  image (the same image included), temperature tau, averaged over the B K rows;
* equivariance L_e: KL(softmax(T(stopgrad logits)) || softmax(logits(T image))) per
  pixel, weighted by the warped mask T(m), normalised by its sum (+1e-7), averaged.

The squared distances are expanded as sum M |v|^2 - 2 mu . sum M v + |mu|^2 sum M, so
no [B, K, H, W, C] tensor is formed (768 channels at 256 x 256 would not fit).
"""

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def part_sums(weights: jax.Array, values: jax.Array) -> jax.Array:
  """[B, K, C] = sum_u weights_bku values_buc."""
  return jnp.einsum("bhwk,bhwc->bkc", weights, values, precision=HIGHEST)


def part_means(weights: jax.Array, values: jax.Array, eps: float) -> jax.Array:
  """[B, K, C] weighted means of ``values`` under each part's weights."""
  mass = jnp.sum(weights, axis=(1, 2))[..., None]           # [B, K, 1]
  return part_sums(weights, values) / (mass + eps)


def within_part_scatter(assignment: jax.Array, values: jax.Array, mask: jax.Array,
                        eps: float = 1e-5) -> jax.Array:
  """[B]: sum_k sum_u M_ku |v_u - mu_k|^2 / (sum_u m_u + eps), mu_k the M-weighted mean.

  ``assignment`` is M (already masked), ``values`` the per-pixel vectors [B, H, W, C].
  """
  mass = jnp.sum(assignment, axis=(1, 2))                   # [B, K]
  sums = part_sums(assignment, values)                      # [B, K, C]
  means = sums / (mass + eps)[..., None]
  squared_norms = jnp.sum(values * values, axis=-1, keepdims=True)   # [B, H, W, 1]
  total = (jnp.sum(assignment * squared_norms, axis=(1, 2, 3))
           - 2.0 * jnp.sum(means * sums, axis=(1, 2))
           + jnp.sum(jnp.sum(means * means, axis=-1) * mass, axis=1))
  return jnp.maximum(total, 0.0) / (jnp.sum(mask, axis=(1, 2, 3)) + eps)


def feature_loss(assignment: jax.Array, features: jax.Array, mask: jax.Array,
                 reduction: str = "sum") -> jax.Array:
  """L_f on the (masked) perceptual features; "sum" over images as the original."""
  per_image = within_part_scatter(assignment, features, mask)
  return jnp.sum(per_image) if reduction == "sum" else jnp.mean(per_image)


def visual_consistency_loss(assignment: jax.Array, lab: jax.Array,
                            mask: jax.Array) -> jax.Array:
  """L_v on Lab colour, averaged over images."""
  return jnp.mean(within_part_scatter(assignment, lab, mask))


def l2_normalize(z: jax.Array, axis: int = -1) -> jax.Array:
  """z / max(|z|, 1e-12) with a finite gradient at z = 0 (F.normalize)."""
  return z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=axis, keepdims=True), 1e-24))


def positive_images(key: jax.Array, batch: int, parts: int) -> jax.Array:
  """[B, K] index of the other image whose same part is each row's positive, uniform over
  the B - 1 other images (the original never picks the first other image; see spec)."""
  offsets = jax.random.randint(key, (batch, parts), 1, batch)
  return (jnp.arange(batch)[:, None] + offsets) % batch


def contrastive_loss(descriptors: jax.Array, key: jax.Array, temperature: float
                     ) -> jax.Array:
  """L_c over part descriptors z [B, K, C] (mean over the B K rows)."""
  batch, parts, _ = descriptors.shape
  z = l2_normalize(descriptors)
  scores = jnp.einsum("aic,bjc->aibj", z, z, precision=HIGHEST) / temperature
  other = positive_images(key, batch, parts)                              # [B, K]
  same_part = scores[jnp.arange(batch)[:, None], jnp.arange(parts)[None, :], :,
                     jnp.arange(parts)[None, :]]                          # [B, K, B]
  positive = jnp.take_along_axis(same_part, other[..., None], axis=-1)[..., 0]
  negative = ~jnp.eye(parts, dtype=bool)[:, None, :]                      # [K, 1, K] (i, b, j)
  negatives = jnp.where(negative[None], scores, -jnp.inf)                 # [B, K, B, K]
  normaliser = jnp.logaddexp(positive, jax.nn.logsumexp(negatives, axis=(2, 3)))
  return jnp.mean(normaliser - positive)


def equivariance_loss(target_logits: jax.Array, warped_logits: jax.Array,
                      warped_mask: jax.Array) -> jax.Array:
  """L_e: target_logits = T(logits of the image), detached here; warped_logits = logits
  of T(image); warped_mask = T(m) [B, H, W, 1] (soft at the edges)."""
  target = jax.nn.softmax(jax.lax.stop_gradient(target_logits), axis=-1)
  log_target = jax.nn.log_softmax(jax.lax.stop_gradient(target_logits), axis=-1)
  log_prediction = jax.nn.log_softmax(warped_logits, axis=-1)
  kl = jnp.sum(target * (log_target - log_prediction), axis=-1, keepdims=True)
  per_image = (jnp.sum(kl * warped_mask, axis=(1, 2, 3))
               / (jnp.sum(warped_mask, axis=(1, 2, 3)) + 1e-7))
  return jnp.mean(per_image)


def concentration_loss(assignment: jax.Array, eps: float = 1e-5) -> jax.Array:
  """SCOPS' geometric concentration: per part, the M-weighted variance of its pixel
  coordinates (in units of the image side) about its centre of mass; summed over parts,
  averaged over images. Zero for a part on a single pixel. The released part discovery
  trainer does not use it (weight 0 in every config here); kept for SCOPS ablations."""
  height, width = assignment.shape[1:3]
  ys, xs = jnp.meshgrid(jnp.arange(height) / height, jnp.arange(width) / width,
                        indexing="ij")
  mass = jnp.sum(assignment, axis=(1, 2))                                  # [B, K]
  cx = jnp.einsum("bhwk,hw->bk", assignment, xs) / (mass + eps)
  cy = jnp.einsum("bhwk,hw->bk", assignment, ys) / (mass + eps)
  squared = (jnp.square(xs[None, :, :, None] - cx[:, None, None, :])
             + jnp.square(ys[None, :, :, None] - cy[:, None, None, :]))    # [B, H, W, K]
  variance = jnp.sum(assignment * squared, axis=(1, 2)) / (mass + eps)
  return jnp.mean(jnp.sum(variance, axis=1))
