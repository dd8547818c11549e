"""Converts the released PyTorch DeepCluster weights into this repo's flax variables.

The original ``state_dict`` (``deepcluster:models/alexnet.py``, ``models/vgg16.py``)
names layers by their index in ``nn.Sequential``s: ``features.N`` (convs, BNs, ReLUs
and max-pools interleaved; ``features.module.N`` under DataParallel), ``classifier.N``
(fc6, fc7 among dropouts and ReLUs), ``top_layer`` and the frozen ``sobel.0`` /
``sobel.1``. Here the layers are named conv1..convN, bn1..bnN, fc6, fc7, so the table
below is built from the original layer lists. Conv kernels go OIHW -> HWIO and linear
weights (out, in) -> (in, out); the flatten before fc6 is channel-major in both, so fc6
needs no row permutation. BN running statistics become ``batch_stats`` (PyTorch's
unbiased running variance is kept as is). The Sobel front end is a fixed op here, so its
weights are checked against ``dti_jax.ops.sobel`` instead of being copied. fc6/fc7
widths are read from the checkpoint, not assumed.
"""

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.interop import torch_files
from dti_jax.nets import alexnet
from dti_jax.nets import vgg
from dti_jax.ops import sobel as sobel_lib

ARCHS = ("alexnet", "vgg16")
# The original ``features`` lists: "C" is conv -> BN -> ReLU (three modules), "M" a pool.
_FEATURES = {"alexnet": ("C", "M", "C", "M", "C", "C", "C", "M"),
             "vgg16": tuple("M" if item == "M" else "C" for item in vgg.VGG16_LAYOUT)}
# Indices of fc6 and fc7 in the original ``classifier`` (AlexNet starts with a dropout).
_CLASSIFIER = {"alexnet": (1, 4), "vgg16": (0, 3)}
_SOBEL = {
    "sobel.0.weight": np.full((1, 3, 1, 1), 1.0 / 3.0, np.float32),
    "sobel.0.bias": np.zeros((1,), np.float32),
    "sobel.1.weight": np.array([[sobel_lib.SOBEL_X], [sobel_lib.SOBEL_Y]], np.float32),
    "sobel.1.bias": np.zeros((2,), np.float32),
}
_INPUT_SHAPE = (1, 224, 224, 3)


def _torch_key_table(arch):
  """torch key -> (collection, flax module, flax name, layout) for the network's layers."""
  table, index, layer = {}, 0, 0
  for item in _FEATURES[arch]:
    if item == "M":
      index += 1
      continue
    layer += 1
    conv, bn = f"features.{index}", f"features.{index + 1}"
    table[f"{conv}.weight"] = ("params", f"conv{layer}", "kernel", "conv")
    table[f"{conv}.bias"] = ("params", f"conv{layer}", "bias", "vector")
    table[f"{bn}.weight"] = ("params", f"bn{layer}", "scale", "vector")
    table[f"{bn}.bias"] = ("params", f"bn{layer}", "bias", "vector")
    table[f"{bn}.running_mean"] = ("batch_stats", f"bn{layer}", "mean", "vector")
    table[f"{bn}.running_var"] = ("batch_stats", f"bn{layer}", "var", "vector")
    index += 3
  for name, position in zip(("fc6", "fc7"), _CLASSIFIER[arch]):
    table[f"classifier.{position}.weight"] = ("params", name, "kernel", "linear")
    table[f"classifier.{position}.bias"] = ("params", name, "bias", "vector")
  return table


def _to_flax(value, layout):
  if layout == "conv":
    return np.transpose(value, (2, 3, 1, 0))
  if layout == "linear":
    return np.transpose(value)
  return value


def _torch_shape(flax_shape, layout):
  """A flax shape in the checkpoint's layout, for error messages."""
  if layout == "conv":
    return (flax_shape[3], flax_shape[2], flax_shape[0], flax_shape[1])
  if layout == "linear":
    return tuple(reversed(flax_shape))
  return tuple(flax_shape)


def create_network(arch: str, fc_width: int = 4096, sobel: bool = True) -> nn.Module:
  """The flax module of ``arch`` ("alexnet" or "vgg16") with the given fc6/fc7 width."""
  if arch == "alexnet":
    return alexnet.AlexNet(sobel=sobel, fc_width=fc_width)
  if arch == "vgg16":
    return vgg.VGG16(sobel=sobel, fc_width=fc_width)
  raise ValueError(f"arch={arch!r}: expected one of {ARCHS}")


def network_for_variables(arch: str, variables: dict[str, Any]) -> nn.Module:
  """The module that runs converted ``variables``: fc width and Sobel read from them."""
  params = variables["params"]
  return create_network(arch, fc_width=int(np.shape(params["fc7"]["bias"])[0]),
                        sobel=int(np.shape(params["conv1"]["kernel"])[2]) == 2)


def _check_sobel(weights, names):
  """Whether the checkpoint has the Sobel front end; an error unless it is the fixed one."""
  present = sorted(key for key in _SOBEL if key in weights)
  if present and len(present) != len(_SOBEL):
    raise ValueError(f"checkpoint has {[names[key] for key in present]} but not all of "
                     f"{sorted(_SOBEL)}")
  for key, expected in _SOBEL.items() if present else ():
    value = weights[key]
    if value.shape != expected.shape:
      raise ValueError(f"{names[key]} has shape {value.shape}, the fixed Sobel front end has "
                       f"{expected.shape}")
    difference = float(np.max(np.abs(value.astype(np.float64) - expected)))
    if difference > 1e-6:
      raise ValueError(f"{names[key]} differs from the fixed Sobel front end of dti_jax.ops.sobel "
                       f"(max abs difference {difference:.3g}); it cannot be converted")
  return bool(present)


