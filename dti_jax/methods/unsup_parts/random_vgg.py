"""A frozen, seeded, randomly initialised VGG-like network: the offline perceptual net.

Part discovery's feature and contrastive losses read a frozen ImageNet VGG-19. Where no
pretrained weights can be used (the procedural toy benchmark, tests), this stands in:
2 x conv16, 2x2 max-pool, 2 x conv32, max-pool, 2 x conv64, each 3x3 with ReLU, He-normal
weights from a seed, zero biases. Blocks 2 and 3 (32 and 64 channels, at 1/2 and 1/4 of
the input side) are the taps. Raw random ReLU features are all positive, so their part
means would all point the same way; `standardizer` fixes per-channel statistics on
foreground pixels of a few training images so that cosine similarities carry signal.
"""

import jax
import jax.numpy as jnp
import numpy as np

BLOCKS = ((16, 16), (32, 32), (64, 64))
Params = dict[str, dict[str, jax.Array]]


def init_params(seed: int, in_channels: int = 3) -> Params:
  """He-normal 3x3 kernels (HWIO), zero biases, a pure function of ``seed``."""
  rng = np.random.default_rng(seed)
  params, channels = {}, in_channels
  for block, widths in enumerate(BLOCKS):
    for layer, width in enumerate(widths):
      std = np.sqrt(2.0 / (9 * channels))
      params[f"conv{block + 1}_{layer + 1}"] = {
          "kernel": jnp.asarray(rng.normal(0.0, std, (3, 3, channels, width)), jnp.float32),
          "bias": jnp.zeros((width,), jnp.float32)}
      channels = width
  return params


def _conv_relu(x: jax.Array, layer: dict[str, jax.Array]) -> jax.Array:
  y = jax.lax.conv_general_dilated(x, layer["kernel"], (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jax.nn.relu(y + layer["bias"])


def _max_pool(x: jax.Array) -> jax.Array:
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def taps(params: Params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(block 2 [B, H/2, W/2, 32], block 3 [B, H/4, W/4, 64]) of [B, H, W, 3] inputs."""
  outputs, x = [], images
  for block, widths in enumerate(BLOCKS):
    if block:
      x = _max_pool(x)
    for layer in range(len(widths)):
      x = _conv_relu(x, params[f"conv{block + 1}_{layer + 1}"])
    outputs.append(x)
  return outputs[1], outputs[2]
