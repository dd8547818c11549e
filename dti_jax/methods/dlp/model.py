"""Deep Latent Particles (DLP): keypoint prior, particle encoder, PointNet and decoders.

An image is explained by K foreground particles (position z in [-1, 1]^2 as (y, x), an
appearance latent z_f of size D) plus a background particle appended last (mean (0, 0),
log-variance log sigma^2). The prior proposes M keypoints from image patches; the
Chamfer-KL ties the posterior positions to them (`dlp_losses`).

Two decoders, as the original's `dec_bone`:
* "object" (gauss_pointnetpp + object decoder): a background CNN decoder on [G, Phi] and
  one RGBA glimpse per particle, pasted at z and alpha-stitched in slot order.
* "masked" (gauss_pointnetpp_feat): one CNN decoder on [G, M_fg Phi, M_bg sg(H)], the
  encoder maps H filling the background ("bypass").

Layout is NHWC; flattens are channel-major like PyTorch's NCHW; the blocks and their
initialisation (the original's) are in `dti_jax.methods.dlp.blocks`. Parameter groups for the two Adam optimisers: `ENCODER_MODULES` and
`DECODER_MODULES` (top-level module names), see `parameter_labels`.
"""

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dti_jax.methods.dlp.blocks import (BatchNorm, Conv, ConvBlock, KeyPointCNN, MLPHead,
                                     flatten_channel_major, glimpse_side, linear,
                                     select_max)
from dti_jax.methods.dlp import particles as particle_ops

PHASES = ("warmup", "noisy", "normal")
MODELS = ("object", "masked")
ENCODER_MODULES = ("prior", "posterior", "appearance")
DECODER_MODULES = ("pointnet", "background_decoder", "glimpse_decoder")

class PriorEncoder(nn.Module):
  """Keypoint proposals [B, M, 2]: one spatial-softmax keypoint per P x P patch, keeping
  the M farthest from their patch centre (a flat patch gives its centre exactly)."""

  channels: Sequence[int]
  patch_size: int
  num_proposals: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    batch, side, _, channels = x.shape
    size, per_side = self.patch_size, side // self.patch_size
    patches = x.reshape(batch, per_side, size, per_side, size, channels)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(-1, size, size, channels)
    heatmaps = KeyPointCNN(self.channels, 1, first_kernel=3, name="cnn")(patches, train)
    local = particle_ops.spatial_softmax_positions(heatmaps).reshape(batch, per_side ** 2, 2)
    positions = particle_ops.patch_origins_to_global(local, size, side)
    centres = particle_ops.patch_origins_to_global(jnp.zeros_like(local), size, side)
    scores = jnp.sum((positions - centres) ** 2, axis=-1)
    _, keep = lax.top_k(scores, min(self.num_proposals, per_side ** 2))
    return jnp.take_along_axis(positions, keep[..., None], axis=1)


class PosteriorEncoder(nn.Module):
  """Image -> raw maps H [B, F, F, K], means mu = tanh [B, K, 2], log-variances [B, K, 2]
  and, with `presence`, obj_on [B, K] in (0, 1) from a head on sg(H)."""

  channels: Sequence[int]
  num_particles: int
  presence: bool

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> dict[str, Any]:
    count = self.num_particles
    heatmaps = KeyPointCNN(self.channels, count, first_kernel=7, name="cnn")(x, train)
    flat = flatten_channel_major(heatmaps)
    stats = MLPHead(4 * count, name="position_head")(flat).reshape(x.shape[0], count, 4)
    out = {"heatmaps": heatmaps, "mu": jnp.tanh(stats[..., :2]), "logvar": stats[..., 2:]}
    if self.presence:
      out["obj_on"] = nn.sigmoid(MLPHead(count, name="presence_head")(lax.stop_gradient(flat)))
    return out


