"""PyTorch weights of unsupervised part discovery -> flat .npz files -> flax variables.

Three kinds of ``torch.save`` file are converted (read without torch by
``dti_jax.interop.torch_files``; scripts/convert_torch_weights.py is the command line):

* "resnet50_caffe": the Caffe-converted ImageNet ResNet-50 the original initialises its
  segmenter from (``resnet50-caffe-22edcc82.pth``): a bare state dict; its ``fc.*`` is
  ignored and it has no ASPP head.
* "unsup_parts": the released part-discovery checkpoints (``model_60000.pth``,
  ``model_100000.pth``): {"model_state_dict": {"module.<key>": ...}, ...}, the full
  ``Res50_Deeplab_2branch`` including the ASPP head; the optimizer state is ignored.
* "vgg19": torchvision's ImageNet ``vgg19`` (``vgg19-dcbb9e9d.pth``); only the 16 convs
  of ``features`` are kept, ``classifier.*`` is ignored.

DataParallel's ``module.`` is removed from every key and ``*.num_batches_tracked`` is
dropped. The .npz keys are "/"-joined flax paths, collection first. Segmenter
(``dti_jax.methods.unsup_parts.deeplab_resnet.DeepLabV2ResNet50``), with L = 1..4, B the block, N = 1..3:

  conv1.weight                        params/conv1/kernel
  bn1.{weight,bias}                   params/bn1/{scale,bias}
  bn1.{running_mean,running_var}      batch_stats/bn1/{mean,var}
  layerL.B.convN.weight               params/layerL_B/convN/kernel
  layerL.B.bnN.*                      params|batch_stats/layerL_B/bnN/... (as bn1)
  layerL.0.downsample.0.weight        params/layerL_0/downsample_conv/kernel
  layerL.0.downsample.1.*             params|batch_stats/layerL_0/downsample_bn/...
  layer5.conv2d_list.i.{weight,bias}  params/layer5/conv{i}/{kernel,bias}, i = 0..3

VGG-19 (``dti_jax.methods.unsup_parts.vgg19_features``): ``features.{j}.{weight,bias}`` ->
``params/conv{block}_{n}/{kernel,bias}`` for the conv indices j = 0, 2, 5, ..., 34.

Conv weights go (O, I, kh, kw) -> (kh, kw, I, O); vectors are copied; everything is
stored as float32. PyTorch's running variance (unbiased) is kept as is.
"""

import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from dti_jax.interop import torch_files
from dti_jax.methods.unsup_parts import deeplab_resnet
from dti_jax.methods.unsup_parts import vgg19_features

KINDS = ("resnet50_caffe", "vgg19", "unsup_parts")
COMMAND = "python -m scripts.convert_torch_weights --kind={kind} --input={input} --output={output}"
_INPUTS = {"resnet50_caffe": "resnet50-caffe-22edcc82.pth", "unsup_parts": "model_60000.pth",
           "vgg19": "vgg19-dcbb9e9d.pth"}
# Keys of each kind that are read and dropped.
_IGNORED_PREFIXES = {"resnet50_caffe": ("fc.",), "unsup_parts": (), "vgg19": ("classifier.",)}
_BN_LEAVES = {"weight": "params/{}/scale", "bias": "params/{}/bias",
              "running_mean": "batch_stats/{}/mean", "running_var": "batch_stats/{}/var"}

Table = dict[str, tuple[str, str]]  # torch key -> (flat flax key, layout "conv"|"vector")


def _add_conv(table: Table, torch_name: str, flax_name: str, bias: bool = False) -> None:
  table[f"{torch_name}.weight"] = (f"params/{flax_name}/kernel", "conv")
  if bias:
    table[f"{torch_name}.bias"] = (f"params/{flax_name}/bias", "vector")


def _add_bn(table: Table, torch_name: str, flax_name: str) -> None:
  for leaf, pattern in _BN_LEAVES.items():
    table[f"{torch_name}.{leaf}"] = (pattern.format(flax_name), "vector")


