"""Building blocks of Deep Latent Particles' networks, initialised as the original.

Convs N(0, 0.01^2) with zero bias, BN gamma 1 beta 0 (PyTorch momentum 0.1 = 0.9 here,
eps 1e-5), linears PyTorch's default U(+-1/sqrt(fan_in)) for weight and bias; replicate
padding and PyTorch's bilinear x2 upsampling; channel-major flattening so that linear
layers read features in PyTorch's NCHW order.
"""

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Conv = functools.partial(nn.Conv, kernel_init=nn.initializers.normal(0.01),
                         bias_init=nn.initializers.zeros)
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


def linear(x: jax.Array, features: int) -> jax.Array:
  """PyTorch's nn.Linear with its default init; call from a compact method."""
  bound = 1.0 / math.sqrt(x.shape[-1])

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return nn.Dense(features, kernel_init=init, bias_init=init)(x)


def flatten_channel_major(x: jax.Array) -> jax.Array:
  """[..., H, W, C] -> [..., C*H*W] in PyTorch's (C, H, W) order."""
  return jnp.moveaxis(x, -1, -3).reshape(x.shape[:-3] + (-1,))


def select_max(x: jax.Array, axis: int) -> jax.Array:
  """Max along `axis` with the whole gradient on one arg-max entry, as torch_scatter's max.

  jnp.max's gradient divides by the number of entries equal to the max; under jit XLA may
  recompute the operand with different rounding, leaving none equal (0 / 0 = NaN).
  """
  first = jax.nn.one_hot(jnp.argmax(x, axis=axis), x.shape[axis], axis=axis, dtype=x.dtype)
  return jnp.sum(x * lax.stop_gradient(first), axis=axis)


def glimpse_side(anchor_s: float, side: int) -> int:
  """round(a (side - 1)): the glimpse (or box) side on a side x side map."""
  return int(np.round(anchor_s * (side - 1)))


def replicate_pad(x: jax.Array, pad: int) -> jax.Array:
  """[B, H, W, C] -> [B, H + 2 pad, W + 2 pad, C] repeating the border (ReplicationPad2d).

  Same values as jnp.pad(mode="edge") from a few slices and concatenations, which
  compile to far fewer ops (there is one pad per conv).
  """
  for axis in (1, 2):
    first = lax.slice_in_dim(x, 0, 1, axis=axis)
    last = lax.slice_in_dim(x, x.shape[axis] - 1, x.shape[axis], axis=axis)
    x = jnp.concatenate([first] * pad + [x] + [last] * pad, axis=axis)
  return x


def upsample_bilinear(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C], PyTorch's bilinear x2 with align_corners=False.

  Output pixel 2i reads 0.25 x[i - 1] + 0.75 x[i] and 2i + 1 reads 0.75 x[i] + 0.25 x[i + 1],
  clamped at the border: equal to jax.image.resize(..., "bilinear") in fewer ops.
  """
  for axis in (1, 2):
    size = x.shape[axis]
    before = jnp.concatenate([lax.slice_in_dim(x, 0, 1, axis=axis),
                              lax.slice_in_dim(x, 0, size - 1, axis=axis)], axis=axis)
    after = jnp.concatenate([lax.slice_in_dim(x, 1, size, axis=axis),
                             lax.slice_in_dim(x, size - 1, size, axis=axis)], axis=axis)
    pair = jnp.stack([0.25 * before + 0.75 * x, 0.75 * x + 0.25 * after], axis=axis + 1)
    x = pair.reshape(x.shape[:axis] + (2 * size,) + x.shape[axis + 1:])
  return x


class ConvBlock(nn.Module):
  """Replicate padding k//2 -> conv (no bias) -> BN -> (Leaky)ReLU -> optional x2 upsample.

  The upsample is bilinear with half-pixel centres (PyTorch align_corners=False) and
  comes after the activation, as in the original.
  """

  features: int
  kernel: int = 3
  stride: int = 1
  upsample: bool = False
  leaky: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = Conv(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
             padding="VALID", use_bias=False)(replicate_pad(x, self.kernel // 2))
    x = BatchNorm(use_running_average=not train)(x)
    x = nn.leaky_relu(x, 0.01) if self.leaky else nn.relu(x)
    return upsample_bilinear(x) if self.upsample else x


class KeyPointCNN(nn.Module):
  """KeyNet-style CNN: [B, S, S, C] -> [B, S / 2^(L-1), S / 2^(L-1), num_outputs] keymap.

  Block(c_0, k0), Block(c_0, 3), then per later width c: Block(c, 3, stride 2),
  Block(c, 3); ReLU inside; a 1x1 conv with bias gives the raw keymap (no activation).
  """

  channels: Sequence[int]
  num_outputs: int
  first_kernel: int = 7

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = ConvBlock(self.channels[0], self.first_kernel, leaky=False)(x, train)
    x = ConvBlock(self.channels[0], 3, leaky=False)(x, train)
    for width in self.channels[1:]:
      x = ConvBlock(width, 3, stride=2, leaky=False)(x, train)
      x = ConvBlock(width, 3, leaky=False)(x, train)
    return Conv(self.num_outputs, (1, 1), name="keymap")(x)


class MLPHead(nn.Module):
  """Linear(256) ReLU Linear(128) ReLU Linear(out): the original's many small heads."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(linear(x, 256))
    x = nn.relu(linear(x, 128))
    return linear(x, self.features)
