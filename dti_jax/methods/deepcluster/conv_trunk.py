"""The conv part of a DeepCluster network on images of any size, for R-MAC retrieval.

DeepCluster's ``eval_retrieval.py`` keeps the network's ``features`` without its last
max-pool: the last conv layer's ReLU map (AlexNet conv5, VGG-16 conv5_3; here also the
MNIST-sized network's conv3), Sobel first when the network has it, BN in eval mode. The
full flax networks end in fc layers of a fixed input size, so this module repeats their
conv layers under the same names (``conv{i}``, ``bn{i}``) and runs on their variables.

Images of different sizes share one padded batch: every map is set to zero past its
image's valid extent after each layer, which is exactly the zero padding PyTorch's convs
see at the border of the unpadded image, so the valid part equals the unpadded result.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.nets import alexnet, vgg
from dti_jax.ops import sobel as sobel_lib


def _vgg16_layers():
  convs = list(vgg.VGG16_LAYOUT)
  layers = []
  for position, item in enumerate(convs):
    if item != "M":
      pool = position + 1 < len(convs) - 1 and convs[position + 1] == "M"
      layers.append((item, 3, 1, 1, (2, 2) if pool else None))
  return tuple(layers)


# arch -> conv layers (out channels, kernel, stride, pad, max-pool (window, stride) after
# it or None); the last layer's pool, which the original drops, is left out.
LAYERS = {
    "alexnet": ((96, 11, 4, 2, (3, 2)), (256, 5, 1, 2, (3, 2)), (384, 3, 1, 1, None),
                (384, 3, 1, 1, None), (256, 3, 1, 1, None)),
    "mini_alexnet": ((32, 3, 1, 1, (2, 2)), (64, 3, 1, 1, (2, 2)), (128, 3, 1, 1, None)),
    "vgg16": _vgg16_layers(),
}


def output_size(arch: str, size):
  """The feature map's side for an image side ``size`` (ints or integer arrays):
  floor((n + 2 pad - kernel) / stride) + 1 per conv, floor((n - window) / stride) + 1
  per pool."""
  for _, kernel, stride, pad, pool in LAYERS[arch]:
    size = (size + 2 * pad - kernel) // stride + 1
    if pool is not None:
      size = (size - pool[0]) // pool[1] + 1
  return size


def _mask(x: jax.Array, sizes: jax.Array) -> jax.Array:
  """Zeros past each image's valid (height, width) ``sizes`` [B, 2]."""
  rows = jnp.arange(x.shape[1])[None, :] < sizes[:, :1]
  cols = jnp.arange(x.shape[2])[None, :] < sizes[:, 1:]
  return x * (rows[:, :, None, None] & cols[:, None, :, None]).astype(x.dtype)


class ConvTrunk(nn.Module):
  """[B, H, W, 3] normalised images (zero past ``sizes``) -> the last conv ReLU map."""

  arch: str
  sobel: bool

  @nn.compact
  def __call__(self, x: jax.Array, sizes: jax.Array) -> jax.Array:
    x = _mask(x, sizes)
    if self.sobel:
      x = _mask(sobel_lib.sobel(x), sizes)
    for index, (features, kernel, stride, pad, pool) in enumerate(LAYERS[self.arch], start=1):
      x = alexnet.conv_bn_relu(self, x, features, kernel, stride, pad, index, False)
      sizes = (sizes + 2 * pad - kernel) // stride + 1
      x = _mask(x, sizes)
      if pool is not None:
        x = _mask(alexnet.max_pool(x, *pool), (sizes - pool[0]) // pool[1] + 1)
        sizes = (sizes - pool[0]) // pool[1] + 1
    return x


def check_variables(arch: str, params: dict, where: str) -> bool:
  """Whether the network of ``params`` has the Sobel input; ValueError naming ``where``
  when its conv layers are not those of ``arch``."""
  if arch not in LAYERS:
    raise ValueError(f"config.model.arch={arch!r} is not one of {sorted(LAYERS)}")
  in_channels = None
  for index, (features, kernel, *_) in enumerate(LAYERS[arch], start=1):
    shape = tuple(np.shape(params.get(f"conv{index}", {}).get("kernel")))
    in_channels = shape[2] if index == 1 and len(shape) == 4 else in_channels
    expected = (kernel, kernel, in_channels, features)
    if shape != expected:
      raise ValueError(f"{where}: conv{index} kernel has shape {shape or None}, "
                       f"config.model.arch={arch!r} expects {expected}")
    in_channels = features
  first = int(np.shape(params["conv1"]["kernel"])[2])
  if first not in (2, 3):
    raise ValueError(f"{where}: conv1 takes {first} channels; retrieval needs RGB input "
                     "(3 channels) or the Sobel front end (2)")
  return first == 2
