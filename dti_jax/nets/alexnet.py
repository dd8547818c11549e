"""DeepCluster's AlexNet (BN instead of LRN, Sobel input) and its MNIST-sized variant.

Both return the clustering feature: the fc7 output *before* its ReLU. The top layer
(ReLU -> Linear(features, k)) lives outside, because DeepCluster re-creates it every
epoch. Convolution outputs (after BN and ReLU, before pooling) are sown into the
``intermediates`` collection as relu1..relu5 for the linear probes.

Layout is NHWC; the flatten before fc6 is channel-major (C, H, W) like PyTorch so that
the released weights convert by a transpose. Initialisation as the original: convs
N(0, 2 / (kh kw C_out)) with zero bias, linears N(0, 0.01^2) with zero bias, BN
momentum 0.1 in PyTorch's convention (0.9 here), eps 1e-5.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from dti_jax.ops import sobel as sobel_lib

conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
linear_init = nn.initializers.normal(0.01)
Conv = functools.partial(nn.Conv, kernel_init=conv_init, bias_init=nn.initializers.zeros)
Dense = functools.partial(nn.Dense, kernel_init=linear_init, bias_init=nn.initializers.zeros)
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)


def flatten_channel_major(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, C*H*W] in PyTorch's order."""
  return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


def max_pool(x: jax.Array, window: int, stride: int) -> jax.Array:
  """PyTorch MaxPool2d without padding, floor mode."""
  return nn.max_pool(x, (window, window), (stride, stride), padding="VALID")


def conv_bn_relu(module: nn.Module, x: jax.Array, features: int, kernel: int, stride: int,
                 pad: int, index: int, train: bool) -> jax.Array:
  """conv{index} -> bn{index} -> ReLU, sown as relu{index}; call from a compact method."""
  x = Conv(features, (kernel, kernel), (stride, stride), padding=((pad, pad), (pad, pad)),
           name=f"conv{index}")(x)
  x = nn.relu(BatchNorm(use_running_average=not train, name=f"bn{index}")(x))
  module.sow("intermediates", f"relu{index}", x)
  return x


class AlexNet(nn.Module):
  """224x224 input -> 4096-d fc7 feature before ReLU (spec: conv 96-256-384-384-256).

  ``fc_width`` (fc6 and fc7 outputs) is 4096 in the original; smaller in tests and smoke runs.
  """

  sobel: bool = True
  fc_width: int = 4096

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.sobel:
      x = sobel_lib.sobel(x)
    layers = ((96, 11, 4, 2, True), (256, 5, 1, 2, True), (384, 3, 1, 1, False),
              (384, 3, 1, 1, False), (256, 3, 1, 1, True))
    for index, (features, kernel, stride, pad, pool) in enumerate(layers, start=1):
      x = conv_bn_relu(self, x, features, kernel, stride, pad, index, train)
      if pool:
        x = max_pool(x, 3, 2)
    x = flatten_channel_major(x)
    x = nn.Dropout(0.5, deterministic=not train)(x)
    x = nn.relu(Dense(self.fc_width, name="fc6")(x))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return Dense(self.fc_width, name="fc7")(x)


class MiniAlexNet(nn.Module):
  """28x28x1 input (MNIST) -> 256-d feature before ReLU: the spec's offline network.

  Sobel on the single channel, 3 x [conv 3x3 (32, 64, 128) -> BN -> ReLU -> max-pool 2],
  flatten 3*3*128, dropout, fc 256, ReLU, dropout, fc 256.
  """

  sobel: bool = True
  width: int = 256

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.sobel:
      x = sobel_lib.sobel(x)
    for index, features in enumerate((32, 64, 128), start=1):
      x = max_pool(conv_bn_relu(self, x, features, 3, 1, 1, index, train), 2, 2)
    x = flatten_channel_major(x)
    x = nn.Dropout(0.5, deterministic=not train)(x)
    x = nn.relu(Dense(self.width, name="fc6")(x))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return Dense(self.width, name="fc7")(x)
