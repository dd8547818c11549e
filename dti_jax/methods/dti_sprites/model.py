"""DTI-Sprites pieces: sprite selection by greedy coordinate descent over layers.

An image is a background plus L object layers composited back to front; each layer shows
one of K sprites. The choice is discrete: greedy coordinate descent over the layers
(multi-object configs), run without gradient; the loss then recomposes the chosen
sprites with the one-hot selection so gradients reach exactly those sprites.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dti_jax.nets import heads, resnet
from dti_jax.methods.dti_sprites import compositing
from dti_jax.ops import gaussian
from dti_jax.transforms import affine, placement, projective, tps


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
      rest, behind, visible = _candidate_terms(slot_colours, slot_alphas, occlusion, layer + 1)
      # Composite with candidate k in the slot: rest - a_k * behind + visible * a_k * c_k.
      composite = rest - alphas[layer] * behind + visible * alphas[layer] * colours[layer]
      errors = jnp.mean((image - composite) ** 2, axis=(1, 2, 3)) + penalties
      best = jnp.argmin(jnp.where(candidates, errors, jnp.inf))
      choice = choice.at[layer].set(best)
      slot_colours = slot_colours.at[layer + 1].set(colours[layer, best])
      slot_alphas = slot_alphas.at[layer + 1].set(alphas[layer, best])
  return jax.nn.one_hot(choice, num_sprites)


def _candidate_terms(colours: jax.Array, alphas: jax.Array, occlusion: jax.Array, slot: int):
  """The composite as an affine function of the alpha and colour put in one slot.

  With every other slot fixed, x_hat = rest - a * behind + visible * a * c, where
  G_j = a_j c_j prod_{i not in (j, slot)} (1 - O[i, j] a_i), rest = sum_{j != slot} G_j,
  behind = sum_{j != slot} O[slot, j] G_j and visible = prod_{i != slot} (1 - O[i, slot] a_i):
  each candidate then costs one pass over the image instead of a full composite.
  """
  num_slots = colours.shape[0]
  cover = 1.0 - occlusion[:, :, None, None, None] * alphas[:, None]          # [i, j, H, W, 1]
  cover = jnp.where(jnp.eye(num_slots, dtype=bool)[:, :, None, None, None], 1.0, cover)
  visible = jnp.prod(cover[:, slot], axis=0)
  others = jnp.prod(cover.at[slot].set(1.0), axis=0)                        # [j, H, W, 1]
  contributions = (alphas * colours * others).at[slot].set(0.0)             # G_j
  rest = jnp.sum(contributions, axis=0)
  behind = jnp.einsum("j,jhwc->hwc", occlusion[slot], contributions)
  return rest, behind, visible


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
  so everything outside the warped sprite is transparent. The axis-aligned placement
  is computed separably (``placement.place_with_position``), same values as a gather.
  """
  coloured = sprite_color(stack, color_beta, channels)
  return placement.place_with_position(coloured, position_beta, height, width)


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


SPRITE_MODULES = ("identity", "color", "affine", "similarity", "projective", "tps")


def module_size(name: str, channels: int, grid_size: int = 4) -> int:
  """Number of parameters of a DTI-Sprites transformation module."""
  sizes = {"identity": 0, "color": 2 * channels, "affine": 6, "similarity": 4, "position": 3,
           "projective": 9, "tps": 2 * grid_size ** 2}
  if name not in sizes:
    raise ValueError(f"unknown transformation {name!r}; one of {sorted(sizes)}")
  return sizes[name]


def parse_modules(sequence: str) -> tuple[str, ...]:
  """'identity_similarity' -> ('identity', 'similarity'); raises on unknown names."""
  names = tuple(sequence.split("_"))
  for name in names:
    module_size(name, 3)
  return names


def apply_module(name: str, stack: jax.Array, beta: jax.Array, *, channels: int,
                 padding_mode: str, grid_size: int = 4) -> jax.Array:
  """One module on a [h, w, C+extra] stack; spatial modules warp every channel together.

  The output keeps the input size (placement on a canvas is ``place_sprite``'s job).
  """
  height, width = stack.shape[:2]
  if name == "identity":
    return stack
  if name == "color":
    return sprite_color(stack, beta, channels)
  if name == "affine":
    return affine.warp_affine(stack, beta, padding_mode=padding_mode)
  if name == "similarity":
    return placement.warp_to_canvas(stack, placement.similarity_matrix(beta), height, width,
                                    padding_mode=padding_mode)
  if name == "projective":
    return projective.warp_projective(stack, beta, padding_mode=padding_mode)
  if name == "tps":
    return tps.warp_tps(stack, beta, grid_size=grid_size, padding_mode=padding_mode)
  raise ValueError(f"unknown transformation {name!r}")


