"""What the channels of one DeepCluster conv layer respond to: synthesised inputs, top-9 images.

  python scripts/deepcluster_visualize.py --config=configs/deepcluster_mnist.py \\
      --weights=/tmp/deepcluster --layer=3 --channels=0:16 --iterations=1000 --lr=3

``--weights`` is a DeepCluster workdir (its latest checkpoint) or a converted
``.msgpack`` file; ``--config`` (and ``--config.a.b=value`` overrides) names the
architecture and the data. For each channel of ``--channels`` (start:stop, or one index)
of conv layer ``--layer`` (1-based) it writes to ``--output``

  conv{L}_filters.png  one gradient-ascent image per channel
                       (``dti_jax.methods.deepcluster.filters``:
                       the original's noise start, normalised-gradient steps, blur),
                       on the input shape of the config's dataset;
  conv{L}_top9.png     one row per channel: the 9 dataset images with the highest
                       spatial mean of its ReLU map (eval mode, best first);

and the same two images to TensorBoard in ``--output``. Errors are one line on stderr
(``error: ...``) with exit status 2.
"""

import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow serves data loading only

from absl import app
from absl import flags
from ml_collections import config_flags

# Config files import `configs.*`: run from anywhere, the repository root comes first.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "DeepCluster config file[:variant] (architecture and data).",
    lock_config=True)
_WEIGHTS = flags.DEFINE_string("weights", None, "DeepCluster workdir or converted .msgpack.")
_LAYER = flags.DEFINE_integer("layer", None, "Conv layer, 1-based (AlexNet 1..5).")
_CHANNELS = flags.DEFINE_string("channels", "0:16", "Channels start:stop, or one index.")
_ITERATIONS = flags.DEFINE_integer("iterations", 1000, "Gradient-ascent iterations.")
_LR = flags.DEFINE_float("lr", 3.0, "Gradient-ascent step length (L2 norm per step).")
_WEIGHT_DECAY = flags.DEFINE_float("weight_decay", 1e-5, "Penalty on ||x||^2.")
_BLUR_EVERY = flags.DEFINE_integer("blur_every", 5, "Blur when iteration % blur_every == 0.")
_BLUR_SIGMA = flags.DEFINE_float("blur_sigma", 0.3, "Gaussian blur sigma in pixels.")
_OUTPUT = flags.DEFINE_string("output", None, "Output folder (default: visualize/ next to "
                              "the weights).")
_CHANNELS_PER_CALL = flags.DEFINE_integer(
    "channels_per_call", 64, "Channels synthesised together (bounds the memory of the "
    "vmapped gradient).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Top-9 scoring batch (0: "
                                   "config.eval.batch_size).")

TOP = 9


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _one_line(error: Exception) -> str:
  """The useful line of a flag or config error (absl wraps reprs and tracebacks into it)."""
  raw = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  lines = [line.strip() for line in raw.replace("\\n", "\n").splitlines() if line.strip()]
  if not lines:
    return type(error).__name__
  if "Did you mean" in raw:
    return "unknown config key " + ". ".join(line.strip("'\"\\") for line in lines)
  if "Traceback" in raw or "[Errno" in raw:
    return lines[-1]
  return " ".join(line.strip("'\"\\") if line[0] in "'\"" else line for line in lines)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with one-line errors (bad override key, bad value type, bad file)."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
    _fail(_one_line(error))


def parse_channels(text: str) -> range:
  """'a:b' -> range(a, b); 'a' -> range(a, a + 1)."""
  try:
    bounds = [int(part) for part in text.split(":")]
  except ValueError:
    bounds = []
  if len(bounds) == 1:
    bounds.append(bounds[0] + 1)
  if len(bounds) != 2 or bounds[0] < 0 or bounds[1] <= bounds[0]:
    raise ValueError(f"--channels={text!r} is not start:stop with 0 <= start < stop")
  return range(*bounds)