def segmenter_table() -> Table:
  """torch key -> (flat flax key, layout) of every tensor of ``Res50_Deeplab_2branch``."""
  table = {}
  _add_conv(table, "conv1", "conv1")
  _add_bn(table, "bn1", "bn1")
  for layer, blocks in enumerate(deeplab_resnet.STAGES, start=1):
    for block in range(blocks):
      torch_block, flax_block = f"layer{layer}.{block}", f"layer{layer}_{block}"
      for n in (1, 2, 3):
        _add_conv(table, f"{torch_block}.conv{n}", f"{flax_block}/conv{n}")
        _add_bn(table, f"{torch_block}.bn{n}", f"{flax_block}/bn{n}")
      if block == 0:  # the original's downsample condition holds for every first block
        _add_conv(table, f"{torch_block}.downsample.0", f"{flax_block}/downsample_conv")
        _add_bn(table, f"{torch_block}.downsample.1", f"{flax_block}/downsample_bn")
  for i in range(len(deeplab_resnet.ASPP_DILATIONS)):
    _add_conv(table, f"{deeplab_resnet.HEAD}.conv2d_list.{i}", f"{deeplab_resnet.HEAD}/conv{i}",
              bias=True)
  return table


def vgg19_table() -> Table:
  """torch key -> (flat flax key, layout) of the 16 convs of torchvision's vgg19 features."""
  table = {}
  for index, name in zip(vgg19_features.CONV_INDICES, vgg19_features.CONVS):
    _add_conv(table, f"features.{index}", name, bias=True)
  return table


def _is_head(flat_key: str) -> bool:
  return flat_key.startswith(f"params/{deeplab_resnet.HEAD}/")


def _to_flax(value: np.ndarray, layout: str) -> np.ndarray:
  return np.transpose(value, (2, 3, 1, 0)) if layout == "conv" else value


def _torch_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
  """A flax shape in PyTorch's layout, for error messages."""
  if layout == "conv" and len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return tuple(shape)


def unwrap_checkpoint(obj: Any, source: str) -> dict[str, np.ndarray]:
  """The state dict in a loaded torch file: its "model_state_dict" or "state_dict" entry,
  or the file's dict itself when every value is an array."""
  if isinstance(obj, dict):
    for key in ("model_state_dict", "state_dict"):
      if isinstance(obj.get(key), dict):
        return obj[key]
    if obj and all(isinstance(value, np.ndarray) for value in obj.values()):
      return obj
    raise ValueError(f"{source}: no model_state_dict, state_dict or bare state dict "
                     f"(keys {sorted(map(str, obj))[:5]})")
  raise ValueError(f"{source}: holds a {type(obj).__name__}, not a state dict")


def _expected_shapes(weights: dict[str, np.ndarray], kind: str, names: dict[str, str],
                     source: str) -> dict[str, tuple[int, ...]]:
  """Flat flax key -> shape of the network the checkpoint's first conv (and head) implies."""
  first = "features.0.weight" if kind == "vgg19" else "conv1.weight"
  shape = weights[first].shape
  if len(shape) != 4 or shape[1] != 3 or shape[0] == 0:
    raise ValueError(f"{source}: {names[first]} has shape {shape}, expected (width, 3, kh, kw)")
  if kind == "vgg19":
    divisor = 64 // shape[0] if 64 % shape[0] == 0 else 0
    if not divisor:
      raise ValueError(f"{source}: {names[first]} has {shape[0]} output channels, expected "
                       "64 (or 64 divided by an integer)")
    return {f"params/{name}/{leaf}": leaf_shape
            for name, shapes in vgg19_features.expected_shapes(divisor).items()
            for leaf, leaf_shape in zip(("kernel", "bias"), shapes)}
  head = weights.get(f"{deeplab_resnet.HEAD}.conv2d_list.0.bias")
  num_parts = head.shape[0] if head is not None and head.ndim == 1 else 1
  model = deeplab_resnet.DeepLabV2ResNet50(num_parts=num_parts, width=shape[0])
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                                train=False))
  return {key: tuple(value.shape)
          for key, value in flax.traverse_util.flatten_dict(variables, sep="/").items()}


