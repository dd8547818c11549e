"""The perceptual distance of DLP's "vgg" reconstruction loss: frozen ImageNet VGG-16.

DLP's ``VGGDistance`` (dlp:utils/loss_functions.py) reads torchvision's ``vgg16``
``features`` at indices (2, 7, 12, 21, 30). Indices 2, 7, 12 and 21 are convs (conv1_2,
conv2_2, conv3_2, conv4_3), each followed by an in-place ReLU that overwrites the stored
tensor before the distance reads it; 30 is the last max-pool. So the features used are
relu1_2, relu2_2, relu3_2, relu4_3 and pool5, computed here directly. Images go in as
they are, in [0, 1], without ImageNet mean/std normalisation, as there; one-channel
images are repeated to RGB. Five 2x2 max-pools need images of at least 32x32.

The weights are the 13 convs of torchvision's ``features`` (``vgg16-397923af.pth``),
converted once by scripts/convert_vgg16.py into a flax msgpack file
{"params": {"conv1_1": {"kernel": HWIO, "bias"}, ..., "conv5_3": ...}}. They are a
constant of the loss, never trained: no gradient reaches them and they have no optimizer
state.
"""

import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dti_jax.nets import vgg
from dti_jax.nets.alexnet import max_pool

TORCHVISION_TAPS = (2, 7, 12, 21, 30)
MIN_SIDE = 32
CONVERT_HINT = "convert torchvision's vgg16-397923af.pth with scripts/convert_vgg16.py"

Params = dict[str, dict[str, Any]]


def torchvision_layers() -> tuple[tuple[int, str, str], ...]:
  """(index in torchvision's vgg16 ``features``, kind, name) of every module, in order.

  Kinds are "conv" (3x3, padding 1, bias), "relu" (in place) and "pool" (2x2 max-pool,
  stride 2); names conv{block}_{i}, relu{block}_{i} and pool{block}.
  """
  return vgg.torchvision_feature_layers(vgg.VGG16_LAYOUT)


LAYERS = torchvision_layers()
CONVS = tuple(name for _, kind, name in LAYERS if kind == "conv")


def _effective_tap(index: int) -> str:
  """The layer whose output the original's tap ``index`` holds once its forward is done:
  a conv's output is overwritten by the in-place ReLU right after it."""
  position = [i for i, _, _ in LAYERS].index(index)
  kind = LAYERS[position][1]
  return LAYERS[position + 1][2] if kind == "conv" else LAYERS[position][2]


TAPS = tuple(_effective_tap(index) for index in TORCHVISION_TAPS)


def expected_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
  """conv name -> (HWIO kernel shape, bias shape) of torchvision's VGG-16."""
  shapes, channels = {}, 3
  widths = [item for item in vgg.VGG16_LAYOUT if item != "M"]
  for name, width in zip(CONVS, widths):
    shapes[name] = ((3, 3, channels, width), (width,))
    channels = width
  return shapes


def convert_state_dict(state_dict: dict[str, np.ndarray], source: str) -> Params:
  """The 13 convs of a torchvision ``vgg16`` state dict, kernels OIHW -> HWIO, float32.

  Args:
    state_dict: torch key -> numpy array (``load_torch_file`` of vgg16-397923af.pth);
      ``classifier.*`` is ignored.
    source: the file it came from, named in errors.

  Raises:
    ValueError: one line naming ``source`` and the key: a missing conv, an unexpected
      ``features.*`` key, a shape other than VGG-16's, or a non-float tensor.
  """
  table = {}
  for index, kind, name in LAYERS:
    if kind == "conv":
      table[f"features.{index}.weight"] = (name, "kernel")
      table[f"features.{index}.bias"] = (name, "bias")
  extra = sorted(key for key in state_dict if key.startswith("features.") and key not in table)
  if extra:
    raise ValueError(f"{source}: has {extra[0]} ({len(extra)} such keys), not a layer of "
                     "torchvision's vgg16 (vgg16_bn and other models are not supported)")
  shapes, params = expected_shapes(), {}
  for key, (name, leaf) in table.items():
    if key not in state_dict:
      raise ValueError(f"{source}: lacks {key} ({name}); not torchvision's vgg16 state dict")
    value = np.asarray(state_dict[key])
    kernel_shape, bias_shape = shapes[name]
    expected = (kernel_shape[3], kernel_shape[2], 3, 3) if leaf == "kernel" else bias_shape
    if value.shape != expected:
      raise ValueError(f"{source}: {key} ({name}) has shape {value.shape}, torchvision's "
                       f"vgg16 has {expected}")
    if not np.issubdtype(value.dtype, np.floating):
      raise ValueError(f"{source}: {key} ({name}) has dtype {value.dtype}, expected float")
    if leaf == "kernel":
      value = np.transpose(value, (2, 3, 1, 0))
    params.setdefault(name, {})[leaf] = value.astype(np.float32)
  return params


