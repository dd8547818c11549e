"""Part segmenters of "Unsupervised Part Discovery from Contrastive Reconstruction" (NHWC).

* ``DeepLabV2ResNet50``: the Caffe-style DeepLab-v2 ResNet-50 "two-branch" network of
  ``unsup-parts:models/deeplab_2branch.py`` (``Res50_Deeplab_2branch``). Output stride 8:
  conv1 7x7/2 -> BN -> ReLU -> max-pool 3x3/2 pad 1 with ceil mode (128 -> 65) -> four
  stages of Bottlenecks [3, 4, 6, 3]. The layer2 stride sits on the first 1x1 conv
  (Caffe ResNet, not torchvision's 3x3); layer3 and layer4 are dilated 2 and 4. The
  second half of layer4's channels feeds the ASPP head ``layer5``: four 3x3 convs to K
  with dilation = padding in (6, 12, 18, 24), summed. 256x256 -> 33x33, 256x384 -> 33x49.
  The original also returns layer4's first half and the L2-normalised second half; only
  the logits are used, so only they are returned.
* ``ToySegmenter``: the small dilated CNN of the offline benchmark (output stride 4).

Both return logits at feature resolution; the caller upsamples them.

``width`` scales every channel count (64 is ResNet-50; tests use e.g. 4 with the same
structure and parameter names). Names follow the original's attributes so a torch key
maps mechanically (``dti_jax.methods.unsup_parts.weights``): ``layer2.0.conv1.weight``
-> params ``layer2_0/conv1/kernel``, ``layer2.0.downsample.1.running_mean`` ->
batch_stats ``layer2_0/downsample_bn/mean``, ``layer5.conv2d_list.3.bias`` -> params
``layer5/conv3/bias``.

Initialisation as the original: every conv kernel N(0, 0.01), BN scale 1 and bias 0,
ASPP biases PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

BatchNorm (momentum 0.1 in PyTorch's convention, eps 1e-5): with ``bn_mode="batch"``
the statistics of the current batch in training (updating ``batch_stats``), running
averages at evaluation, as the original (whose model stays in ``train()`` mode).
``bn_mode="frozen"`` always uses the running averages, for data-parallel scale-up where
batch statistics would become global-batch statistics. flax updates the running
variance with the biased batch variance, PyTorch with the unbiased one: a factor
n / (n - 1) with n = B*H*W >= 6*33*33, negligible.

The original freezes (``requires_grad=False``) the scale and bias of ``bn1`` and of the
three BNs inside every bottleneck, but not those of the downsample branches;
``param_labels`` marks them "frozen" for an optax ``multi_transform`` (the trainer must
zero their gradients before the global-norm clip: in PyTorch they have none).
"""

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

BN_MODES = ("batch", "frozen")
STAGES = (3, 4, 6, 3)  # ResNet-50
EXPANSION = 4
ASPP_DILATIONS = (6, 12, 18, 24)
HEAD = "layer5"
FROZEN_BNS = ("bn1", "bn2", "bn3")  # bn1 of the stem and the three of each bottleneck

