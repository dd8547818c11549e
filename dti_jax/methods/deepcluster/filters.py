"""What a DeepCluster conv channel responds to: synthesised inputs and top-activating images.

Both follow the original's visualisation scripts. ``gradient_ascent`` starts from noise
around grey and climbs the softmax probability of one channel among the spatial means of
its layer (the network in eval mode, its variables frozen), blurring every few steps;
``top_activating`` keeps, per channel, the dataset images with the largest spatial mean
of that channel's ReLU map. Layers are numbered from 1 like the nets' ``relu{L}`` and
``conv{L}``; layouts are NHWC.
"""

import functools
from typing import Any, Iterable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Batch = dict[str, Any]
PRNGKey = jax.Array


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
  """scipy.ndimage's 1-D Gaussian weights: radius int(truncate sigma + 0.5), sum 1; float64."""
  radius = int(truncate * sigma + 0.5)
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  weights = np.exp(-0.5 * x ** 2 / sigma ** 2)
  return weights / weights.sum()


def _blur_axis(images, weights, axis):
  radius = (len(weights) - 1) // 2
  pad = [(0, 0)] * images.ndim
  pad[axis] = (radius, radius)
  # numpy's "symmetric" (edge sample repeated) is scipy.ndimage's "reflect".
  padded = jnp.pad(images, pad, mode="symmetric")
  size = images.shape[axis]
  return sum(float(w) * lax.slice_in_dim(padded, k, k + size, axis=axis)
             for k, w in enumerate(weights))


def gaussian_blur(images: jax.Array, sigma: float, truncate: float = 4.0) -> jax.Array:
  """[B, H, W, C] -> [B, H, W, C]: each channel blurred over H and W, never across C.

  Equals scipy.ndimage.gaussian_filter(images, (0, sigma, sigma, 0), mode="reflect",
  truncate=truncate) up to float32 rounding, and like it leaves the images unchanged for
  sigma <= 0. ``sigma`` sets the kernel size, so it is static under jit.
  """
  if sigma <= 0:
    return images
  weights = gaussian_kernel(sigma, truncate)
  return _blur_axis(_blur_axis(images, weights, 1), weights, 2)


