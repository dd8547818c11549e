"""DTI-Sprites forward pass: warp every sprite into every layer, select, recompose.

The selection (greedy over layers, or exhaustive over sprite x background for the
single-object configs) runs without gradient on every candidate. The chosen sprites
are then warped again with gradient and composited: the forward values equal the
original's one-hot recomposition, the gradients of the chosen sprites and heads are
the same, and the unchosen ones get exact zeros, as there; only the backward pass
through the K - 1 unchosen warps per layer is saved.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from dti_jax.methods.dti_sprites import model as dti_sprites
from dti_jax.methods.dti_sprites import compositing


@dataclasses.dataclass(frozen=True)
class SpritesSpec:
  """Static description of a DTI-Sprites model (hashable, jit-static)."""

  height: int
  width: int
  channels: int
  n_sprites: int                  # K0, learned sprites
  add_empty: bool
  n_layers: int
  n_backgrounds: int
  sprite_modules: tuple[str, ...]
  layer_transform: bool           # 'color_position' placement onto the canvas
  bkg_modules: tuple[str, ...]
  predict_occlusion: bool
  selection: str                  # 'greedy' or 'exhaustive'
  greedy_iterations: int = 1
  lambda_empty: float = 0.0
  noise_eta: float = 0.4
  grid_size: int = 4

  @property
  def num_candidates(self) -> int:
    """K, the sprites seen by the model (the empty one included)."""
    return self.n_sprites + int(self.add_empty)


@dataclasses.dataclass(frozen=True)
class Stage:
  """What changes at epoch boundaries: active curriculum modules and frozen sprites."""

  n_sprite_modules: int
  n_bkg_modules: int
  frozen: bool


def _warp_sprite(stack, sprite_betas, layer_color, layer_position, *, spec: SpritesSpec,
                 stage: Stage):
  """Sprite-level then layer-level transformation of one [h, w, C+2] stack -> [H, W, C+2]."""
  out = dti_sprites.apply_modules(stack, sprite_betas, spec.sprite_modules,
                                  stage.n_sprite_modules, channels=spec.channels,
                                  padding_mode="zeros", grid_size=spec.grid_size)
  if spec.layer_transform:
    out = dti_sprites.place_sprite(out, layer_color, layer_position, spec.height, spec.width,
                                   spec.channels)
  return out


def _backgrounds(spec: SpritesSpec, stage: Stage, backgrounds, head_out, batch: int):
  """[B, M', H, W, C]: each background warped per image (border padding); black if M = 0."""
  if not spec.n_backgrounds:
    return jnp.zeros((batch, 1, spec.height, spec.width, spec.channels), jnp.float32)
  clamped = compositing.soft_clamp(backgrounds)
  betas = {name: head_out[f"bkg/{name}"] for name in spec.bkg_modules
           if f"bkg/{name}" in head_out}
  warp = functools.partial(dti_sprites.apply_modules, modules=spec.bkg_modules,
                           n_active=stage.n_bkg_modules, channels=spec.channels,
                           padding_mode="border", grid_size=spec.grid_size)
  if not betas:  # no predicted module: the same backgrounds for every image
    return jnp.broadcast_to(jax.vmap(lambda bkg: warp(bkg, {}))(clamped),
                            (batch,) + clamped.shape)
  per_image = jax.vmap(lambda b: jax.vmap(warp)(clamped, b))
  return per_image(betas)


def occlusion_matrix(spec: SpritesSpec, head_out, batch: int) -> jax.Array:
  """[B, L, L] object occlusion: fixed back-to-front, or predicted per image."""
  if spec.predict_occlusion:
    return compositing.predicted_occlusion(head_out["occlusion"])
  fixed = compositing.fixed_occlusion(spec.n_layers)
  return jnp.broadcast_to(fixed, (batch,) + fixed.shape)


def decompose(spec: SpritesSpec, stage: Stage, params: dict, head_out: dict[str, jax.Array],
              images: jax.Array, *, train: bool, uniform: jax.Array | None = None) -> dict:
  """Selects a sprite per layer for every image and reconstructs it.

  Args:
    spec, stage: static model description and curriculum/freeze stage.
    params: {'sprites': {'prototypes', 'masks'}, 'backgrounds': [M, H, W, C] if M > 0}.
    head_out: the SpritesPredictor outputs for ``images``.
    images: [B, H, W, C] in [0, 1].
    train: masks raw before warping (clamped after the noise) vs clamped (evaluation).
    uniform: [K, H, W, 1] in [0, 1), the step's mask-noise draw (training only).

  Returns:
    dict with 'reconstruction' [B, H, W, C], 'selection' one-hot [B, L, K],
    'colours' [B, L, H, W, C] and 'alphas' [B, L, H, W, 1] of the chosen sprites,
    'background' [B, H, W, C] (the chosen one), 'background_choice' [B],
    'occlusion' [B, L, L] and 'errors' [B] (per-image mean squared error).
  """
  batch = images.shape[0]
  channels, layers = spec.channels, spec.n_layers
  stacks = dti_sprites.sprite_stack(params["sprites"], add_empty=spec.add_empty, train=train)
  if stage.frozen:
    stacks = jax.lax.stop_gradient(stacks)
  k = stacks.shape[0]
  sprite_betas = {name: head_out[f"sprite/{name}"] for name in spec.sprite_modules
                  if f"sprite/{name}" in head_out}                           # [B, L, K, P]
  zeros = jnp.zeros((batch, layers, 0), jnp.float32)
  layer_color = head_out.get("layer/color", zeros)
  layer_position = head_out.get("layer/position", zeros)
  warp = functools.partial(_warp_sprite, spec=spec, stage=stage)

  # Every candidate, without gradient: [B, L, K, H, W, C+2].
  over_sprites = jax.vmap(warp, in_axes=(0, 0, None, None))
  over_layers = jax.vmap(over_sprites, in_axes=(None, 0, 0, 0))
  over_batch = jax.vmap(over_layers, in_axes=(None, 0, 0, 0))
  candidates = over_batch(*jax.lax.stop_gradient(
      (stacks, sprite_betas, layer_color, layer_position)))
  colours, alphas, canvas = jnp.split(candidates, [channels, channels + 1], axis=-1)
  if uniform is not None:
    alphas = dti_sprites.inject_noise(alphas, canvas, uniform, spec.noise_eta)
  backgrounds = _backgrounds(spec, stage, params.get("backgrounds"), head_out, batch)
  occlusion = occlusion_matrix(spec, head_out, batch)
  full_occlusion = compositing.with_background(occlusion)

  if spec.selection == "greedy":
    allowed = jnp.ones((k,), bool)
    penalties = jnp.zeros((k,), jnp.float32)
    if spec.add_empty:
      allowed = allowed.at[-1].set(not stage.frozen)
      if not stage.frozen:
        penalties = jnp.full((k,), spec.lambda_empty, jnp.float32).at[-1].set(0.0)
    select = functools.partial(dti_sprites.greedy_selection,
                               iterations=spec.greedy_iterations, candidates=allowed,
                               penalties=penalties)
    selection = jax.vmap(select)(images, colours, alphas, jax.lax.stop_gradient(
        backgrounds[:, 0]), jax.lax.stop_gradient(full_occlusion))
    choice = jnp.argmax(selection, axis=-1)                                  # [B, L]
    background_choice = jnp.zeros((batch,), jnp.int32)
  else:  # exhaustive over (background m, sprite k), L = 1, candidate index m * K + k
    bkg = jax.lax.stop_gradient(backgrounds)[:, :, None]                     # [B, M, 1, ...]
    composite = (1.0 - alphas[:, 0, None]) * bkg + alphas[:, 0, None] * colours[:, 0, None]
    errors = jnp.mean((images[:, None, None] - composite) ** 2, axis=(3, 4, 5))  # [B, M, K]
    best = jnp.argmin(errors.reshape(batch, -1), axis=1)
    background_choice, sprite_choice = best // k, best % k
    choice = sprite_choice[:, None]
    selection = jax.nn.one_hot(choice, k)

  # The chosen sprites again, with gradient: [B, L, H, W, C+2].
  chosen_stacks = stacks[choice]
  chosen_betas = {name: jnp.take_along_axis(beta, choice[:, :, None, None], axis=2)[:, :, 0]
                  for name, beta in sprite_betas.items()}
  chosen = jax.vmap(jax.vmap(warp))(chosen_stacks, chosen_betas, layer_color, layer_position)
  chosen_colours, chosen_alphas, chosen_canvas = jnp.split(
      chosen, [channels, channels + 1], axis=-1)
  if uniform is not None:
    chosen_alphas = dti_sprites.inject_noise(chosen_alphas, chosen_canvas, uniform[choice],
                                             spec.noise_eta)
  background = jnp.take_along_axis(
      backgrounds, background_choice[:, None, None, None, None], axis=1)[:, 0]
  slot_colours = jnp.concatenate([background[:, None], chosen_colours], axis=1)
  slot_alphas = jnp.concatenate([jnp.ones_like(chosen_alphas[:, :1]), chosen_alphas], axis=1)
  recon = jax.vmap(compositing.compose)(slot_colours, slot_alphas, full_occlusion)
  return {"reconstruction": recon, "selection": selection, "colours": chosen_colours,
          "alphas": chosen_alphas, "background": background,
          "background_choice": background_choice, "occlusion": occlusion,
          "errors": jnp.mean((images - recon) ** 2, axis=(1, 2, 3))}