def check_params(params: Any, source: str) -> None:
  """Raises a one-line ValueError naming ``source`` unless ``params`` are VGG-16's convs."""
  if not isinstance(params, dict) or set(params) != set(CONVS):
    found = sorted(params) if isinstance(params, dict) else type(params).__name__
    raise ValueError(f"{source}: expected the convs {CONVS[0]}..{CONVS[-1]} under 'params', "
                     f"found {found}; {CONVERT_HINT}")
  for name, (kernel_shape, bias_shape) in expected_shapes().items():
    layer = params[name] if isinstance(params[name], dict) else {}
    shapes = {leaf: np.shape(layer.get(leaf)) for leaf in ("kernel", "bias")}
    if shapes != {"kernel": kernel_shape, "bias": bias_shape}:
      raise ValueError(f"{source}: {name} has shapes {shapes}, VGG-16 expects kernel "
                       f"{kernel_shape} and bias {bias_shape}")


def save_params(path: str, params: Params) -> None:
  """Writes converted convs as flax msgpack {"params": params}."""
  check_params(params, path)
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize({"params": params}))


def load_vgg16_features(path: str) -> Params:
  """The conv weights written by scripts/convert_vgg16.py, as float32 numpy arrays.

  Args:
    path: ``config.loss.vgg_weights``.

  Raises:
    ValueError: one line naming ``config.loss.vgg_weights``: empty, no such file, not a
      converted file, or not VGG-16's shapes.
  """
  if not path:
    raise ValueError("config.loss.rec_loss='vgg' needs config.loss.vgg_weights: "
                     f"{CONVERT_HINT}")
  source = f"config.loss.vgg_weights={path!r}"
  if not os.path.isfile(path):
    raise ValueError(f"{source}: no such file; {CONVERT_HINT}")
  with open(path, "rb") as f:
    data = f.read()
  try:
    tree = flax.serialization.msgpack_restore(data)
  except Exception as e:  # Arbitrary bytes fail in arbitrary ways.
    raise ValueError(f"{source}: not a msgpack file ({type(e).__name__}); {CONVERT_HINT}"
                     ) from e
  params = tree.get("params") if isinstance(tree, dict) else None
  check_params(params, source)
  return {name: {leaf: np.asarray(value, np.float32) for leaf, value in layer.items()}
          for name, layer in params.items()}


def features(params: Params, images: jax.Array) -> tuple[jax.Array, ...]:
  """relu1_2, relu2_2, relu3_2, relu4_3 and pool5 of [B, H, W, C] images in [0, 1].

  C is 3, or 1 (repeated to RGB as the original does). ``params`` may have any widths
  that chain (tests use narrow ones); no gradient flows into them.
  """
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  params = lax.stop_gradient(params)
  x, taps = images, {}
  for _, kind, name in LAYERS:
    if kind == "conv":
      layer = params[name]
      x = lax.conv_general_dilated(x, jnp.asarray(layer["kernel"], x.dtype), (1, 1),
                                   ((1, 1), (1, 1)),
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
      x = x + jnp.asarray(layer["bias"], x.dtype)
    elif kind == "relu":
      x = jax.nn.relu(x)
    else:
      x = max_pool(x, 2, 2)
    if name in TAPS:
      taps[name] = x
      if len(taps) == len(TAPS):
        break
  return tuple(taps[name] for name in TAPS)


def vgg_distance(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
  """Per image, sum (x - y)^2 + sum over the taps of sum (phi(x) - phi(y))^2: [B].

  Every term has weight 1 and is a sum, not a mean (the original's
  ``accumulate_mode='sum'``); reduce over the batch outside.

  Raises:
    ValueError: images smaller than 32x32 (pool5 would be empty).
  """
  if min(x.shape[1:3]) < MIN_SIDE:
    raise ValueError(f"the VGG distance needs images of at least {MIN_SIDE}x{MIN_SIDE}, got "
                     f"{x.shape[1]}x{x.shape[2]}")
  count = x.shape[0]
  distance = jnp.sum((x - y) ** 2, axis=tuple(range(1, x.ndim)))
  for tap in features(params, jnp.concatenate([x, y])):  # one pass over both
    distance = distance + jnp.sum((tap[:count] - tap[count:]) ** 2, axis=(1, 2, 3))
  return distance
