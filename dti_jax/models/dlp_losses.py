"""DLP training objective: reconstruction + beta_kl (Chamfer-KL + kl_balance feature KL).

Every term is a sum per image (over pixels, particles, dimensions) and a mean over the
batch, as the original; switching to means would silently rescale every beta. The
warm-up glimpse loss is a sum per glimpse and a mean over the B K glimpses.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp

from dti_jax.ops import particles

REC_LOSSES = ("mse", "vgg")


def loss(outputs: dict[str, jax.Array], x: jax.Array, *, beta_rec: float, beta_kl: float,
         kl_balance: float, rec_loss: str = "mse", phase: str, sigma: float,
         include_background_in_ckl: bool = False) -> tuple[jax.Array, dict[str, Any]]:
  """Total loss and its metrics for one batch of `DLP` outputs.

  Args:
    outputs: `DLP.__call__` outputs (kp_prior, mu, logvar, mu_features, logvar_features,
      reconstruction; glimpses and decoded_glimpses for the object model).
    x: [B, S, S, 3] target images in [0, 1].
    beta_rec, beta_kl, kl_balance: total = beta_rec rec + beta_kl (ckl + kl_balance kl_f).
    rec_loss: "mse" (sum of squared errors); "vgg" is not available here.
    phase: "warmup", "noisy" or "normal"; in "warmup" the object model's reconstruction
      term is the glimpse loss between the encoder glimpses and the decoded RGB glimpses.
    sigma: prior std of the proposals (prior logvar = log sigma^2).
    include_background_in_ckl: also match the background particle in the Chamfer-KL
      (validation ELBO, and how the original's CelebA results were obtained).

  Returns:
    (total scalar, {loss, rec, ckl, kl_features, psnr}); psnr is -10 log10 of the mean
    squared error of the un-clamped reconstruction over the whole batch.

  Raises:
    NotImplementedError: for rec_loss "vgg".
    ValueError: for any other unknown rec_loss.
  """
  if rec_loss == "vgg":
    raise NotImplementedError("rec_loss='vgg' (VGG perceptual loss) is not implemented; use 'mse'")
  if rec_loss not in REC_LOSSES:
    raise ValueError(f"rec_loss {rec_loss!r}; one of {REC_LOSSES}")
  reconstruction = outputs["reconstruction"]
  if phase == "warmup" and "decoded_glimpses" in outputs:
    errors = (outputs["glimpses"] - outputs["decoded_glimpses"]) ** 2    # [B, K, g, g, 3]
    rec = jnp.mean(jnp.sum(errors, axis=(2, 3, 4)))
  else:
    rec = jnp.mean(jnp.sum((x - reconstruction) ** 2, axis=(1, 2, 3)))
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
