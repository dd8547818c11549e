"""DTI-Sprites pieces: sprite selection by greedy coordinate descent over layers.

An image is a background plus L object layers composited back to front; each layer shows
one of K sprites. The choice is discrete: greedy coordinate descent over the layers
(multi-object configs), run without gradient; the loss then recomposes the chosen
sprites with the one-hot selection so gradients reach exactly those sprites.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from dti_jax.nets import heads, resnet
from dti_jax.ops import compositing, gaussian
from dti_jax.transforms import placement


def greedy_selection(image: jax.Array, colours: jax.Array, alphas: jax.Array,
                     background: jax.Array, occlusion: jax.Array, *, iterations: int,
                     candidates: jax.Array, penalties: jax.Array) -> jax.Array:
  """One-hot sprite choice per layer for one image, [L, K] (no gradient).

  Layers are visited back to front, ``iterations`` sweeps: in the first sweep the layers
  in front of l are still transparent when l is chosen; later sweeps are coordinate
  descent with every other layer fixed. Ties go to the first index.

  Args:
    image: [H, W, C] target.
    colours: [L, K, H, W, C] every sprite warped into every layer.
    alphas: [L, K, H, W, 1] their masks.
    background: [H, W, C] (black when the config has none).
    occlusion: [L+1, L+1] matrix with the background as slot 0.
    iterations: number of sweeps over the layers (``greedy_algo_iter``).
    candidates: [K] bool, sprites that may be chosen (the empty sprite is excluded
      while sprites are frozen).
    penalties: [K] added to the error of each candidate (lambda_empty on every
      non-empty sprite when an empty sprite exists, else zeros).
  """
  num_layers, num_sprites = colours.shape[:2]
  colours, alphas = jax.lax.stop_gradient(colours), jax.lax.stop_gradient(alphas)
  slot_colours = jnp.concatenate([background[None], jnp.zeros_like(colours[:, 0])])
  slot_alphas = jnp.concatenate([jnp.ones_like(alphas[:1, 0]), jnp.zeros_like(alphas[:, 0])])
  choice = jnp.zeros((num_layers,), jnp.int32)

  for _ in range(iterations):
    for layer in range(num_layers):
      def error(c, a, layer=layer):
        composite = compositing.compose(slot_colours.at[layer + 1].set(c),
                                        slot_alphas.at[layer + 1].set(a), occlusion)
        return jnp.mean((image - composite) ** 2)
      errors = jax.vmap(error)(colours[layer], alphas[layer]) + penalties
      best = jnp.argmin(jnp.where(candidates, errors, jnp.inf))
      choice = choice.at[layer].set(best)
      slot_colours = slot_colours.at[layer + 1].set(colours[layer, best])
      slot_alphas = slot_alphas.at[layer + 1].set(alphas[layer, best])
  return jax.nn.one_hot(choice, num_sprites)


def compose_selection(selection: jax.Array, colours: jax.Array, alphas: jax.Array,
                      background: jax.Array, occlusion: jax.Array) -> jax.Array:
  """The reconstruction of the chosen sprites, differentiable in colours/alphas: [H, W, C].

  Unselected sprites enter through the one-hot sum with weight 0, so they receive an
  all-zero (not absent) gradient, as in the original.
  """
  chosen_colours = jnp.einsum("lk,lkhwc->lhwc", selection, colours)
  chosen_alphas = jnp.einsum("lk,lkhwc->lhwc", selection, alphas)
  slot_colours = jnp.concatenate([background[None], chosen_colours])
  slot_alphas = jnp.concatenate([jnp.ones_like(chosen_alphas[:1]), chosen_alphas])
  return compositing.compose(slot_colours, slot_alphas, occlusion)


def sprite_color(stack: jax.Array, beta: jax.Array, channels: int) -> jax.Array:
  """DTI-Sprites' colour module on a [h, w, C+extra] stack: out_c = s((1 + w_c) x_c + b_c).

  Unlike DTI-Clustering's colour module, the output is soft-clamped and the extra
  channels (mask, noise canvas) pass through unchanged. beta: [2C] interleaved (w_c, b_c).
  """
  scale, shift = 1.0 + beta[0::2], beta[1::2]
  colour = compositing.soft_clamp(stack[..., :channels] * scale + shift)
  return jnp.concatenate([colour, stack[..., channels:]], axis=-1)


def place_sprite(stack: jax.Array, color_beta: jax.Array, position_beta: jax.Array,
                 height: int, width: int, channels: int) -> jax.Array:
  """Layer transformation 'color_position': colour at sprite size, then placed on the canvas.

  stack: [h, w, C+2] (colour, mask, noise canvas) -> [height, width, C+2]; zero padding,
  so everything outside the warped sprite is transparent.
  """
  coloured = sprite_color(stack, color_beta, channels)
  return placement.warp_to_canvas(coloured, placement.position_matrix(position_beta),
                                  height, width, padding_mode="zeros")


def init_sprites(n_sprites: int, height: int, width: int, channels: int,
                 mask_std: float, value: float = 0.9) -> dict[str, jax.Array]:
  """The released configs' init: constant prototypes (0.9) and identical Gaussian masks.

  Returns {'prototypes': [K0, h, w, C], 'masks': [K0, h, w, 1]}; values are stored
  directly (no sigmoid); the soft clamp is applied when they are read.
  """
  mask = jnp.asarray(gaussian.gaussian_map(height, width, mask_std))
  return {"prototypes": jnp.full((n_sprites, height, width, channels), value, jnp.float32),
          "masks": jnp.broadcast_to(mask, (n_sprites, height, width, 1))}


def sprite_stack(sprites: dict[str, jax.Array], *, add_empty: bool, train: bool) -> jax.Array:
  """[K, h, w, C+2] stacks (colour, mask, noise canvas) that the transformations warp together.

  Colours are soft-clamped; masks are raw in training (clamped after the noise, see
  ``inject_noise``) and clamped in evaluation; the canvas is ones. The empty sprite
  (all zeros, canvas included) is appended as the last index when ``add_empty``.
  """
  colours = compositing.soft_clamp(sprites["prototypes"])
  masks = sprites["masks"] if train else compositing.soft_clamp(sprites["masks"])
  stack = jnp.concatenate([colours, masks, jnp.ones_like(masks)], axis=-1)
  if add_empty:
    stack = jnp.concatenate([stack, jnp.zeros_like(stack[:1])])
  return stack


def inject_noise(alphas: jax.Array, canvas: jax.Array, uniform: jax.Array,
                 eta: float) -> jax.Array:
  """s(a + n * eta * (2u - 1)): noise only inside the warped sprite support (canvas n).

  ``uniform`` in [0, 1) is drawn once per step with shape [K, H, W, 1] and shared by all
  layers and images, as the original; it is what pushes masks towards binary values.
  """
  return compositing.soft_clamp(alphas + canvas * eta * (2.0 * uniform - 1.0))


def multi_object_reconstruction(images: jax.Array, stacks: jax.Array, color_params: jax.Array,
                                position_params: jax.Array, background: jax.Array,
                                occlusion: jax.Array, *, iterations: int,
                                candidates: jax.Array, penalties: jax.Array,
                                uniform: jax.Array | None = None, eta: float = 0.0):
  """Places every sprite in every layer, selects greedily, recomposes the choice.

  Args:
    images: [B, H, W, C] targets.
    stacks: [K, h, w, C+2] sprite stacks (``sprite_stack``).
    color_params: [B, L, 2C] layer colour parameters; position_params: [B, L, 3].
    background: [H, W, C]; occlusion: [L+1, L+1] with the background as slot 0.
    uniform: optional [K, H, W, 1] draw in [0, 1) for the training mask noise.

  Returns:
    (reconstructions [B, H, W, C], one-hot selection [B, L, K]).
  """
  height, width, channels = images.shape[1:]
  place = functools.partial(place_sprite, height=height, width=width, channels=channels)
  over_sprites = jax.vmap(place, in_axes=(0, None, None))
  over_layers = jax.vmap(over_sprites, in_axes=(None, 0, 0))
  placed = jax.vmap(over_layers, in_axes=(None, 0, 0))(stacks, color_params, position_params)
  colours, alphas, canvas = jnp.split(placed, [channels, channels + 1], axis=-1)
  if uniform is not None:
    alphas = inject_noise(alphas, canvas, uniform, eta)
  select = functools.partial(greedy_selection, iterations=iterations, candidates=candidates,
                             penalties=penalties)
  selection = jax.vmap(select, in_axes=(0, 0, 0, None, None))(
      images, colours, alphas, background, occlusion)
  recon = jax.vmap(compose_selection, in_axes=(0, 0, 0, None, None))(
      selection, colours, alphas, background, occlusion)
  return recon, selection


class LayerPredictor(nn.Module):
  """Shared encoder + per-layer heads of the 'color_position' layer transformation.

  Every head reads the same (optionally grid-pooled) features; layers differ only by
  their own heads. Returns colour [B, L, 2C], position [B, L, 3] and, with
  ``predict_occlusion``, occlusion logits [B, L(L-1)/2] (all zero at init).
  """

  encoder: str
  pool_grid: int
  n_layers: int
  channels: int
  predict_occlusion: bool = False

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
    net, _ = resnet.create_encoder(self.encoder, self.pool_grid)
    features = net(images, train)
    out = {"color": heads.HeadBank(self.n_layers, 2 * self.channels, name="head_color")(features),
           "position": heads.HeadBank(self.n_layers, 3, name="head_position")(features)}
    if self.predict_occlusion:
      pairs = self.n_layers * (self.n_layers - 1) // 2
      out["occlusion"] = heads.HeadBank(1, pairs, name="head_occlusion")(features)[:, 0]
    return out


def instance_labels(selection: jax.Array, alphas: jax.Array, occlusion: jax.Array,
                    layer_labels: jax.Array | None = None) -> jax.Array:
  """Per-pixel labels of one image from the selected sprites, [H, W] int32.

  The selected alphas are binarised (a > 0.5) and the occlusion hardened (O > 0.5);
  layer l gets label l + 1 (or ``layer_labels[l]``, e.g. 1 + sprite index for the
  semantic variant) and the labels are composited with the occlusion formula without a
  background, so each pixel gets its front-most covering layer and 0 where none covers;
  clamped to the label range. ``occlusion`` is the [L, L] object block.

  Args:
    selection: [L, K] one-hot choice; alphas: [L, K, H, W, 1] warped masks.
  """
  num_layers = selection.shape[0]
  chosen = jnp.einsum("lk,lkhwc->lhwc", selection, alphas)
  hard_alphas = (chosen > 0.5).astype(jnp.float32)
  hard_occlusion = (occlusion > 0.5).astype(jnp.float32)
  if layer_labels is None:
    layer_labels = jnp.arange(1, num_layers + 1)
  labels = jnp.broadcast_to(layer_labels.astype(jnp.float32)[:, None, None, None],
                            hard_alphas.shape)
  composite = compositing.compose(labels, hard_alphas, hard_occlusion)[..., 0]
  return jnp.clip(jnp.round(composite), 0, jnp.max(layer_labels)).astype(jnp.int32)
