"""ResNet encoders of the DTI papers, in flax.linen (NHWC).

Two families, both with the classification layer dropped and the output flattened
after global average pooling:

* ``resnet20``: the CIFAR ResNet (3 stages of 3 basic blocks, 16/32/64 channels) with
  the parameter-free "option A" shortcut; F = 64.
* ``resnet18``: the torchvision layout (not pretrained); F = 512.

Padding is explicit and symmetric because flax's ``'SAME'`` pads asymmetrically for
stride 2, which would shift the feature maps relative to the PyTorch originals.
Convolutions use PyTorch's ``kaiming_normal_`` (an untruncated normal).

``dtype`` is the compute dtype (``jnp.bfloat16`` for mixed precision): parameters and
BatchNorm statistics stay float32, convolutions run in ``dtype``, and the pooled
features are returned in float32 so the heads and the losses keep full precision.
"""

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

# kaiming_normal_(mode='fan_in', gain sqrt 2): flax's 'normal' is untruncated.
_kaiming_fan_in = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
_kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

# PyTorch BatchNorm: running = 0.9 * running + 0.1 * batch, eps 1e-5.
_BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


class BasicBlock(nn.Module):
  """conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> + shortcut -> ReLU."""

  features: int
  stride: int
  shortcut: str  # 'option_a' (CIFAR ResNet) or 'projection' (torchvision)
  kernel_init: Callable
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(nn.Conv, use_bias=False, kernel_init=self.kernel_init,
                             dtype=self.dtype)
    norm = functools.partial(_BatchNorm, use_running_average=not train, dtype=self.dtype)
    y = conv(self.features, (3, 3), (self.stride, self.stride), padding=((1, 1), (1, 1)))(x)
    y = nn.relu(norm()(y))
    y = conv(self.features, (3, 3), padding=((1, 1), (1, 1)))(y)
    y = norm()(y)
    in_features = x.shape[-1]
    if self.stride != 1 or in_features != self.features:
      if self.shortcut == "option_a":
        # Subsample and zero-pad the channel axis by planes/4 on each side.
        pad = self.features // 4
        x = jnp.pad(x[:, ::2, ::2, :], ((0, 0), (0, 0), (0, 0), (pad, pad)))
      else:
        x = conv(self.features, (1, 1), (self.stride, self.stride), padding="VALID")(x)
        x = norm()(x)
    return nn.relu(y + x)


def adaptive_average_pool(x: jax.Array, grid: int) -> jax.Array:
  """AdaptiveAvgPool2d to grid x grid, flattened channel-major like PyTorch: [B, C*g*g].

  Only exact divisions are supported (every configuration of the originals divides
  its feature map exactly).
  """
  x = x.astype(jnp.float32)
  if grid == 1:
    return jnp.mean(x, axis=(1, 2))
  batch, height, width, channels = x.shape
  if height % grid or width % grid:
    raise ValueError(f"feature map {height}x{width} is not divisible by the pool grid {grid}")
  pooled = x.reshape(batch, grid, height // grid, grid, width // grid, channels).mean(axis=(2, 4))
  return jnp.transpose(pooled, (0, 3, 1, 2)).reshape(batch, -1)


class ResNet20(nn.Module):
  """CIFAR ResNet feature extractor: [B, H, W, C] -> [B, 64 * pool_grid**2].

  3 blocks per stage is ResNet-20 (DTI-Clustering), 5 is ResNet-32 (DTI-Sprites).
  """

  blocks_per_stage: int = 3
  pool_grid: int = 1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.Conv(16, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                kernel_init=_kaiming_fan_in, dtype=self.dtype)(x)
    x = nn.relu(_BatchNorm(use_running_average=not train, dtype=self.dtype)(x))
    for stage, features in enumerate((16, 32, 64)):
      for block in range(self.blocks_per_stage):
        stride = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(features, stride, "option_a", _kaiming_fan_in, self.dtype)(x, train)
    return adaptive_average_pool(x, self.pool_grid)


class ResNet18(nn.Module):
  """torchvision ResNet-18 feature extractor (random init): [B, H, W, 3] -> [B, 512 g^2]."""

  pool_grid: int = 1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.Conv(64, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                kernel_init=_kaiming_fan_out, dtype=self.dtype)(x)
    x = nn.relu(_BatchNorm(use_running_average=not train, dtype=self.dtype)(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))  # pads with -inf
    for stage, features in enumerate((64, 128, 256, 512)):
      for block in range(2):
        stride = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(features, stride, "projection", _kaiming_fan_out, self.dtype)(x, train)
    return adaptive_average_pool(x, self.pool_grid)


ResNet32 = functools.partial(ResNet20, blocks_per_stage=5)

ENCODERS = {"resnet20": (ResNet20, 64), "resnet32": (ResNet32, 64), "resnet18": (ResNet18, 512)}
# Total stride: the input side that leaves one pixel in the last feature map.
_STRIDE = {"resnet20": 4, "resnet32": 4, "resnet18": 32}


def check_input_size(name: str, image_shape: tuple[int, ...], pool_grid: int = 1) -> None:
  """One-line ValueError when images are too small for the encoder or its pool grid."""
  if name not in ENCODERS:
    raise ValueError(f"config.model.encoder={name!r} is not one of {sorted(ENCODERS)}")
  side, stride = min(image_shape[:2]), _STRIDE[name]
  if side < stride:
    raise ValueError(f"image size {tuple(image_shape[:2])} is too small for "
                     f"config.model.encoder={name} (needs at least {stride} pixels a side)")
  feature_map = -(-side // stride)
  if feature_map % pool_grid:
    raise ValueError(f"image size {tuple(image_shape[:2])} gives a {feature_map}-pixel "
                     f"feature map, not divisible by config.model.pool_grid={pool_grid}")


def create_encoder(name: str, pool_grid: int = 1,
                   mixed_precision: bool = False) -> tuple[nn.Module, int]:
  """Returns (module, feature size F) for an encoder name of the original configs.

  ``pool_grid`` > 1 average-pools the last feature map to a grid instead of 1x1
  (DTI-Sprites' ``with_pool``), which multiplies F by pool_grid**2.
  ``mixed_precision`` runs the convolutions in bfloat16 (float32 parameters and output).
  """
  if name not in ENCODERS:
    raise ValueError(f"config.model.encoder={name!r} is not one of {sorted(ENCODERS)}")
  module_cls, features = ENCODERS[name]
  dtype = jnp.bfloat16 if mixed_precision else jnp.float32
  return module_cls(pool_grid=pool_grid, dtype=dtype), features * pool_grid ** 2
