"""DLP training objective: reconstruction + beta_kl (Chamfer-KL + kl_balance feature KL).

Every term is a sum per image (over pixels, particles, dimensions) and a mean over the
batch, as the original; switching to means would silently rescale every beta. The
warm-up glimpse loss is a sum per glimpse and a mean over the B K glimpses.

rec_loss "vgg" is the original's VGGDistance (``vgg_perceptual.vgg_distance``): per image
the squared error summed over pixels plus the summed squared differences of five frozen
ImageNet VGG-16 feature maps. Its glimpse loss upsamples glimpses smaller than 32x32 to
32x32 first (PyTorch bilinear, align_corners=False), since VGG's five pools need 32.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp

from dti_jax.methods.dlp import perceptual as vgg_perceptual
from dti_jax.methods.dlp import particles

REC_LOSSES = ("mse", "vgg")


def reconstruction_distance(x: jax.Array, y: jax.Array, rec_loss: str,
                            vgg_params: vgg_perceptual.Params | None = None) -> jax.Array:
  """Per-image distance [N] of [N, H, W, C] images: summed squared error, or with
  rec_loss "vgg" the VGG distance (images under 32x32 upsampled to 32x32 first)."""
  if rec_loss == "mse":
    return jnp.sum((x - y) ** 2, axis=(1, 2, 3))
  side = vgg_perceptual.MIN_SIDE
  if x.shape[1] < side or x.shape[2] < side:
    # jax.image.resize's bilinear upsampling is PyTorch's with align_corners=False.
    shape = (x.shape[0], side, side, x.shape[3])
    x, y = jax.image.resize(x, shape, "bilinear"), jax.image.resize(y, shape, "bilinear")
  return vgg_perceptual.vgg_distance(vgg_params, x, y)


def loss(outputs: dict[str, jax.Array], x: jax.Array, *, beta_rec: float, beta_kl: float,
         kl_balance: float, rec_loss: str = "mse", phase: str, sigma: float,
         include_background_in_ckl: bool = False,
         vgg_params: vgg_perceptual.Params | None = None) -> tuple[jax.Array, dict[str, Any]]:
  """Total loss and its metrics for one batch of `DLP` outputs.

  Args:
    outputs: `DLP.__call__` outputs (kp_prior, mu, logvar, mu_features, logvar_features,
      reconstruction; glimpses and decoded_glimpses for the object model).
    x: [B, S, S, 3] target images in [0, 1].
    beta_rec, beta_kl, kl_balance: total = beta_rec rec + beta_kl (ckl + kl_balance kl_f).
    rec_loss: "mse" (sum of squared errors) or "vgg" (VGG distance, needs vgg_params).
    phase: "warmup", "noisy" or "normal"; in "warmup" the object model's reconstruction
      term is the glimpse loss between the encoder glimpses and the decoded RGB glimpses.
    sigma: prior std of the proposals (prior logvar = log sigma^2).
    include_background_in_ckl: also match the background particle in the Chamfer-KL
      (validation ELBO, and how the original's CelebA results were obtained).
    vgg_params: for rec_loss "vgg", the frozen VGG-16 convs
      (``vgg_perceptual.load_vgg16_features``); a constant, not trained.

  Returns:
    (total scalar, {loss, rec, ckl, kl_features, psnr}); psnr is -10 log10 of the mean
    squared error of the un-clamped reconstruction over the whole batch.

  Raises:
    ValueError: an unknown rec_loss, or "vgg" without vgg_params.
  """
  if rec_loss not in REC_LOSSES:
    raise ValueError(f"rec_loss {rec_loss!r}; one of {REC_LOSSES}")
  if rec_loss == "vgg" and vgg_params is None:
    raise ValueError("rec_loss='vgg' needs vgg_params (vgg_perceptual.load_vgg16_features "
                     "of config.loss.vgg_weights)")
  reconstruction = outputs["reconstruction"]
  if phase == "warmup" and "decoded_glimpses" in outputs:
    glimpses, decoded = outputs["glimpses"], outputs["decoded_glimpses"]  # [B, K, g, g, 3]
    rec = jnp.mean(reconstruction_distance(glimpses.reshape((-1,) + glimpses.shape[2:]),
                                           decoded.reshape((-1,) + decoded.shape[2:]),
                                           rec_loss, vgg_params))
  else:
    rec = jnp.mean(reconstruction_distance(x, reconstruction, rec_loss, vgg_params))
  mu, logvar = outputs["mu"], outputs["logvar"]
  if not include_background_in_ckl:
    mu, logvar = mu[:, :-1], logvar[:, :-1]
  ckl = jnp.mean(particles.chamfer_kl(mu, logvar, outputs["kp_prior"], 2.0 * math.log(sigma)))
  kl_features = jnp.mean(particles.gaussian_kl(outputs["mu_features"],
                                               outputs["logvar_features"]))
  total = beta_rec * rec + beta_kl * (ckl + kl_balance * kl_features)
  metrics = {"loss": total, "rec": rec, "ckl": ckl, "kl_features": kl_features,
             "psnr": particles.psnr(reconstruction, x)}
  return total, metrics