def visualize(config, weights: str, layer: int, channels: range, output: str, *,
              iterations: int, lr: float, weight_decay: float, blur_every: int,
              blur_sigma: float, channels_per_call: int, batch_size: int) -> list[str]:
  """Writes both grids (PNG and TensorBoard) to ``output``; returns the PNG paths."""
  # Imported here, so that the argument errors of main answer before TensorFlow and JAX load.
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  # pylint: disable-next=import-outside-toplevel
  from dti_jax.methods.deepcluster import data as deepcluster_data, network as network_lib
  from dti_jax.run import sources  # pylint: disable=import-outside-toplevel
  from dti_jax.run import reporting
  from dti_jax.methods.deepcluster import filters  # pylint: disable=import-outside-toplevel
  from dti_jax.viz import grids

  source = sources.load_source(config, config.data.split)
  image_shape = sources.image_shape(config, source)
  network = network_lib.create_network(config)
  widths = filters.conv_widths(network, image_shape)
  arch = config.model.arch
  if not 1 <= layer <= len(widths):
    raise ValueError(f"--layer={layer} is out of range: {arch} has conv layers "
                     f"1..{len(widths)}")
  if channels.stop > widths[layer - 1]:
    raise ValueError(f"--channels={channels.start}:{channels.stop} is out of range: "
                     f"conv{layer} of {arch} has channels 0..{widths[layer - 1] - 1}")
  variables = jax.device_put(network_lib.load_variables(weights))

  key = jax.random.key(config.seed)
  synthesized = []
  for begin in range(channels.start, channels.stop, channels_per_call):
    chunk = np.arange(begin, min(begin + channels_per_call, channels.stop))
    start = time.perf_counter()
    synthesized.append(np.asarray(filters.gradient_ascent(
        network, variables, layer, chunk, key=key, image_shape=image_shape,
        iterations=iterations, lr=lr, weight_decay=weight_decay, blur_every=blur_every,
        blur_sigma=blur_sigma)))
    reporting.console(f"conv{layer} channels {chunk[0]}..{chunk[-1]}: {iterations} iterations "
                      f"in {time.perf_counter() - start:.1f} s")
  synthesized = np.concatenate(synthesized)                                 # [n, H, W, C]

  batches = ({**batch, "image": network_lib.normalize(config, jnp.asarray(batch["image"]))}
             for batch in deepcluster_data.ordered_image_batches(config, source,
                                                            batch_size or None))
  ids, _ = filters.top_activating(network, variables, layer, batches, count=TOP)
  ids = ids[channels.start:channels.stop]                                   # [n, 9]
  pictures = _images_by_id(config, source, np.maximum(ids, 0), batch_size)
  pictures = pictures.astype(np.float32) / 255.0                           # [n, 9, H, W, C]
  pictures[ids < 0] = 0.0  # a dataset of fewer than 9 images: black tiles

  height = image_shape[0]
  scale = max(1, 64 // height)
  columns = math.ceil(math.sqrt(len(channels)))
  images = {f"conv{layer}_filters": grids.upscale(grids.make_grid(synthesized, columns), scale),
            f"conv{layer}_top9": grids.upscale(
                grids.make_grid(pictures.reshape(-1, *pictures.shape[2:]), TOP), scale)}
  os.makedirs(output, exist_ok=True)
  paths = []
  for name, image in images.items():
    paths.append(os.path.join(output, f"{name}.png"))
    grids.save_png(paths[-1], image)
  writer = reporting.create_writer(output)
  writer.write_images(iterations, {name: grids.to_uint8(image)[None]
                                   for name, image in images.items()})
  writer.close()
  return paths


def _images_by_id(config, source, ids, batch_size):
  """The eval-mode images of ``ids`` (any shape): indexed in memory, or picked out of one
  more ordered pass over a streamed dataset (only the wanted images are kept)."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from dti_jax.methods.deepcluster import data as deepcluster_data  # pylint: disable=import-outside-toplevel

  if hasattr(source, "images"):
    return source.images[ids]
  wanted, found = set(ids.reshape(-1).tolist()), {}
  for batch in deepcluster_data.ordered_image_batches(config, source, batch_size or None):
    for row in np.flatnonzero(batch["_mask"]):
      if int(batch["id"][row]) in wanted:
        found[int(batch["id"][row])] = batch["image"][row]
  return np.stack([found[i] for i in ids.reshape(-1)]).reshape(*ids.shape, *next(
      iter(found.values())).shape)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = _CONFIG.value
    config.method  # the config file is loaded lazily; fail here, in one line
  except OSError as error:
    _fail(f"--config: {_one_line(error)}")
  except AttributeError:
    _fail("--config is required, e.g. --config=configs/deepcluster_mnist.py")
  if _WEIGHTS.value is None or _LAYER.value is None:
    _fail("--weights and --layer are required")
  if not os.path.exists(_WEIGHTS.value):
    _fail(f"--weights={_WEIGHTS.value} does not exist")
  try:
    channels = parse_channels(_CHANNELS.value)
  except ValueError as error:
    _fail(str(error))
  for name, value, least in (("iterations", _ITERATIONS.value, 0),
                             ("blur_every", _BLUR_EVERY.value, 1),
                             ("channels_per_call", _CHANNELS_PER_CALL.value, 1)):
    if value < least:
      _fail(f"--{name}={value} must be >= {least}")
  weights = _WEIGHTS.value
  output = _OUTPUT.value or os.path.join(
      weights if os.path.isdir(weights) else os.path.dirname(weights), "visualize")
  # Keep TensorFlow (data loading only) off the accelerators JAX uses.
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.set_visible_devices([], "GPU")
  try:
    paths = visualize(
        config, weights, _LAYER.value, channels, output, iterations=_ITERATIONS.value,
        lr=_LR.value, weight_decay=_WEIGHT_DECAY.value, blur_every=_BLUR_EVERY.value,
        blur_sigma=_BLUR_SIGMA.value, channels_per_call=_CHANNELS_PER_CALL.value,
        batch_size=_BATCH_SIZE.value)
  except (ValueError, OSError) as error:
    _fail(_one_line(error))
  for path in paths:
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