def convert_state_dict(state_dict: dict[str, np.ndarray], arch: str) -> dict[str, Any]:
  """Flax variables of ``arch`` from an original DeepCluster ``state_dict``.

  Args:
    state_dict: torch key -> numpy array in PyTorch's layout, e.g. the ``state_dict``
      entry of ``load_torch_file(checkpoint)``; DataParallel's ``module.`` is stripped.
    arch: "alexnet" or "vgg16".

  Returns:
    {"params", "batch_stats"} with the tree structure of
    ``create_network(arch, fc_width, sobel)`` (fc_width from the checkpoint's fc7, sobel
    when the checkpoint has ``sobel.*`` weights), float32 numpy leaves, plus "top_layer":
    {"kernel": [fc_width, k], "bias": [k]} when the checkpoint has ``top_layer.*``.

  Raises:
    ValueError: unknown arch, a missing or unexpected key, a shape that does not fit
      the network (naming the key and both shapes, in PyTorch's layout), non-float
      weights, or Sobel weights other than the fixed ones.
  """
  if arch not in ARCHS:
    raise ValueError(f"arch={arch!r}: expected one of {ARCHS}")
  weights, names = _strip_keys(state_dict)
  table = _torch_key_table(arch)
  _check_keys(weights, names, table, arch)
  sobel = _check_sobel(weights, names)
  fc7_key = f"classifier.{_CLASSIFIER[arch][1]}.weight"
  conv1, fc7 = weights["features.0.weight"], weights[fc7_key]
  if not sobel and conv1.ndim == 4 and conv1.shape[1] == 2:
    raise ValueError(f"{names['features.0.weight']} has shape {conv1.shape}: 2 input channels "
                     "is the Sobel input, but the checkpoint has no sobel.* weights")
  if fc7.ndim != 2:
    raise ValueError(f"{names[fc7_key]} has shape {fc7.shape}, expected (out, in)")
  network = create_network(arch, fc_width=fc7.shape[0], sobel=sobel)
  shapes = jax.eval_shape(lambda: network.init(jax.random.key(0), jnp.zeros(_INPUT_SHAPE),
                                               train=False))
  variables = {"params": {}, "batch_stats": {}}
  for key, (collection, module, name, layout) in table.items():
    expected = tuple(shapes[collection][module][name].shape)
    value = _to_flax(weights[key], layout) if weights[key].ndim == len(expected) else None
    if value is None or value.shape != expected:
      raise ValueError(f"{names[key]} has shape {weights[key].shape}, the {arch} network "
                       f"expects {_torch_shape(expected, layout)}")
    variables[collection].setdefault(module, {})[name] = value.astype(np.float32)
  if (jax.tree.structure(variables) !=
      jax.tree.structure({c: flax.core.unfreeze(shapes[c]) for c in variables})):
    raise ValueError(f"converted tree does not match the {arch} network's variables")
  if "top_layer.weight" in weights or "top_layer.bias" in weights:
    variables["top_layer"] = _convert_top_layer(weights, fc7.shape[0])
  return variables


def _strip_keys(state_dict):
  """Stripped key -> array, and stripped key -> the checkpoint's own key (for errors)."""
  weights, names = {}, {}
  for key, value in state_dict.items():
    stripped = torch_files.strip_data_parallel(key)
    if stripped in weights:
      raise ValueError(f"{key} duplicates {names[stripped]} once DataParallel's 'module.' is "
                       "removed")
    weights[stripped], names[stripped] = np.asarray(value), key
  return weights, names


def _check_keys(weights, names, table, arch):
  """Every layer present and floating point, nothing unknown (BN step counters aside)."""
  missing = sorted(set(table) - set(weights))
  if missing:
    raise ValueError(f"checkpoint lacks {missing[0]} (and {len(missing) - 1} more) of {arch}")
  extra = sorted(key for key in set(weights) - set(table) - set(_SOBEL)
                 if key not in ("top_layer.weight", "top_layer.bias")
                 and not key.endswith(".num_batches_tracked"))
  if extra:
    raise ValueError(f"checkpoint has {names[extra[0]]}, not part of {arch} ({len(extra)} "
                     "such keys)")
  for key in table:
    if not np.issubdtype(weights[key].dtype, np.floating):
      raise ValueError(f"{names[key]} has dtype {weights[key].dtype}, expected floating point")


def _convert_top_layer(weights, fc_width):
  """{"kernel": [fc_width, k], "bias": [k]} from Linear(fc_width, k)'s weight and bias."""
  weight, bias = weights.get("top_layer.weight"), weights.get("top_layer.bias")
  if bias is None or bias.ndim != 1:
    raise ValueError(f"top_layer.bias has shape {None if bias is None else bias.shape}, "
                     "expected (k,)")
  if weight is None or weight.shape != (bias.shape[0], fc_width):
    raise ValueError(f"top_layer.weight has shape {None if weight is None else weight.shape}, "
                     f"expected {(bias.shape[0], fc_width)}")
  return {"kernel": np.transpose(weight).astype(np.float32), "bias": bias.astype(np.float32)}


def save_variables(path: str, variables: dict[str, Any]) -> None:
  """Writes ``variables`` ({"params", "batch_stats"[, "top_layer"]}) as flax msgpack.

  ``dti_jax.methods.deepcluster.trainer.load_variables(path)`` reads the file back.
  """
  unknown = set(variables) - {"params", "batch_stats", "top_layer"}
  if unknown or not {"params", "batch_stats"} <= set(variables):
    raise ValueError(f"variables have keys {sorted(variables)}, expected params, batch_stats "
                     "and optionally top_layer")
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, variables)))
