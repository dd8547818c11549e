"""DeepCluster's VGG-16 with batch norm and the Sobel input.

13 convs 3x3 (pad 1, bias) -> BN -> ReLU, max-pools after blocks, 224 -> 7; classifier
Linear 25088 -> 4096 -> ReLU -> Dropout 0.5 -> Linear 4096 -> 4096, whose output before
ReLU is the clustering feature (one dropout, after fc6, unlike AlexNet). Same
initialisation and layout conventions as ``alexnet``.
"""

import flax.linen as nn
import jax

from dti_jax.nets.alexnet import Dense, conv_bn_relu, flatten_channel_major, max_pool
from dti_jax.ops import sobel as sobel_lib

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")


def torchvision_feature_layers(layout) -> tuple[tuple[int, str, str], ...]:
  """(index in torchvision's VGG ``features``, kind, name) of every module, in order,
  for a cfg-style ``layout`` (conv widths, "M" a 2x2 max-pool).

  Kinds are "conv" (3x3, padding 1, bias), "relu" (in place) and "pool" (2x2 max-pool,
  stride 2); names conv{block}_{i}, relu{block}_{i} and pool{block}.
  """
  layers, index, block, position = [], 0, 1, 0
  for item in layout:
    if item == "M":
      layers.append((index, "pool", f"pool{block}"))
      index, block, position = index + 1, block + 1, 0
      continue
    position += 1
    layers.append((index, "conv", f"conv{block}_{position}"))
    layers.append((index + 1, "relu", f"relu{block}_{position}"))
    index += 2
  return tuple(layers)


class VGG16(nn.Module):
  """224x224 input -> fc7 feature before ReLU (``fc_width`` 4096; less in tests, smoke runs)."""

  sobel: bool = True
  fc_width: int = 4096

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.sobel:
      x = sobel_lib.sobel(x)
    index = 0
    for item in VGG16_LAYOUT:
      if item == "M":
        x = max_pool(x, 2, 2)
        continue
      index += 1
      x = conv_bn_relu(self, x, item, 3, 1, 1, index, train)
    x = flatten_channel_major(x)
    x = nn.relu(Dense(self.fc_width, name="fc6")(x))
    x = nn.Dropout(0.5, deterministic=not train)(x)
    return Dense(self.fc_width, name="fc7")(x)