class AppearanceEncoder(nn.Module):
  """Appearance statistics (mu_f, logvar_f) [B, K+1, D] and the glimpses [B, K, g, g, C].

  Glimpse k is the g x g window around centre k of (box mask k * source); the boxes may be
  made exclusive in slot order (after scaling by `presence`). With `cnn` (object model,
  source = image) a KeyPointCNN((16, 16, 32), 32) encodes each glimpse; otherwise (masked
  model, source = sg(H)) the window itself is flattened next to its centre. The
  background particle reads flatten(background_mask * features) with its own head.
  """

  feature_dim: int
  anchor_s: float
  cnn: bool
  exclusive: bool

  @nn.compact
  def __call__(self, source: jax.Array, centres: jax.Array, presence: jax.Array | None,
               features: jax.Array, background_mask: jax.Array, train: bool):
    batch, count = centres.shape[:2]
    side = source.shape[1]
    size = glimpse_side(self.anchor_s, side)
    masks = particle_ops.box_masks(centres, size, side)                   # [B, K, s, s]
    if self.exclusive:
      if presence is not None:
        masks = masks * presence[:, :, None, None]
      masks = particle_ops.exclusive_masks(jnp.clip(masks, 0.0, 1.0))
    glimpses = particle_ops.crop_glimpses(masks[..., None] * source[:, None], centres, size)
    if self.cnn:
      encoded = KeyPointCNN((16, 16, 32), 32, first_kernel=3, name="glimpse_cnn")(
          glimpses.reshape((-1,) + glimpses.shape[2:]), train)
      flat = flatten_channel_major(encoded).reshape(batch, count, -1)
    else:
      flat = jnp.concatenate([flatten_channel_major(glimpses), centres], axis=-1)
    stats = MLPHead(2 * self.feature_dim, name="glimpse_head")(flat)
    background = flatten_channel_major(background_mask[..., None] * features)
    background = MLPHead(2 * self.feature_dim, name="background_head")(background)
    stats = jnp.concatenate([stats, background[:, None]], axis=1)
    return stats[..., :self.feature_dim], stats[..., self.feature_dim:], glimpses


class PointNetToMaps(nn.Module):
  """Dense PointNet++ over the K+1 particles -> maps Phi [B, F, F, K].

  Each node takes the max over its k nearest nodes (self included, Euclidean on the
  positions) of MLP([h_j, p_j - p_i]); four layers of 64/128/256/512 with BN over every
  edge message; max over nodes; Linear(K*64) + ReLU to [K, 8, 8]; log2(F) - 3 upsampling
  blocks. Equals torch_geometric's knn_graph(loop=True) up to ties between neighbours.
  """

  num_maps: int
  feature_side: int
  neighbours: int = 10

  @nn.compact
  def __call__(self, positions: jax.Array, features: jax.Array, train: bool) -> jax.Array:
    batch, nodes = positions.shape[:2]
    index = particle_ops.knn_indices(positions, min(self.neighbours, nodes))  # [B, N, k]
    # Gathers as one-hot products: a single small dot each way, no scatter in the backward.
    selection = jax.nn.one_hot(index, nodes, dtype=positions.dtype)        # [B, N, k, N]
    gather = functools.partial(jnp.einsum, "bnkm,bmc->bnkc", selection,
                               precision=lax.Precision.HIGHEST)
    offsets = gather(positions) - positions[:, :, None]
    h = features
    for width in (64, 128, 256, 512):
      message = jnp.concatenate([gather(h), offsets], axis=-1)
      message = nn.relu(BatchNorm(use_running_average=not train)(linear(message, width)))
      message = BatchNorm(use_running_average=not train)(linear(message, width))
      h = nn.relu(select_max(message, axis=2))
    h = nn.relu(linear(select_max(h, axis=1), self.num_maps * 64))
    maps = h.reshape(batch, self.num_maps, 8, 8).transpose(0, 2, 3, 1)
    for _ in range(int(np.log2(self.feature_side)) - 3):
      maps = ConvBlock(self.num_maps, 3, upsample=True)(maps, train)
    return maps


