"""Unsupervised Part Discovery (Choudhury et al., NeurIPS 2021): segmenter and inputs.

The segmenter f maps an image to K part logits at low resolution (DeepLab-v2 ResNet-50
at stride 8, or the toy benchmark's small dilated CNN); `part_logits` upsamples them to
the image with aligned corners, as every loss reads them (spec 2.1, 13.1). The frozen
perceptual network phi (ImageNet VGG-19 relu3_2 x 0.33 and relu5_4 x 1.0, or the
offline random VGG-like net) gives per-pixel features at full resolution, times the
foreground mask. Each network has its own input normalisation (spec 3, 13.4):

* segmenter "deeplab": RGB in 0..255 minus the Caffe BGR means (no scaling, RGB order as
  the original feeds it); "toy": (x - 0.5) * 2 of x in [0, 1];
* phi: x in [0, 1] with ImageNet mean/std;
* visual consistency: CIE Lab of the clean image (`dti_jax.methods.unsup_parts.lab`).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.methods.unsup_parts import deeplab_resnet, random_vgg, vgg19_features
from dti_jax.methods.unsup_parts.resize import resize_align_corners

CAFFE_MEANS = np.array([104.00698793, 116.66876762, 122.67891434], np.float32)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SEGMENTERS = ("deeplab", "toy")
PERCEPTUAL = ("vgg19", "random_vgg")


def create_segmenter(model_config) -> nn.Module:
  if model_config.segmenter == "deeplab":
    return deeplab_resnet.DeepLabV2ResNet50(num_parts=model_config.num_parts,
                                            width=model_config.width,
                                            bn_mode=model_config.bn_mode)
  if model_config.segmenter == "toy":
    return deeplab_resnet.ToySegmenter(num_parts=model_config.num_parts)
  raise ValueError(f"config.model.segmenter={model_config.segmenter!r} is not one of "
                   f"{SEGMENTERS}")


def segmenter_input(images: jax.Array, segmenter: str) -> jax.Array:
  """[B, H, W, 3] images in [0, 1] -> the segmenter's normalisation."""
  if segmenter == "deeplab":
    return images * 255.0 - jnp.asarray(CAFFE_MEANS)
  return (images - 0.5) * 2.0


def part_logits(model: nn.Module, variables: dict[str, Any], inputs: jax.Array, *,
                train: bool) -> tuple[jax.Array, dict[str, Any]]:
  """Logits upsampled to the input side (aligned corners) and the updated batch stats."""
  if train and "batch_stats" in variables:
    logits, updates = model.apply(variables, inputs, train=True, mutable=["batch_stats"])
    batch_stats = updates["batch_stats"]
  else:
    logits = model.apply(variables, inputs, train=False)
    batch_stats = variables.get("batch_stats", {})
  height, width = inputs.shape[1:3]
  return resize_align_corners(logits, height, width), batch_stats


def _imagenet(images: jax.Array) -> jax.Array:
  return (images - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def raw_features(perceptual: dict[str, Any], images: jax.Array, kind: str,
                 tap_weights: tuple[float, float]) -> jax.Array:
  """[B, H, W, C] phi before masking (and, for the random net, before standardising)."""
  height, width = images.shape[1:3]
  if kind == "vgg19":
    low, high = vgg19_features.features(perceptual["params"], _imagenet(images),
                                        weights=tap_weights)
  elif kind == "random_vgg":
    low, high = random_vgg.taps(perceptual["params"], _imagenet(images))
  else:
    raise ValueError(f"config.perceptual.kind={kind!r} is not one of {PERCEPTUAL}")
  return jnp.concatenate([resize_align_corners(low, height, width),
                          resize_align_corners(high, height, width)], axis=-1)


def standardizer(features: jax.Array, mask: jax.Array) -> dict[str, jax.Array]:
  """Per-channel mean and std over foreground pixels, for the random net.

  Standardising each channel also cancels the blocks' scale normalisation and tap
  weights of the spec's toy phi, so those are not applied to it. Stds are floored at
  a tenth of the median channel's.
  """
  count = jnp.maximum(jnp.sum(mask), 1.0)
  mean = jnp.sum(features * mask, axis=(0, 1, 2)) / count
  std = jnp.sqrt(jnp.sum(jnp.square(features - mean) * mask, axis=(0, 1, 2)) / count)
  # A random ReLU channel can be (almost) dead on these images and alive on others:
  # floor its std at a tenth of the median channel's so it cannot blow up later.
  return {"mean": mean, "std": jnp.maximum(std, 0.1 * jnp.median(std))}


def perceptual_features(perceptual: dict[str, Any], images: jax.Array, mask: jax.Array, *,
                        kind: str, tap_weights: tuple[float, float]) -> jax.Array:
  """phi [B, H, W, C] times the mask; no gradient (a frozen network)."""
  features = raw_features(perceptual, images, kind, tap_weights)
  if kind == "random_vgg":
    stats = perceptual["standardizer"]
    features = (features - stats["mean"]) / stats["std"] / np.sqrt(features.shape[-1])
  return jax.lax.stop_gradient(features * mask)
