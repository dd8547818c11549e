"""The released PyTorch Deep Latent Particles state dicts -> this repo's DLP variables.

The original saves ``torch.save(model.state_dict())`` of its ``KeyPointVAE``
(``models.py``); the released files are CelebA ``dlp_celeba_gauss_pointnetpp_feat.pth``
(masked model), Traffic ``dlp_traffic_gauss_pointnetpp.pth`` and CLEVRER
``dlp_clevrer_gauss_pointnetpp.pth`` (object models). They are read without torch by
``dti_jax.interop.torch_files``; scripts/convert_dlp_weights.py is the command line.

The key table is built from the original's module structure for a given config
(``modules/modules.py``: ``ConvBlock`` stores ``main.conv_{in}_to_{out}`` and
``main.bathcnorm_{out}``; ``KeyPointCNNOriginal`` names its blocks ``in_block_1``,
``in_block_2``, ``conv_in_{size}_0``, ``conv_in_{width}_1`` and its head ``keymap``):

  prior.enc.*                      params|batch_stats/prior/cnn/...
  enc.*                            .../posterior/cnn/...
  to_normal_stats.{0,2,4}          params/posterior/position_head/Dense_{0,1,2}
  aux_enc.{0,2,4}                  params/posterior/presence_head/...  (object model)
  object_enc.{0,2,4}               params/appearance/background_head/...
  object_enc_sep.cnn.*             .../appearance/glimpse_cnn/...      (object model)
  object_enc_sep.fc.{0,2,4}        params/appearance/glimpse_head/...
  pointnet.conv{n}.mlp.{0,1,3,4}   .../pointnet/Dense_{2n-2}, BatchNorm_{2n-2}, Dense_{2n-1},
                                   BatchNorm_{2n-1}
  pointnet.fc.0                    params/pointnet/Dense_8
  pointnet.cnn.depth_up_{i}        .../pointnet/ConvBlock_{i}
  dec.main.{depth_up,conv_to_*}    .../background_decoder/ConvBlock_{i}
  dec.final_conv                   params/background_decoder/final
  object_dec.fc.{0,2}              params/glimpse_decoder/Dense_{0,1}   (object model)
  object_dec.main.*                .../glimpse_decoder/ConvBlock_{i}, final

``ObjectDecoderCNN`` registers its ``main`` a second time as ``decode``, so its state
dict repeats every ``object_dec.main.*`` tensor as ``object_dec.decode.*``: those keys
are checked to equal their ``main`` twin and not copied. Conv weights go OIHW -> HWIO
(both are cross-correlations: no kernel flip; there is no transposed conv), linear
weights (out, in) -> (in, out), BN running statistics become ``batch_stats`` (PyTorch's
unbiased running variance kept as is) and ``num_batches_tracked`` is dropped. Every
flatten here is channel-major (``blocks.flatten_channel_major``, the (C, 8, 8) views of
the PointNet and glimpse-decoder linears), as PyTorch's NCHW, so no rows are permuted.
The original has no fixed buffers (its grids are ``linspace``s made in ``forward`` and
its patch origins a plain attribute), so nothing is checked against constants.
DataParallel's ``module.`` is removed from every key.

A converted file is a flax msgpack of {"params", "batch_stats", "config"}: the config
is the JSON of the full config it was converted for, so that the demo and the editor
rebuild the model from the file alone, and a run given the file
(``config.model.weights``) checks that its own model settings agree.
"""

import functools
import importlib.util
import json
import os
import sys
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dti_jax.interop import torch_files

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
# Released checkpoint -> (config file, variant) with its hyper-parameters
# (interactive_demo_dlp.py and the README's table).
RELEASED = {"celeba": ("configs/dlp_celeba.py", ""),
            "traffic": ("configs/dlp_traffic.py", "released"),
            "clevrer": ("configs/dlp_clevrer.py", "")}
RELEASED_FILES = {"celeba": "dlp_celeba_gauss_pointnetpp_feat.pth",
                  "traffic": "dlp_traffic_gauss_pointnetpp.pth",
                  "clevrer": "dlp_clevrer_gauss_pointnetpp.pth"}