class CNNDecoder(nn.Module):
  """[B, F, F, in] -> [B, S, S, 3], no output activation (channels from `enc_channels`).

  Block(c_{L-1}, up), Block(c, up) for c = c_{L-2}..c_1, Block((K+1)(c_0 // (K+1) + 1)),
  1x1 conv with bias.
  """

  channels: Sequence[int]
  num_slots: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = ConvBlock(self.channels[-1], upsample=True)(x, train)
    for width in reversed(self.channels[1:-1]):
      x = ConvBlock(width, upsample=True)(x, train)
    x = ConvBlock(self.num_slots * (self.channels[0] // self.num_slots + 1))(x, train)
    return Conv(3, (1, 1), name="final")(x)


class GlimpseDecoder(nn.Module):
  """[N, D] appearance latents -> [N, g, g, 4] sigmoid RGBA (alpha first), g = 8 2^u."""

  glimpse_size: int

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    upsamplings = int(np.log2(self.glimpse_size)) - 3
    h = nn.relu(linear(z, 256))
    h = nn.relu(linear(h, 32 * 8 * 8)).reshape(-1, 32, 8, 8).transpose(0, 2, 3, 1)
    for _ in range(upsamplings):
      h = ConvBlock(64, upsample=True)(h, train)
    h = ConvBlock(32)(h, train)
    return nn.sigmoid(Conv(4, (1, 1), name="final")(h))


def parameter_labels(params: dict[str, Any]) -> dict[str, Any]:
  """'encoder' / 'decoder' for every leaf of DLP params, e.g. for optax.multi_transform.

  The original steps two Adam optimisers: encoder = prior, posterior (CNN, position and
  presence heads) and appearance encoder (glimpse CNN and both appearance heads);
  decoder = PointNet, background CNN decoder and glimpse decoder.

  Raises:
    ValueError: for a top-level module in neither group.
  """
  labels = {}
  for name, subtree in params.items():
    if name not in ENCODER_MODULES + DECODER_MODULES:
      raise ValueError(f"top-level module {name!r} is in no parameter group")
    group = "encoder" if name in ENCODER_MODULES else "decoder"
    labels[name] = jax.tree.map(lambda _, group=group: group, subtree)
  return labels


def _check_phase(phase):
  if phase not in PHASES:
    raise ValueError(f"phase {phase!r}; one of {PHASES}")


class DLP(nn.Module):
  """Deep Latent Particles; `__call__` is `prior` + `encode` + `decode`.

  Noise comes from the "sample" rng stream: eps for z and z_f (unless `deterministic`),
  and in the "warmup" / "noisy" phases U(0, 1) presences (drawn separately for the
  encoder's exclusive masks and for stitching, as the original) and alpha noise.
  Object model in "warmup": the background branch (PointNet, CNN decoder) is not run, so
  it gets no gradient and keeps its BN statistics; initialise with phase "normal" so
  that its parameters exist. The masked model ignores the phase.

  Attributes: image_size S; enc_channels, prior_channels (CNN widths); num_particles K;
  num_prior M; patch_size P; feature_dim D; anchor_s (glimpse side round(a (S - 1)));
  sigma (prior std and Gaussian-map std); model "object" or "masked"; exclusive_patches;
  mask_threshold (binary masks G > threshold); pointnet_k (kNN size).
  """

  image_size: int
  enc_channels: Sequence[int]
  prior_channels: Sequence[int]
  num_particles: int
  num_prior: int
  patch_size: int
  feature_dim: int
  anchor_s: float
  sigma: float = 0.1
  model: str = "object"
  exclusive_patches: bool = False
  mask_threshold: float = 0.2
  pointnet_k: int = 10

  @property
  def feature_side(self) -> int:
    """F = S / 2^(len(enc_channels) - 1), the side of H and of the Gaussian maps."""
    return self.image_size // 2 ** (len(self.enc_channels) - 1)

  @property
  def glimpse_size(self) -> int:
    return glimpse_side(self.anchor_s, self.image_size)

  def setup(self):
    if self.model not in MODELS:
      raise ValueError(f"model {self.model!r}; one of {MODELS}")
    if self.image_size % self.patch_size:
      raise ValueError(f"patch_size {self.patch_size} does not divide image_size "
                       f"{self.image_size}")
    is_object = self.model == "object"
    if is_object and (self.glimpse_size < 16 or self.glimpse_size & (self.glimpse_size - 1)):
      raise ValueError(f"anchor_s {self.anchor_s} gives glimpse size {self.glimpse_size}; "
                       "the glimpse decoder needs 8 * 2^u with u >= 1")
    self.prior = PriorEncoder(self.prior_channels, self.patch_size, self.num_prior)
    self.posterior = PosteriorEncoder(self.enc_channels, self.num_particles, presence=is_object)
    self.appearance = AppearanceEncoder(self.feature_dim, self.anchor_s, cnn=is_object,
                                        exclusive=self.exclusive_patches)
    self.pointnet = PointNetToMaps(self.num_particles, self.feature_side, self.pointnet_k)
    self.background_decoder = CNNDecoder(self.enc_channels, self.num_particles + 1)
    if is_object:
      self.glimpse_decoder = GlimpseDecoder(self.glimpse_size)

  def _sample(self, mu, logvar):
    eps = jax.random.normal(self.make_rng("sample"), mu.shape, mu.dtype)
    return mu + jnp.exp(0.5 * logvar) * eps

  def _binary_masks(self, maps):
    """Detached foreground union clip(sum_k 1[G_k > threshold], 0, 1): [B, F, F, 1]."""
    masks = lax.stop_gradient((maps > self.mask_threshold).astype(maps.dtype))
    return jnp.clip(jnp.sum(masks, axis=-1, keepdims=True), 0.0, 1.0)

  def encode(self, x: jax.Array, *, train: bool, deterministic: bool,
             phase: str = "normal") -> dict[str, jax.Array]:
    """Image [B, S, S, 3] -> particles (background particle last).

    Returns mu, logvar, z [B, K+1, 2]; mu_features, logvar_features, z_features
    [B, K+1, D]; heatmaps H [B, F, F, K]; glimpses [B, K, g, g, 3] (masked model: the
    [B, K, 2, 2, K] windows of sg(H)); obj_on [B, K] (object model). Glimpse centres are
    sg(mu); `deterministic` sets z = mu and z_f = mu_f.
    """
    _check_phase(phase)
    count, side = self.num_particles, self.feature_side
    posterior = self.posterior(x, train=train)
    batch = x.shape[0]
    mu = jnp.concatenate([posterior["mu"], jnp.zeros((batch, 1, 2), x.dtype)], axis=1)
    logvar = jnp.concatenate(
        [posterior["logvar"], jnp.full((batch, 1, 2), 2.0 * math.log(self.sigma), x.dtype)],
        axis=1)
    z = mu if deterministic else self._sample(mu, logvar)
    features = lax.stop_gradient(posterior["heatmaps"])
    centres = lax.stop_gradient(posterior["mu"])
    if self.model == "object":
      presence = posterior["obj_on"]
      if phase != "normal":
        presence = jax.random.uniform(self.make_rng("sample"), presence.shape, presence.dtype)
      boxes = particle_ops.box_masks(centres, glimpse_side(self.anchor_s, side), side)
      background_mask = 1.0 - jnp.clip(jnp.sum(boxes, axis=1), 0.0, 1.0)
      source = x
    else:
      presence, source = None, features
      maps = particle_ops.gaussian_maps(z[:, :count], side, self.sigma)
      background_mask = 1.0 - self._binary_masks(maps)[..., 0]
    mu_f, logvar_f, glimpses = self.appearance(source, centres, presence, features,
                                               background_mask, train=train)
    z_f = mu_f if deterministic else self._sample(mu_f, logvar_f)
    out = {"mu": mu, "logvar": logvar, "z": z, "mu_features": mu_f,
           "logvar_features": logvar_f, "z_features": z_f,
           "heatmaps": posterior["heatmaps"], "glimpses": glimpses}
    if self.model == "object":
      out["obj_on"] = posterior["obj_on"]
    return out

  def decode(self, particles: dict[str, jax.Array], *, train: bool,
             phase: str = "normal") -> dict[str, jax.Array]:
    """Particles (z, z_features; obj_on for the object model, heatmaps H for the masked
    model's bypass) -> images; edit z or z_features and decode again to move or restyle.

    Returns reconstruction and background [B, S, S, 3] (not clamped) and gaussian_maps
    [B, F, F, K]; object model also objects (sum_k m_k rgb_k) [B, S, S, 3], the pasted
    alphas (times obj_on, alpha noise included) [B, K, S, S, 1] and rgbs [B, K, S, S, 3],
    and the decoded glimpses before pasting, decoded_glimpses [B, K, g, g, 3] and
    decoded_alphas [B, K, g, g, 1].
    """
    _check_phase(phase)
    count, z, z_f = self.num_particles, particles["z"], particles["z_features"]
    batch, size = z.shape[0], self.image_size
    maps = particle_ops.gaussian_maps(z[:, :count], self.feature_side, self.sigma)
    out = {"gaussian_maps": maps}
    if self.model == "object" and phase == "warmup":
      background = jnp.zeros((batch, size, size, 3), z.dtype)
    else:
      appearance = z_f
      if self.model == "object":
        appearance = jnp.concatenate([lax.stop_gradient(z_f[:, :count]), z_f[:, count:]], axis=1)
      positions = lax.stop_gradient(z)
      graph_maps = self.pointnet(positions, jnp.concatenate([positions, appearance], axis=-1),
                                 train=train)
      if self.model == "object":
        inputs = jnp.concatenate([maps, graph_maps], axis=-1)
      else:
        foreground = self._binary_masks(maps)
        inputs = jnp.concatenate(
            [maps, foreground * graph_maps,
             (1.0 - foreground) * lax.stop_gradient(particles["heatmaps"])], axis=-1)
      background = self.background_decoder(inputs, train=train)
    out["background"] = background
    if self.model == "masked":
      out["reconstruction"] = background
      return out
    rgba = self.glimpse_decoder(z_f[:, :count].reshape(batch * count, -1), train=train)
    rgba = rgba.reshape((batch, count) + rgba.shape[1:])
    pasted = jnp.clip(particle_ops.paste_glimpses(rgba, z[:, :count], size), 0.0, 1.0)
    alphas, rgbs = pasted[..., :1], pasted[..., 1:]
    presence = particles["obj_on"]
    if phase != "normal":
      noise = jax.random.normal(self.make_rng("sample"), alphas.shape, alphas.dtype)
      alphas = alphas + self.sigma * noise * (alphas > 0.1)
      presence = jax.random.uniform(self.make_rng("sample"), presence.shape, presence.dtype)
    alphas = alphas * presence[:, :, None, None, None]
    reconstruction, objects = particle_ops.stitch(alphas, rgbs, background)
    out.update(reconstruction=reconstruction, objects=objects, alphas=alphas, rgbs=rgbs,
               decoded_glimpses=rgba[..., 1:], decoded_alphas=rgba[..., :1])
    return out

  def __call__(self, x: jax.Array, x_prior: jax.Array, *, train: bool, phase: str,
               deterministic: bool = False) -> dict[str, jax.Array]:
    """The original's forward pass: kp_prior [B, M, 2] from x_prior, encode x, decode.

    x, x_prior: [B, S, S, 3] in [0, 1] (x_prior = x except for CelebA's TPS pairs).
    Returns the union of `encode`'s and `decode`'s outputs plus kp_prior.
    """
    _check_phase(phase)
    out = {"kp_prior": self.prior(x_prior, train=train)}
    encoded = self.encode(x, train=train, deterministic=deterministic, phase=phase)
    out.update(encoded)
    out.update(self.decode(encoded, train=train, phase=phase))
    return out