def convert_state_dict(state_dict: dict[str, np.ndarray], kind: str,
                       source: str) -> dict[str, np.ndarray]:
  """Flat {flax key: float32 array} from a torch state dict of ``kind``.

  Args:
    state_dict: torch key -> numpy array (``unwrap_checkpoint(load_torch_file(...))``).
    kind: one of ``KINDS``.
    source: the file it came from, named in errors.

  Raises:
    ValueError: one line naming ``source`` and the torch key: an unexpected key, a
      missing one (the ASPP head may be absent, but only as a whole and not from an
      "unsup_parts" checkpoint), a non-float tensor, or a shape that does not fit the
      network implied by the first conv (both shapes, in PyTorch's layout).
  """
  if kind not in KINDS:
    raise ValueError(f"kind={kind!r} is not one of {', '.join(KINDS)}")
  table = vgg19_table() if kind == "vgg19" else segmenter_table()
  weights, names = {}, {}
  for key, value in state_dict.items():
    stripped = torch_files.strip_data_parallel(str(key))
    if stripped.endswith(".num_batches_tracked") or stripped.startswith(_IGNORED_PREFIXES[kind]):
      continue
    if stripped not in table:
      raise ValueError(f"{source}: unexpected key {key} for kind={kind}")
    if stripped in weights:
      raise ValueError(f"{source}: {key} duplicates {names[stripped]} once 'module.' is removed")
    weights[stripped], names[stripped] = np.asarray(value), str(key)
  head_keys = [key for key, (flat, _) in table.items() if _is_head(flat)]
  head_absent_allowed = kind == "resnet50_caffe" and not any(k in weights for k in head_keys)
  for key, (flat, _) in table.items():
    if key not in weights and not (head_absent_allowed and _is_head(flat)):
      raise ValueError(f"{source}: missing key {key} for kind={kind}")
  expected = _expected_shapes(weights, kind, names, source)
  flat_weights = {}
  for key, (flat, layout) in table.items():
    if key not in weights:
      continue
    value = weights[key]
    if not np.issubdtype(value.dtype, np.floating):
      raise ValueError(f"{source}: {names[key]} has dtype {value.dtype}, expected float")
    want = _torch_shape(expected[flat], layout)
    if value.shape != want:
      raise ValueError(f"{source}: {names[key]} has shape {value.shape}, the network of its "
                       f"first conv expects {want}")
    flat_weights[flat] = _to_flax(value, layout).astype(np.float32)
  return flat_weights


def save_npz(path: str, flat_weights: dict[str, np.ndarray]) -> None:
  """Writes ``flat_weights`` as an uncompressed .npz (through a temporary file)."""
  partial = f"{path}.partial"
  with open(partial, "wb") as f:
    np.savez(f, **flat_weights)
  os.replace(partial, path)


def _read_npz(path: str | None, config_key: str, kind: str) -> dict[str, np.ndarray]:
  command = COMMAND.format(kind=kind, input=_INPUTS[kind], output=path or "FILE.npz")
  if kind == "resnet50_caffe":
    command += " (--kind=unsup_parts for a released model_*.pth)"
  if not path:
    raise ValueError(f"{config_key} is not set; convert the weights with {command}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{config_key}={path!r}: no such file; convert the weights with "
                            f"{command}")
  try:
    with np.load(path, allow_pickle=False) as data:
      return {key: data[key] for key in data.files}
  except Exception as e:  # Arbitrary bytes fail in arbitrary ways.
    raise ValueError(f"{config_key}={path!r}: not an .npz file ({type(e).__name__}); make it "
                     f"with {command}") from e


