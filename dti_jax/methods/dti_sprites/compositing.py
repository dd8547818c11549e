"""Layer compositing with an occlusion matrix (DTI-Sprites; reused by layered decoders).

Slots are indexed 0..S-1, slot 0 usually the background. O[j, i] in [0, 1] says how much
slot j covers slot i ("j in front of i"). The composite is

  x_hat = sum_i ( prod_{j != i} (1 - O[j, i] a_j) ) a_i c_i,

which for the fixed order O[j, i] = 1 if j > i is ordinary back-to-front "over"
compositing with the last slot in front.
"""

import jax
import jax.numpy as jnp


def soft_clamp(x: jax.Array) -> jax.Array:
  """clip(x, 0, 1) with a 1 % slope outside [0, 1], so clamped values still get gradients."""
  return jnp.clip(x, 0.0, 1.0) + 0.01 * jnp.minimum(x, 0.0) + 0.01 * jnp.maximum(x - 1.0, 0.0)


def fixed_occlusion(num_slots: int) -> jax.Array:
  """[S, S] back-to-front order: O[j, i] = 1 if j > i (later slots in front)."""
  return jnp.tril(jnp.ones((num_slots, num_slots), jnp.float32), k=-1)


def predicted_occlusion(logits: jax.Array) -> jax.Array:
  """Object occlusion from L(L-1)/2 logits per image: [..., P] -> [..., L, L].

  sigmoid(logits) fills the strictly lower triangle (j > i) in row-major order
  ((1,0), (2,0), (2,1), (3,0), ...); the upper triangle is its complement, O[i, j] =
  1 - O[j, i]; the diagonal is 0. At zero logits every pair is 0.5.
  """
  pairs = logits.shape[-1]
  layers = int(round((1 + (1 + 8 * pairs) ** 0.5) / 2))
  if layers * (layers - 1) // 2 != pairs:
    raise ValueError(f"{pairs} occlusion logits do not fill a lower triangle")
  rows, cols = jnp.tril_indices(layers, k=-1)
  lower = jnp.zeros(logits.shape[:-1] + (layers, layers), logits.dtype)
  lower = lower.at[..., rows, cols].set(jax.nn.sigmoid(logits))
  upper = jnp.swapaxes(lower, -1, -2)
  strict_upper = jnp.triu(jnp.ones((layers, layers), bool), k=1)
  return lower + jnp.where(strict_upper, 1.0 - upper, 0.0)


def with_background(object_occlusion: jax.Array) -> jax.Array:
  """Adds background slot 0 to an [..., L, L] object matrix: [..., L+1, L+1].

  Row 0 is 0 (the background covers nothing), column 0 is 1 for every object (each
  object covers the background), the object block is unchanged.
  """
  layers = object_occlusion.shape[-1]
  batch = object_occlusion.shape[:-2]
  top = jnp.zeros(batch + (1, layers + 1), object_occlusion.dtype)
  left = jnp.ones(batch + (layers, 1), object_occlusion.dtype)
  bottom = jnp.concatenate([left, object_occlusion], axis=-1)
  return jnp.concatenate([top, bottom], axis=-2)


def compose(colours: jax.Array, alphas: jax.Array, occlusion: jax.Array) -> jax.Array:
  """Composites S slots of one image.

  Args:
    colours: [S, H, W, C] slot colours.
    alphas: [S, H, W, 1] slot opacities in [0, 1] (the background slot has alpha 1).
    occlusion: [S, S] matrix, O[j, i] = how much slot j covers slot i.

  Returns:
    [H, W, C] image. Vectorise over a batch with jax.vmap.
  """
  num_slots = colours.shape[0]
  # cover[j, i] = 1 - O[j, i] a_j; the diagonal must not occlude the slot itself.
  cover = 1.0 - occlusion[:, :, None, None, None] * alphas[:, None]
  cover = jnp.where(jnp.eye(num_slots, dtype=bool)[:, :, None, None, None], 1.0, cover)
  visibility = jnp.prod(cover, axis=0)                       # [S, H, W, 1]
  return jnp.sum(visibility * alphas * colours, axis=0)