def conv_widths(network: nn.Module, image_shape: tuple[int, int, int]) -> list[int]:
  """Channels of conv layers 1, 2, ... of ``network`` (from shapes only, nothing runs)."""
  variables = jax.eval_shape(lambda images: network.init(jax.random.key(0), images, False,
                                                          mutable=True),
                             jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
  maps = variables["intermediates"]
  widths = []
  while f"relu{len(widths) + 1}" in maps:
    widths.append(maps[f"relu{len(widths) + 1}"][0].shape[-1])
  return widths


def layer_maps(network: nn.Module, variables: Any, layer: int,
               images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Eval-mode maps of conv layer ``layer``: (after BN and ReLU, before BN), each [B, h, w, F]."""
  name = f"conv{layer}"
  _, state = network.apply(
      variables, images, False, mutable=["intermediates"],
      capture_intermediates=lambda module, method: module.name == name and method == "__call__")
  maps = state["intermediates"]
  if f"relu{layer}" not in maps:
    raise ValueError(f"layer {layer} is out of range: {type(network).__name__} has conv "
                     f"layers 1..{sum(k.startswith('relu') for k in maps)}")
  return maps[f"relu{layer}"][0], maps[name]["__call__"][0]


def channel_objective(network: nn.Module, variables: Any, layer: int, image: jax.Array,
                      channel: jax.Array, weight_decay: float) -> jax.Array:
  """-CE(spatial means of the layer's maps, channel) - weight_decay ||image||^2, a scalar.

  ``image`` is [H, W, C] as the network takes it. The logits are the channel means of
  the ReLU map, or of the pre-BN conv output while the target channel's ReLU map is all
  zero (as the original), so that a dead channel still gets a gradient.
  """
  relu, conv = layer_maps(network, variables, layer, image[None])
  relu_logits = jnp.mean(relu[0], axis=(0, 1))
  conv_logits = jnp.mean(conv[0], axis=(0, 1))
  logits = jnp.where(relu_logits[channel] == 0, conv_logits, relu_logits)
  return jax.nn.log_softmax(logits)[channel] - weight_decay * jnp.sum(image ** 2)


def deprocess(images: jax.Array) -> jax.Array:
  """[N, H, W, C] -> [0, 1]: per image, centred, std scaled to 0.1, shifted to 0.5, clipped."""
  mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True)
  std = jnp.std(images, axis=(1, 2, 3), keepdims=True)
  return jnp.clip((images - mean) / (std + 1e-5) * 0.1 + 0.5, 0.0, 1.0)


@functools.partial(jax.jit, static_argnames=("network", "layer", "image_shape", "blur_every",
                                             "blur_sigma"))
def synthesize(network: nn.Module, variables: Any, layer: int, channels: jax.Array, *,
               key: PRNGKey, image_shape: tuple[int, int, int], iterations: int, lr: float,
               weight_decay: float = 1e-5, blur_every: int = 5,
               blur_sigma: float = 0.3) -> jax.Array:
  """Raw gradient-ascent inputs [N, H, W, C], one per entry of ``channels`` [N].

  Each starts from N(128, 20^2) pixels drawn from fold_in(key, channel), so a channel's
  image does not depend on which others run with it, and on the pixel scale the
  original feeds its network (not normalised). Every iteration it steps ``lr`` along
  the L2-normalised gradient of ``channel_objective``, then blurs when
  ``it % blur_every == 0`` (it = 0 included). All channels advance together: the
  gradient is vmapped over them, the iterations are a fori_loop (whose count is traced,
  so one compilation serves every ``iterations``).
  """
  def start(channel):
    return 128.0 + 20.0 * jax.random.normal(jax.random.fold_in(key, channel), image_shape)

  objective = lambda image, channel: channel_objective(network, variables, layer, image,
                                                       channel, weight_decay)
  gradients = jax.vmap(jax.grad(objective))

  def step(it, images):
    grads = gradients(images, channels)
    norms = jnp.sqrt(jnp.sum(grads ** 2, axis=(1, 2, 3), keepdims=True))
    images = images + lr * grads / (norms + 1e-8)
    return lax.cond(it % blur_every == 0, lambda x: gaussian_blur(x, blur_sigma),
                    lambda x: x, images)

  return lax.fori_loop(0, iterations, step, jax.vmap(start)(channels))


def gradient_ascent(network: nn.Module, variables: Any, layer: int, channels: jax.Array, *,
                    key: PRNGKey, image_shape: tuple[int, int, int], iterations: int,
                    lr: float, weight_decay: float = 1e-5, blur_every: int = 5,
                    blur_sigma: float = 0.3) -> jax.Array:
  """Displayable images [N, H, W, C] in [0, 1] maximising each of ``channels`` [N] of layer
  ``layer`` (1-based): ``deprocess`` of ``synthesize``. The original's defaults are lr 3,
  1,000 iterations, 224x224x3; its README advises lr 3 with 30,000 iterations for conv1
  and lr 30 with 3,000 for conv5.
  """
  images = synthesize(network, variables, layer, jnp.asarray(channels, jnp.int32), key=key,
                      image_shape=tuple(image_shape), iterations=iterations, lr=lr,
                      weight_decay=weight_decay, blur_every=blur_every,
                      blur_sigma=blur_sigma)
  return deprocess(images)


@functools.partial(jax.jit, static_argnames=("network", "layer"))
def channel_scores(network: nn.Module, variables: Any, layer: int,
                   images: jax.Array) -> jax.Array:
  """[B, H, W, C] network inputs -> [B, F]: spatial mean of each channel's ReLU map."""
  _, state = network.apply(variables, images, False, mutable=["intermediates"])
  return jnp.mean(state["intermediates"][f"relu{layer}"][0], axis=(1, 2))


@functools.partial(jax.jit, static_argnames="count")
def _merge(top_scores, top_ids, scores, ids, mask, count):
  scores = jnp.where(mask[:, None], scores, -jnp.inf).T               # [F, B]
  ids = jnp.broadcast_to(ids.astype(top_ids.dtype), scores.shape)
  # The running top comes first, so an equal score keeps the earlier image.
  top_scores, index = lax.top_k(jnp.concatenate([top_scores, scores], axis=1), count)
  return top_scores, jnp.take_along_axis(jnp.concatenate([top_ids, ids], axis=1), index, 1)


def top_activating(network: nn.Module, variables: Any, layer: int, batches: Iterable[Batch],
                   count: int = 9) -> tuple[np.ndarray, np.ndarray]:
  """Per channel of layer ``layer``, the ``count`` images with the highest ``channel_scores``.

  ``batches`` yield ``image`` [B, H, W, C] as the network takes it (already normalised),
  ``id`` [B] and ``_mask`` [B] (False on padding rows, which never enter the top). One
  pass, keeping only the running top: memory does not grow with the dataset. Returns
  ids int32 [F, count] and scores float32 [F, count], best first; with fewer than
  ``count`` images the tail has id -1 and score -inf.
  """
  variables = jax.device_put(variables)
  top_scores = top_ids = None
  for batch in batches:
    scores = channel_scores(network, variables, layer, jnp.asarray(batch["image"]))
    if top_scores is None:
      top_scores = jnp.full((scores.shape[1], count), -jnp.inf, scores.dtype)
      top_ids = jnp.full((scores.shape[1], count), -1, jnp.int32)
    top_scores, top_ids = _merge(top_scores, top_ids, scores, jnp.asarray(batch["id"]),
                                 jnp.asarray(batch["_mask"]), count)
  if top_scores is None:
    raise ValueError("top_activating: no batches")
  return np.asarray(jax.device_get(top_ids)), np.asarray(jax.device_get(top_scores))