def _check_and_fill(flat_file: dict[str, np.ndarray], flat_target: dict[str, Any],
                    optional: set[str], source: str) -> dict[str, Any]:
  """``flat_target`` with every key replaced from ``flat_file``; ``optional`` keys may be
  absent from the file, but only all together (then the target's values stay)."""
  skip_optional = not any(key in flat_file for key in optional)
  filled = {}
  for key, target in flat_target.items():
    if key not in flat_file:
      if skip_optional and key in optional:
        filled[key] = target
        continue
      raise ValueError(f"{source}: missing key {key} (expected shape {tuple(target.shape)})")
    value = flat_file[key]
    if value.shape != tuple(target.shape):
      raise ValueError(f"{source}: {key} has shape {value.shape}, expected "
                       f"{tuple(target.shape)}")
    filled[key] = jnp.asarray(value, target.dtype)
  extra = [key for key in flat_file if key not in flat_target]
  if extra:
    raise ValueError(f"{source}: unexpected key {extra[0]} ({len(extra)} such keys)")
  return filled


def _head_keys(variables: dict[str, Any]) -> set[str]:
  labels = deeplab_resnet.param_labels(variables.get("params", {}))
  return {f"params/{key}" for key, label in
          flax.traverse_util.flatten_dict(labels, sep="/").items() if label == "head"}


def merge_flat(variables: dict[str, Any], flat: dict[str, np.ndarray],
               source: str = "converted weights") -> dict[str, Any]:
  """``variables`` with every entry replaced from ``flat`` (a converted file's arrays).

  Every parameter and BN statistic must be in ``flat`` with the same shape, and ``flat``
  must hold nothing else; the head (``param_labels`` "head": the ASPP ``layer5``) may be
  absent as a whole, and then keeps the values of ``variables``. Works on abstract
  (``jax.eval_shape``) and traced variables too.

  Raises:
    ValueError: one line naming ``source`` and the first missing, mis-shaped or
      unexpected key.
  """
  flat_target = flax.traverse_util.flatten_dict(variables, sep="/")
  filled = _check_and_fill(flat, flat_target, _head_keys(variables), source)
  return flax.traverse_util.unflatten_dict(filled, sep="/")


def read_flat(path: str,
              config_key: str = "config.model.backbone_weights") -> dict[str, np.ndarray]:
  """The arrays of a converted segmenter file, unchecked (``merge_flat`` checks them)."""
  return _read_npz(path, config_key, "resnet50_caffe")


def load_segmenter_variables(path: str, target_variables: dict[str, Any],
                             config_key: str) -> dict[str, Any]:
  """``target_variables`` (e.g. ``model.init(...)``) with the weights of a converted file.

  See ``merge_flat`` for what is checked; the head may be absent from the file.

  Raises:
    FileNotFoundError: no such file (one line naming ``config_key`` and the conversion
      command).
    ValueError: one line naming ``config_key``, the file and the first missing,
      mis-shaped or unexpected key.
  """
  return merge_flat(target_variables, read_flat(path, config_key), f"{config_key}={path!r}")


def check_segmenter_file(path: str, target_variables: dict[str, Any], config_key: str) -> None:
  """Raises as ``load_segmenter_variables`` would; ``target_variables`` may be abstract."""
  load_segmenter_variables(path, target_variables, config_key)


def load_vgg19(path: str, config_key: str = "config.perceptual.weights",
               channel_divisor: int = 1) -> vgg19_features.Params:
  """The 16 VGG-19 convs of a converted file, {"conv1_1": {"kernel", "bias"}, ...}.

  ``channel_divisor`` > 1 expects narrowed convs (``vgg19_features.expected_shapes``).

  Raises:
    FileNotFoundError, ValueError: as ``load_segmenter_variables``; nothing may be absent.
  """
  flat_file = _read_npz(path, config_key, "vgg19")
  flat_target = {f"params/{name}/{leaf}": jax.ShapeDtypeStruct(shape, jnp.float32)
                 for name, shapes in vgg19_features.expected_shapes(channel_divisor).items()
                 for leaf, shape in zip(("kernel", "bias"), shapes)}
  filled = _check_and_fill(flat_file, flat_target, set(), f"{config_key}={path!r}")
  return flax.traverse_util.unflatten_dict(filled, sep="/")["params"]


def check_vgg19_file(path: str, config_key: str = "config.perceptual.weights",
                     channel_divisor: int = 1) -> None:
  """Raises as ``load_vgg19`` would."""
  load_vgg19(path, config_key, channel_divisor)