def apply_modules(stack: jax.Array, betas: dict[str, jax.Array], modules: tuple[str, ...],
                  n_active: int, *, channels: int, padding_mode: str,
                  grid_size: int = 4) -> jax.Array:
  """The first ``n_active`` modules of a sequence (later ones skipped, as the curriculum)."""
  for name in modules[:n_active]:
    stack = apply_module(name, stack, betas.get(name), channels=channels,
                         padding_mode=padding_mode, grid_size=grid_size)
  return stack


class SpritesPredictor(nn.Module):
  """One shared encoder and every head of the model, all reading the same features.

  Heads (last layer zero, so every module starts at its identity):
  'sprite/<module>' [B, L, K, P], one MLP per (layer, sprite) stored l-major;
  'layer/color' [B, L, 2C] and 'layer/position' [B, L, 3] when the layer
  transformation is color_position; 'bkg/<module>' [B, M, P]; 'occlusion' [B, L(L-1)/2].
  """

  encoder: str
  pool_grid: int
  n_layers: int
  n_sprites: int                      # K, the empty sprite included
  channels: int
  sprite_modules: tuple[str, ...]
  layer_transform: bool
  n_backgrounds: int
  bkg_modules: tuple[str, ...]
  predict_occlusion: bool
  grid_size: int = 4
  mixed_precision: bool = False

  def setup(self):
    self.encoder_net, _ = resnet.create_encoder(self.encoder, self.pool_grid,
                                                self.mixed_precision)
    size = lambda name: module_size(name, self.channels, self.grid_size)
    layers, sprites = self.n_layers, self.n_sprites
    self.sprite_heads = {name: heads.HeadBank(layers * sprites, size(name), name=f"head_sprite_{name}")
                         for name in self.sprite_modules if size(name)}
    self.layer_heads = ({name: heads.HeadBank(layers, size(name), name=f"head_layer_{name}")
                         for name in ("color", "position")} if self.layer_transform else {})
    self.bkg_heads = ({name: heads.HeadBank(self.n_backgrounds, size(name), name=f"head_bkg_{name}")
                       for name in self.bkg_modules if size(name)} if self.n_backgrounds else {})
    if self.predict_occlusion:
      self.occlusion_head = heads.HeadBank(1, layers * (layers - 1) // 2, name="head_occlusion")

  def __call__(self, images: jax.Array, train: bool) -> dict[str, jax.Array]:
    features = self.encoder_net(images, train)
    batch = images.shape[0]
    out = {}
    for name, head in self.sprite_heads.items():
      out[f"sprite/{name}"] = head(features).reshape(batch, self.n_layers, self.n_sprites, -1)
    for name, head in self.layer_heads.items():
      out[f"layer/{name}"] = head(features)
    for name, head in self.bkg_heads.items():
      out[f"bkg/{name}"] = head(features)
    if self.predict_occlusion:
      out["occlusion"] = self.occlusion_head(features)[:, 0]
    return out


def layer_labels(alphas: jax.Array, occlusion: jax.Array,
                 labels: jax.Array | None = None) -> jax.Array:
  """Per-pixel labels of one image from its L chosen layers, [H, W] int32.

  The alphas are binarised (a > 0.5) and the occlusion hardened (O > 0.5); layer l gets
  label l + 1 (or ``labels[l]``, e.g. 1 + sprite index for the semantic variant) and
  the labels are composited with the occlusion formula without a background, so each
  pixel gets its front-most covering layer and 0 where none covers; clamped to the
  label range (at O = 0.5 neither of two layers is in front and their labels add up).

  Args:
    alphas: [L, H, W, 1] warped masks of the chosen sprites.
    occlusion: [L, L] object block of the occlusion matrix.
    labels: optional [L] int labels.
  """
  num_layers = alphas.shape[0]
  hard_alphas = (alphas > 0.5).astype(jnp.float32)
  hard_occlusion = (occlusion > 0.5).astype(jnp.float32)
  if labels is None:
    labels = jnp.arange(1, num_layers + 1)
  values = jnp.broadcast_to(labels.astype(jnp.float32)[:, None, None, None], hard_alphas.shape)
  composite = compositing.compose(values, hard_alphas, hard_occlusion)[..., 0]
  return jnp.clip(jnp.round(composite), 0, jnp.max(labels)).astype(jnp.int32)


def fill_uncovered(labels: jax.Array, colours: jax.Array, image: jax.Array) -> jax.Array:
  """The original's `eval_with_bkg: False`: label-0 pixels get 1 + the closest layer colour.

  labels [H, W]; colours [L, H, W, C] chosen layer colours (masks ignored); image [H, W, C].
  """
  nearest = jnp.argmin(jnp.sum((colours - image[None]) ** 2, axis=-1), axis=0) + 1
  return jnp.where(labels == 0, nearest, labels)
