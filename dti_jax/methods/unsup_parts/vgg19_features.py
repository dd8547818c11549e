"""The perceptual network phi of unsupervised part discovery: frozen ImageNet VGG-19.

``unsup-parts:models/feature_extraction.py`` (``FeatureExtraction('vgg19')``) chains two
slices of torchvision's ``vgg19.features``: indices 0-13 (ending at relu3_2, 256
channels, H/4) and 14-35 (ending at relu5_4, 512 channels, H/16). Each output is
multiplied by its weight (0.33 and 1.0 in the released config) on the returned copy
only; the chain continues on the unweighted tensor. No L2 normalisation. Input: RGB in
[0, 1] normalised with ImageNet mean/std. The caller upsamples the two maps.

The weights are the 16 convs of torchvision's ``features`` (3x3, padding 1, bias),
named conv{block}_{i} (``features.0`` is conv1_1, ``features.34`` conv5_4), converted
offline by scripts/convert_torch_weights.py --kind=vgg19 and read by
``dti_jax.methods.unsup_parts.weights.load_vgg19``. They are a plain dict
{"conv1_1": {"kernel": HWIO, "bias"}, ...} of constants: never trained, no gradient
reaches them.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dti_jax.nets import vgg

# torchvision's cfg "E": conv widths, "M" a 2x2 max-pool.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M")
TAPS = ("relu3_2", "relu5_4")
DEFAULT_WEIGHTS = (0.33, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Params = dict[str, dict[str, Any]]


def torchvision_layers() -> tuple[tuple[int, str, str], ...]:
  """(index in torchvision's vgg19 ``features``, kind, name) of every module, in order.

  Kinds are "conv", "relu" and "pool"; names conv{block}_{i}, relu{block}_{i}, pool{block}.
  """
  return vgg.torchvision_feature_layers(VGG19_LAYOUT)


LAYERS = torchvision_layers()
CONVS = tuple(name for _, kind, name in LAYERS if kind == "conv")
CONV_INDICES = tuple(index for index, kind, _ in LAYERS if kind == "conv")


Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...]]]


def expected_shapes(channel_divisor: int = 1) -> Shapes:
  """conv name -> (HWIO kernel shape, bias shape); ``channel_divisor`` > 1 narrows every
  conv (not the RGB input), for tests."""
  shapes, channels = {}, 3
  widths = [item // channel_divisor for item in VGG19_LAYOUT if item != "M"]
  for name, width in zip(CONVS, widths):
    shapes[name] = ((3, 3, channels, width), (width,))
    channels = width
  return shapes


def init_params(key: jax.Array, channel_divisor: int = 1) -> Params:
  """Random He-normal convs with zero biases, the structure of the converted weights."""
  params = {}
  for name, (kernel_shape, bias_shape) in expected_shapes(channel_divisor).items():
    key, sub = jax.random.split(key)
    std = np.sqrt(2.0 / np.prod(kernel_shape[:3]))
    params[name] = {"kernel": std * jax.random.normal(sub, kernel_shape, jnp.float32),
                    "bias": jnp.zeros(bias_shape, jnp.float32)}
  return params


def normalize(images: jax.Array) -> jax.Array:
  """[B, H, W, 3] RGB in [0, 1] -> ImageNet mean/std normalised (``img_vgg``)."""
  return (images - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def _conv(x: jax.Array, layer: dict[str, Any]) -> jax.Array:
  kernel = jnp.asarray(layer["kernel"], x.dtype)
  x = lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                               dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return x + jnp.asarray(layer["bias"], x.dtype)


def _max_pool(x: jax.Array) -> jax.Array:
  """``nn.MaxPool2d(2, 2)``: floor mode, no padding."""
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def features(params: Params, images: jax.Array,
             weights: tuple[float, float] = DEFAULT_WEIGHTS) -> tuple[jax.Array, jax.Array]:
  """(relu3_2 * weights[0] [B, H/4, W/4, 256], relu5_4 * weights[1] [B, H/16, W/16, 512]).

  Args:
    params: the 16 convs (any widths that chain; tests use narrow ones).
    images: [B, H, W, 3], ImageNet-normalised RGB (``normalize``), H and W multiples of 16.
    weights: the per-tap weights (the original's ``ref_weights``).
  """
  params = lax.stop_gradient(params)
  x, taps = images, []
  for _, kind, name in LAYERS:
    if kind == "conv":
      x = _conv(x, params[name])
    elif kind == "relu":
      x = jax.nn.relu(x)
    else:
      x = _max_pool(x)
    if name in TAPS:
      taps.append(x * weights[len(taps)])
      if len(taps) == len(TAPS):
        break
  return taps[0], taps[1]