# Model settings that decide the network (and so the checkpoint) a file was made for.
ARCHITECTURE_KEYS = ("kind", "image_size", "enc_channels", "prior_channels",
                     "num_particles", "patch_size", "feature_dim", "anchor_s")
COMMAND = "python scripts/convert_dlp_weights.py --config={config} --input=FILE.pth " \
          "--output={output}"
_BN_LEAVES = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}

Table = dict[str, tuple[str, str]]  # torch key -> (flat flax key, layout)


def load_config(spec: str) -> ml_collections.ConfigDict:
  """The config of ``spec``: a released checkpoint's name (celeba, traffic, clevrer) or a
  config file, optionally with a variant (``configs/dlp_traffic.py:released``)."""
  if spec in RELEASED:
    path, variant = RELEASED[spec]
    path = os.path.join(REPO, path)
  else:
    path, _, variant = spec.partition(":")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--config={spec!r}: no such config file (or one of "
                            f"{', '.join(RELEASED)})")
  if REPO not in sys.path:
    sys.path.insert(0, REPO)  # config files import the configs package
  module_spec = importlib.util.spec_from_file_location("_dlp_weights_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(variant) if variant else module.get_config()
  if config.get("method") != "dlp":
    raise ValueError(f"--config={spec!r} is a {config.get('method')!r} config, not a DLP one")
  return config


def _conv_block(table: Table, torch_name: str, flax_name: str, c_in: int, c_out: int) -> None:
  """The original's ConvBlock (conv without bias, BN) -> our ConvBlock."""
  table[f"{torch_name}.main.conv_{c_in}_to_{c_out}.weight"] = (
      f"params/{flax_name}/Conv_0/kernel", "conv")
  for leaf, (collection, name) in _BN_LEAVES.items():
    table[f"{torch_name}.main.bathcnorm_{c_out}.{leaf}"] = (
        f"{collection}/{flax_name}/BatchNorm_0/{name}", "vector")


def _conv(table: Table, torch_name: str, flax_name: str) -> None:
  table[f"{torch_name}.weight"] = (f"params/{flax_name}/kernel", "conv")
  table[f"{torch_name}.bias"] = (f"params/{flax_name}/bias", "vector")


def _linear(table: Table, torch_name: str, flax_name: str) -> None:
  table[f"{torch_name}.weight"] = (f"params/{flax_name}/kernel", "linear")
  table[f"{torch_name}.bias"] = (f"params/{flax_name}/bias", "vector")


def _mlp(table: Table, torch_name: str, flax_name: str) -> None:
  """nn.Sequential(Linear, ReLU, Linear, ReLU, Linear) -> MLPHead."""
  for index, dense in ((0, 0), (2, 1), (4, 2)):
    _linear(table, f"{torch_name}.{index}", f"{flax_name}/Dense_{dense}")


def _unique(names: list[str], what: str) -> None:
  """The original's nn.Sequential silently replaces a block of a repeated name."""
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise ValueError(f"{what}: the original names two blocks {repeated[0]}, so its network "
                     "differs from this one; no checkpoint of it can be converted")


def _keypoint_cnn(table: Table, torch_name: str, flax_name: str, channels, side: int,
                  outputs: int) -> None:
  """KeyPointCNNOriginal(cdim=3, channels, image_size=side, n_kp=outputs)."""
  blocks = [("in_block_1", 3, channels[0]), ("in_block_2", channels[0], channels[0])]
  width, size = channels[0], side
  for later in channels[1:]:
    blocks += [(f"conv_in_{size}_0", width, later), (f"conv_in_{later}_1", later, later)]
    width, size = later, size // 2
  _unique([name for name, _, _ in blocks], f"{torch_name} with channels {tuple(channels)}")
  for index, (name, c_in, c_out) in enumerate(blocks):
    _conv_block(table, f"{torch_name}.main.{name}", f"{flax_name}/ConvBlock_{index}", c_in,
                c_out)
  _conv(table, f"{torch_name}.keymap", f"{flax_name}/keymap")


def _decoder_names(count: int, start: int) -> list[str]:
  """Names of the blocks after ``depth_up`` in CNNDecoder / ObjectDecoderCNN."""
  names, size = [], start
  for _ in range(count):
    names.append(f"conv_to_{size * 2}")
    size *= 2
  return names


def torch_key_table(config: ml_collections.ConfigDict) -> Table:
  """torch key -> (flat flax key, layout "conv" | "linear" | "vector") of every tensor of
  the original's KeyPointVAE built with ``config``'s settings (``object_dec.decode.*``
  twins excluded)."""
  m = config.model
  count, side, enc = m.num_particles, m.image_size, tuple(m.enc_channels)
  feature_side = side // 2 ** (len(enc) - 1)
  is_object = m.kind == "object"
  table: Table = {}
  _keypoint_cnn(table, "prior.enc", "prior/cnn", tuple(m.prior_channels), m.patch_size, 1)
  _keypoint_cnn(table, "enc", "posterior/cnn", enc, side, count)
  _mlp(table, "to_normal_stats", "posterior/position_head")
  if is_object:
    _mlp(table, "aux_enc", "posterior/presence_head")
    glimpse = int(np.round(m.anchor_s * (side - 1)))
    _keypoint_cnn(table, "object_enc_sep.cnn", "appearance/glimpse_cnn", (16, 16, 32),
                  glimpse, 32)
  _mlp(table, "object_enc", "appearance/background_head")
  _mlp(table, "object_enc_sep.fc", "appearance/glimpse_head")
  for n in range(4):
    torch_layer, i = f"pointnet.conv{n + 1}.mlp", 2 * n
    _linear(table, f"{torch_layer}.0", f"pointnet/Dense_{i}")
    _linear(table, f"{torch_layer}.3", f"pointnet/Dense_{i + 1}")
    for index, bn in ((1, i), (4, i + 1)):
      for leaf, (collection, name) in _BN_LEAVES.items():
        table[f"{torch_layer}.{index}.{leaf}"] = (
            f"{collection}/pointnet/BatchNorm_{bn}/{name}", "vector")
  _linear(table, "pointnet.fc.0", "pointnet/Dense_8")
  for i in range(int(np.log2(feature_side)) - 3):
    _conv_block(table, f"pointnet.cnn.depth_up_{i}", f"pointnet/ConvBlock_{i}", count, count)
  widths = [enc[-1]] + list(reversed(enc[1:-1]))
  widths.append((count + 1) * (enc[0] // (count + 1) + 1))
  names = ["depth_up"] + _decoder_names(len(widths) - 1, 4)
  c_in = (2 if is_object else 3) * count
  for index, (name, width) in enumerate(zip(names, widths)):
    _conv_block(table, f"dec.main.{name}", f"background_decoder/ConvBlock_{index}", c_in, width)
    c_in = width
  table[f"dec.final_conv.main.conv_{c_in}_to_3.weight"] = (
      "params/background_decoder/final/kernel", "conv")
  table[f"dec.final_conv.main.conv_{c_in}_to_3.bias"] = (
      "params/background_decoder/final/bias", "vector")
  if is_object:
    _linear(table, "object_dec.fc.0", "glimpse_decoder/Dense_0")
    _linear(table, "object_dec.fc.2", "glimpse_decoder/Dense_1")
    upsamplings = int(np.log2(glimpse)) - 3
    widths = [64] * upsamplings + [32]
    names = ["depth_up"] + _decoder_names(len(widths) - 1, 8)
    c_in = 32
    for index, (name, width) in enumerate(zip(names, widths)):
      _conv_block(table, f"object_dec.main.{name}", f"glimpse_decoder/ConvBlock_{index}", c_in,
                  width)
      c_in = width
    _conv(table, "object_dec.main.final_conv.main.conv_32_to_4", "glimpse_decoder/final")
  return table


def expected_shapes(config: ml_collections.ConfigDict) -> dict[str, tuple[int, ...]]:
  """Flat flax key -> shape of every parameter and BN statistic of ``config``'s model
  (abstract: nothing is computed; cached per model config)."""
  return dict(_shapes(json.dumps(config.model.to_dict(), sort_keys=True)))


@functools.lru_cache(maxsize=8)
def _shapes(model_json: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
  from dti_jax.methods.dlp import trainer as dlp  # pylint: disable=import-outside-toplevel
  config = ml_collections.ConfigDict({"model": json.loads(model_json)})
  side = config.model.image_size
  images = jnp.zeros((1, side, side, 3))
  variables = jax.eval_shape(lambda: dlp.create_model(config).init(
      {"params": jax.random.key(0), "sample": jax.random.key(1)}, images, images,
      train=False, phase="normal"))
  return tuple((key, tuple(value.shape))
               for key, value in flax.traverse_util.flatten_dict(variables, sep="/").items())


def _to_flax(value: np.ndarray, layout: str) -> np.ndarray:
  if layout == "conv":
    return np.transpose(value, (2, 3, 1, 0))
  if layout == "linear":
    return np.transpose(value)
  return value


def _torch_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
  """A flax shape in PyTorch's layout, for error messages."""
  if layout == "conv":
    return (shape[3], shape[2], shape[0], shape[1])
  if layout == "linear":
    return tuple(reversed(shape))
  return tuple(shape)


def _twin(key: str) -> str | None:
  """``object_dec.decode.X`` -> ``object_dec.main.X`` (the same module registered twice)."""
  prefix = "object_dec.decode."
  return "object_dec.main." + key[len(prefix):] if key.startswith(prefix) else None


def convert_state_dict(state_dict: dict[str, Any], config: ml_collections.ConfigDict,
                       source: str) -> dict[str, Any]:
  """{"params", "batch_stats"} (nested, float32 numpy) from an original DLP state dict.

  Raises:
    ValueError: one line naming ``source`` and the first torch key that is unknown, of
      the wrong shape (with the expected one, PyTorch's layout) or not float, then the
      first missing one; or an ``object_dec.decode.*`` key that differs from its
      ``object_dec.main.*`` twin.
  """
  if not isinstance(state_dict, dict):
    raise ValueError(  # noqa: TRY004  (bad file content: the converter's one-line errors)
        f"{source}: holds a {type(state_dict).__name__}, not a state dict")
  table = torch_key_table(config)
  shapes = expected_shapes(config)
  described = (f"config {config.model.kind} model, K={config.model.num_particles}, "
               f"D={config.model.feature_dim}")
  weights, names, twins = {}, {}, {}
  for raw_key, value in state_dict.items():
    key = torch_files.strip_data_parallel(str(raw_key))
    if key.endswith(".num_batches_tracked"):
      continue
    value = np.asarray(value)
    twin = _twin(key)
    if twin is not None and twin in table:
      twins[key] = (twin, value, str(raw_key))
      continue
    if key not in table:
      raise ValueError(f"{source}: unexpected key {raw_key} (shape {value.shape}) for the "
                       f"{described}")
    flat, layout = table[key]
    want = _torch_shape(shapes[flat], layout)
    if value.shape != want:
      raise ValueError(f"{source}: {raw_key} has shape {value.shape}, expected {want} for "
                       f"the {described}")
    if not np.issubdtype(value.dtype, np.floating):
      raise ValueError(f"{source}: {raw_key} has dtype {value.dtype}, expected float")
    weights[key], names[key] = value, str(raw_key)
  for key, (flat, layout) in table.items():
    if key not in weights:
      raise ValueError(f"{source}: missing key {key} (expected shape "
                       f"{_torch_shape(shapes[flat], layout)}) for the {described}")
  for twin, (key, value, raw_key) in twins.items():
    if value.shape != weights[key].shape or not np.array_equal(value, weights[key]):
      raise ValueError(f"{source}: {raw_key} differs from {names[key]}, the same module "
                       "registered twice in the original")
  flat_variables = {flat: _to_flax(weights[key], layout).astype(np.float32)
                    for key, (flat, layout) in table.items()}
  unmapped = sorted(set(shapes) - set(flat_variables))
  if unmapped:  # the table and the model disagree: a bug here, not in the file
    raise ValueError(f"{source}: no torch key maps to {unmapped[0]}")
  return flax.traverse_util.unflatten_dict(flat_variables, sep="/")


def save(path: str, variables: dict[str, Any], config: ml_collections.ConfigDict) -> None:
  """Writes a converted file (through a temporary file)."""
  payload = {"params": variables["params"], "batch_stats": variables["batch_stats"],
             "config": config.to_json()}
  partial = f"{path}.partial"
  with open(partial, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(payload))
  os.replace(partial, path)


def read(path: str, flag: str = "--weights") -> tuple[dict[str, Any], ml_collections.ConfigDict]:
  """(variables, config) of a converted file, variables unchecked (`load_variables`)."""
  if not path:
    raise ValueError(f"{flag} is not set; convert a checkpoint with "
                     f"{COMMAND.format(config='celeba', output='FILE.msgpack')}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{flag}={path!r}: no such file")
  try:
    with open(path, "rb") as f:
      payload = flax.serialization.msgpack_restore(f.read())
    config = ml_collections.ConfigDict(json.loads(payload["config"]))
    variables = {"params": payload["params"], "batch_stats": payload["batch_stats"]}
  except Exception as e:  # Arbitrary bytes fail in arbitrary ways.
    raise ValueError(f"{flag}={path!r}: not a converted DLP file ({type(e).__name__}); make "
                     f"it with {COMMAND.format(config='celeba', output=path)}") from e
  return variables, config


def _check_architecture(file_config, config, where: str) -> None:
  for key in ARCHITECTURE_KEYS:
    ours, theirs = config.model.get(key), file_config.model.get(key)
    if isinstance(ours, (list, tuple)) or isinstance(theirs, (list, tuple)):
      ours, theirs = list(ours or ()), list(theirs or ())
    if ours != theirs:
      raise ValueError(f"{where} was converted for model.{key}={theirs!r}, but "
                       f"config.model.{key}={ours!r}")


def check_variables(variables: dict[str, Any], config: ml_collections.ConfigDict,
                    where: str) -> dict[str, Any]:
  """``variables`` as float32, after checking every key and shape against ``config``'s
  model both ways (one-line ValueError naming the first mismatching flax key)."""
  shapes = expected_shapes(config)
  flat = flax.traverse_util.flatten_dict(variables, sep="/")
  for key, shape in shapes.items():
    if key not in flat:
      raise ValueError(f"{where}: missing {key} (expected shape {shape})")
    if tuple(np.shape(flat[key])) != shape:
      raise ValueError(f"{where}: {key} has shape {tuple(np.shape(flat[key]))}, expected "
                       f"{shape}")
  extra = [key for key in flat if key not in shapes]
  if extra:
    raise ValueError(f"{where}: unexpected {extra[0]} ({len(extra)} such keys)")
  return flax.traverse_util.unflatten_dict(
      {key: np.asarray(value, np.float32) for key, value in flat.items()}, sep="/")


def load_variables(path: str, config: ml_collections.ConfigDict | None = None,
                   flag: str = "config.model.weights") -> tuple[dict[str, Any],
                                                                 ml_collections.ConfigDict]:
  """(variables, config) of a converted file; ``config`` (default: the file's own) must
  agree with the file's on ``ARCHITECTURE_KEYS`` and its model's shapes.

  Raises:
    FileNotFoundError: no such file. ValueError: one line naming ``flag`` and the file,
      and the first differing config key or flax key.
  """
  variables, file_config = read(path, flag)
  where = f"{flag}={path!r}"
  if config is None:
    config = file_config
  else:
    _check_architecture(file_config, config, where)
  return check_variables(variables, config, where), config