_conv_init = nn.initializers.normal(stddev=0.01)
# PyTorch's default Conv2d init (kaiming_uniform_ with a = sqrt(5)): U(+-1/sqrt(fan_in)).
_torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias_init(fan_in: int) -> Callable:
  """PyTorch's default conv bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def ceil_mode_pads(size: int, window: int, stride: int, pad: int) -> tuple[int, int]:
  """(left, right) padding that makes a VALID pool equal PyTorch's ceil-mode pool.

  PyTorch: out = ceil((size + 2 pad - window) / stride) + 1, minus one when the last
  window would start in the right padding.
  """
  out = -(-(size + 2 * pad - window) // stride) + 1
  if (out - 1) * stride >= size + pad:
    out -= 1
  return pad, max((out - 1) * stride + window - size - pad, 0)


def ceil_mode_max_pool(x: jax.Array, window: int = 3, stride: int = 2,
                       pad: int = 1) -> jax.Array:
  """``nn.MaxPool2d(window, stride, pad, ceil_mode=True)`` on [B, H, W, C] (pads with -inf)."""
  padding = tuple(ceil_mode_pads(size, window, stride, pad) for size in x.shape[1:3])
  return nn.max_pool(x, (window, window), (stride, stride), padding=padding)


def output_size(height: int, width: int) -> tuple[int, int]:
  """The logit grid of ``DeepLabV2ResNet50`` for an input of height x width."""

  def side(n):
    n = (n - 1) // 2 + 1  # conv1, stride 2, pad 3
    n = n + sum(ceil_mode_pads(n, 3, 2, 1)) - 3
    n = n // 2 + 1  # the ceil-mode pool
    return (n - 1) // 2 + 1  # layer2's 1x1 conv, stride 2

  return side(height), side(width)


def _batch_norm(name: str, train: bool, bn_mode: str, dtype: jnp.dtype) -> nn.BatchNorm:
  """PyTorch BatchNorm2d: running = 0.9 running + 0.1 batch, eps 1e-5."""
  if bn_mode not in BN_MODES:
    raise ValueError(f"bn_mode={bn_mode!r} is not one of {BN_MODES}")
  use_running_average = bn_mode == "frozen" or not train
  return nn.BatchNorm(use_running_average=use_running_average, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, name=name)


class Bottleneck(nn.Module):
  """Caffe Bottleneck: 1x1 (stride) -> 3x3 (dilation) -> 1x1 (x4), BN after each, + shortcut.

  Submodules conv1..conv3, bn1..bn3 and, with ``downsample``, downsample_conv and
  downsample_bn (torch ``downsample.0`` / ``downsample.1``).
  """

  planes: int
  stride: int = 1
  dilation: int = 1
  downsample: bool = False
  bn_mode: str = "batch"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = functools.partial(nn.Conv, use_bias=False, kernel_init=_conv_init, dtype=self.dtype)
    norm = functools.partial(_batch_norm, train=train, bn_mode=self.bn_mode, dtype=self.dtype)
    d = self.dilation
    y = conv(self.planes, (1, 1), (self.stride, self.stride), padding="VALID", name="conv1")(x)
    y = nn.relu(norm("bn1")(y))
    y = conv(self.planes, (3, 3), padding=((d, d), (d, d)), kernel_dilation=(d, d),
             name="conv2")(y)
    y = nn.relu(norm("bn2")(y))
    y = conv(self.planes * EXPANSION, (1, 1), padding="VALID", name="conv3")(y)
    y = norm("bn3")(y)
    if self.downsample:
      x = conv(self.planes * EXPANSION, (1, 1), (self.stride, self.stride), padding="VALID",
               name="downsample_conv")(x)
      x = norm("downsample_bn")(x)
    return nn.relu(y + x)


class ASPP(nn.Module):
  """DeepLab-v2 ``Classifier_Module``: 3x3 convs with dilation = padding, outputs summed.

  Convs named conv0..conv3 (torch ``conv2d_list.0`` .. ``conv2d_list.3``).
  """

  num_classes: int
  dilations: tuple[int, ...] = ASPP_DILATIONS
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    bias_init = torch_default_bias_init(9 * x.shape[-1])
    out = 0.0
    for i, d in enumerate(self.dilations):
      out = out + nn.Conv(self.num_classes, (3, 3), padding=((d, d), (d, d)),
                          kernel_dilation=(d, d), kernel_init=_conv_init, bias_init=bias_init,
                          dtype=self.dtype, name=f"conv{i}")(x)
    return out


class DeepLabV2ResNet50(nn.Module):
  """DeepLab-v2 ResNet-50 two-branch segmenter: [B, H, W, 3] -> logits [B, h, w, K].

  Input: RGB in 0..255 minus the Caffe means (no std), as the original feeds it.
  Parameters: conv1, bn1, layer{L}_{B} (Bottleneck) for L = 1..4, and layer5 (ASPP).
  """

  num_parts: int = 4
  width: int = 64
  bn_mode: str = "batch"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.Conv(self.width, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                kernel_init=_conv_init, dtype=self.dtype, name="conv1")(x)
    x = nn.relu(_batch_norm("bn1", train, self.bn_mode, self.dtype)(x))
    x = ceil_mode_max_pool(x)
    inplanes = self.width
    stages = ((1, 1), (2, 1), (1, 2), (1, 4))  # (stride, dilation) of layer1..layer4
    for layer, (blocks, (stride, dilation)) in enumerate(zip(STAGES, stages), start=1):
      planes = self.width * 2 ** (layer - 1)
      # The original's condition; it holds for the first block of every stage.
      downsample = (stride != 1 or inplanes != planes * EXPANSION or dilation in (2, 4))
      for block in range(blocks):
        x = Bottleneck(planes, stride if block == 0 else 1, dilation,
                       downsample and block == 0, self.bn_mode, self.dtype,
                       name=f"layer{layer}_{block}")(x, train)
      inplanes = planes * EXPANSION
    part_features = x[..., x.shape[-1] // 2:]
    logits = ASPP(self.num_parts, dtype=self.dtype, name=HEAD)(part_features)
    return logits.astype(jnp.float32)


class ToySegmenter(nn.Module):
  """The offline benchmark's segmenter: [B, H, W, 3] -> logits [B, H/4, W/4, K].

  conv1..conv6 (3x3, widths 24, 32, 48, 64, 64, 64; strides 1, 2, 2, 1, 1, 1; dilations
  1, 1, 1, 1, 2, 4; padding = dilation; ReLU after each), then ``head``, a 1x1 conv to K
  with kernel N(0, 0.01). The 3x3 convs and every bias use PyTorch's default init.
  """

  num_parts: int = 4
  widths: tuple[int, ...] = (24, 32, 48, 64, 64, 64)
  strides: tuple[int, ...] = (1, 2, 2, 1, 1, 1)
  dilations: tuple[int, ...] = (1, 1, 1, 1, 2, 4)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # no BatchNorm; kept for the segmenter interface
    for i, (features, s, d) in enumerate(zip(self.widths, self.strides, self.dilations),
                                         start=1):
      x = nn.Conv(features, (3, 3), (s, s), padding=((d, d), (d, d)), kernel_dilation=(d, d),
                  kernel_init=_torch_default_kernel_init,
                  bias_init=torch_default_bias_init(9 * x.shape[-1]), name=f"conv{i}")(x)
      x = nn.relu(x)
    return nn.Conv(self.num_parts, (1, 1), kernel_init=_conv_init,
                   bias_init=torch_default_bias_init(x.shape[-1]), name="head")(x)


def _label(path: tuple[Any, ...]) -> str:
  names = [getattr(entry, "key", str(entry)) for entry in path]
  if names[0] in (HEAD, "head"):
    return "head"
  if len(names) >= 2 and names[-2] in FROZEN_BNS:
    return "frozen"
  return "backbone"


def param_labels(params: Any) -> Any:
  """"backbone", "head" or "frozen" per parameter, in the structure of ``params``.

  "head" is the ASPP ``layer5`` (or the toy's ``head``), trained at 10x the learning
  rate; "frozen" are the scale and bias of ``bn1`` and of bn1..bn3 in every bottleneck
  (the downsample BNs stay "backbone"); everything else is "backbone".
  """
  return jax.tree_util.tree_map_with_path(lambda path, _: _label(path), params)


def zero_frozen_gradients(grads: Any) -> Any:
  """``grads`` with the "frozen" entries zeroed, so they stay out of a global-norm clip."""
  return jax.tree.map(lambda g, label: jnp.zeros_like(g) if label == "frozen" else g,
                      grads, param_labels(grads))
