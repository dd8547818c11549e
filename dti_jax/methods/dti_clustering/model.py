"""DTI-Clustering model: transformation predictor and the DTI-KMeans / DTI-GMM objectives.

The prototype is warped to the image, never the reverse: one encoder reads the image
once, and for every prototype k and every transformation module m an MLP head
h_{k,m} predicts that module's parameters. Heads are stored stacked with a leading K
axis so one einsum evaluates all K of them.
"""

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dti_jax import transforms
from dti_jax.nets import heads, resnet

class TransformationPredictor(nn.Module):
  """Encoder + one head bank per non-identity module.

  Returns a tuple with one [B, K, P_m] array per module of ``spec.modules``; the
  identity and the inactive modules (index >= n_active) get zero-width / zero arrays
  and their heads are not evaluated, so they receive no gradient.
  """

  spec: transforms.TransformSpec
  encoder: str
  n_prototypes: int
  mixed_precision: bool = False

  def setup(self):
    self.encoder_net, _ = resnet.create_encoder(self.encoder,
                                                mixed_precision=self.mixed_precision)
    sizes = self.spec.param_sizes()
    self.heads = {
        name: heads.HeadBank(self.n_prototypes, size, name=f"head_{name}")
        for name, size in zip(self.spec.modules, sizes) if size > 0
    }

  def __call__(self, images: jax.Array, n_active: int, train: bool) -> tuple[jax.Array, ...]:
    batch = images.shape[0]
    needs_encoder = any(size > 0 for size in self.spec.param_sizes()[:n_active])
    features = self.encoder_net(images, train) if needs_encoder else None
    params = []
    for index, (name, size) in enumerate(zip(self.spec.modules, self.spec.param_sizes())):
      if size > 0 and index < n_active:
        params.append(self.heads[name](features))
      else:
        params.append(jnp.zeros((batch, self.n_prototypes, size), images.dtype))
    return tuple(params)


def kmeans_distances(images: jax.Array, reconstructions: jax.Array,
                     weights: jax.Array | None = None) -> jax.Array:
  """Mean weighted squared error per (image, prototype).

  Args:
    images: [B, H, W, C].
    reconstructions: [B, K, H, W, C], prototype k warped to image b.
    weights: optional [H, W, 1] pixel weights (SVHN's Gaussian weights).

  Returns:
    [B, K] distances; the mean (not sum) over the C*H*W entries, as the original.
  """
  err = (images[:, None] - reconstructions) ** 2
  if weights is not None:
    err = err * weights
  return jnp.mean(err, axis=(2, 3, 4))


def kmeans_loss(distances: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """(1/B) sum_i min_k d_ik; gradients flow through the arg-min pair only."""
  per_image = jnp.min(distances, axis=1)
  if mask is None:
    return jnp.mean(per_image)
  return jnp.sum(per_image * mask) / jnp.maximum(jnp.sum(mask), 1)


def gmm_log_densities(images: jax.Array, means: jax.Array, sigmas: jax.Array,
                      var_min: float, weights: jax.Array | None = None) -> jax.Array:
  """Diagonal Gaussian log-density log N(x_b | m_bk, s_bk^2 + var_min).

  Args:
    images: [B, H, W, C].
    means: [B, K, H, W, C] warped means.
    sigmas: [B, K, H, W, C] warped sigma maps (spatial modules only).
    var_min: variance floor; the only floor (no clamp), as the original.
    weights: optional [H, W, 1]; multiplies the per-pixel terms including -log tau,
      not the D log(2 pi) constant.

  Returns:
    [B, K] log-densities.
  """
  precision = 1.0 / (sigmas ** 2 + var_min)
  per_pixel = (images[:, None] - means) ** 2 * precision - jnp.log(precision)
  if weights is not None:
    per_pixel = per_pixel * weights
  dim = math.prod(images.shape[1:])
  return -0.5 * (jnp.sum(per_pixel, axis=(2, 3, 4)) + dim * math.log(2 * math.pi))


def gmm_loss(log_densities: jax.Array, mixing_logits: jax.Array,
             mask: jax.Array | None = None) -> jax.Array:
  """-(1/B) sum_i sum_k gamma_ik (log N_ik + log pi_k), gamma without gradient.

  Its gradient equals that of the negative log-likelihood; the value differs from it
  by the entropy of gamma (kept as the original logs it).
  """
  joint = log_densities + jax.nn.log_softmax(mixing_logits)
  gamma = jax.lax.stop_gradient(jax.nn.softmax(joint, axis=1))
  per_image = -jnp.sum(gamma * joint, axis=1)
  if mask is None:
    return jnp.mean(per_image)
  return jnp.sum(per_image * mask) / jnp.maximum(jnp.sum(mask), 1)


def reconstruct(prototypes: jax.Array, module_params: Sequence[jax.Array],
                spec: transforms.TransformSpec, n_active: int,
                spatial_only: bool = False) -> jax.Array:
  """All K prototypes warped to every image: [K, H, W, C] -> [B, K, H, W, C]."""
  return transforms.warp_prototypes(prototypes, module_params, spec, n_active,
                                    spatial_only=spatial_only)
