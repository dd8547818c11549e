"""Train-step throughput of DTI-Clustering, DTI-Sprites, DLP and part-discovery configs, one JSON line per run.

  python scripts/benchmark.py --config=configs/mnist.py --steps=20
  python scripts/benchmark.py --config=configs/tetrominoes.py:procedural --devices=4
  python scripts/benchmark.py --all --steps=5

Each config is timed on random images of its data's shape (nothing is read or
downloaded) at its first curriculum stage and at its last (the full transformation
sequence; for DLP the warm-up and the normal phase), or at the stages of ``--stages``. A run reports the compile time, the
median and p90 time of the jitted train step with the batch already on the devices,
images/s from that median, images/s of the same step fed by the input pipeline
(``data_pipelines.train_batches``: gather, uint8 -> float, prefetch, host -> device),
peak memory (device statistics where the backend keeps them, else the process's
peak RSS) and the versions.

``--devices=N`` shards the batch over N devices; on a CPU-only machine N host devices
are emulated (``--xla_force_host_platform_device_count``), which shows that the code
shards but not a speed-up: they share the same cores.
"""

import functools
import importlib
import json
import os
import platform
import resource
import statistics
import sys
import time
import types

from absl import app
from absl import flags
from ml_collections import config_flags

# Config files import `configs.*`: run from anywhere, the repository root comes first.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from scripts import machine  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].",
                                          lock_config=True)
_ALL = flags.DEFINE_bool("all", False, "Benchmark every config of ALL_CONFIGS instead.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per run (after one warm-up step).")
_STAGES = flags.DEFINE_string(
    "stages", "first,last", "Comma-separated stages: 'first', 'last' (the stage of the "
    "last training step: the full transformation sequence) or epoch numbers.")
_DEVICES = flags.DEFINE_integer("devices", 0, "Devices to shard over (0: all).")
_PIPELINE = flags.DEFINE_bool("pipeline", True, "Also time the step fed by the input "
                              "pipeline (needs tensorflow).")
_PROFILE_DIR = flags.DEFINE_string(
    "profile_dir", "", "Write a jax.profiler trace of the timed steps here (open it with "
    "TensorBoard's profile plugin).")
_IMAGE_SHAPE = flags.DEFINE_string("image_shape", "", "H,W,C of the random images "
                                   "(default: the shape of the config's dataset).")

METHODS = ("dti_clustering", "dti_sprites", "dlp", "unsup_parts")

# Every experiment config (file, variant) that `--all` runs.
ALL_CONFIGS = (
    ("mnist", ""), ("mnist", "embedded"), ("mnist", "embedded_gmm"), ("mnist_1k", ""),
    ("mnist_color", ""), ("mnist_test", ""), ("fashion_mnist", ""), ("usps", ""),
    ("svhn", ""), ("affnist_test", ""), ("frgc", ""), ("digits", ""), ("instagram", ""),
    ("megadepth", ""), ("tetrominoes", ""), ("tetrominoes", "procedural"),
    ("multi_dsprites", ""), ("multi_dsprites", "procedural"), ("clevr6", ""),
    ("gtsrb8", ""), ("sprites_svhn", ""), ("weizmann_horse", ""), ("sprites_instagram", ""),
)

# (H, W, C) of each data source as the data layer returns it.
_SHAPES = {
    "mnist": (28, 28, 1), "mnist_embedded": (28, 28, 1), "mnist_1k": (28, 28, 1),
    "mnist_color": (28, 28, 3), "fashion_mnist": (28, 28, 1), "usps": (16, 16, 1),
    "svhn": (32, 32, 3), "affnist_test": (40, 40, 1), "frgc": (32, 32, 3),
    "digits_embedded": (8, 8, 1), "gtsrb8": (28, 28, 3), "weizmann_horse": (128, 128, 3),
    "tetrominoes": (35, 35, 3), "tetrominoes_procedural": (35, 35, 3),
    "multi_dsprites": (64, 64, 3), "multi_dsprites_procedural": (64, 64, 3),
    "clevr6": (128, 128, 3), "dlp_shapes_procedural": (64, 64, 3),
    "parts_toy_procedural": (64, 64, 3), "cub_parts": (256, 256, 3),
    "deepfashion_parts": (256, 256, 3),
}


def image_shape(config, override: str = "") -> tuple[int, int, int]:
  """(H, W, C) of the config's dataset (image_folder, gtsrb8, horse: data.image_size;
  image_folder's channels: data.channels, 0 = as the files is taken as RGB)."""
  if override:
    return tuple(int(v) for v in override.split(","))
  name, size = config.data.name, config.data.get("image_size") or 0
  if name == "image_folder":
    return (size, size, 1 if config.data.get("channels") == 1 else 3)
  if name in ("gtsrb8", "weizmann_horse") and size > 0:
    return (size, size, 3)
  if name not in _SHAPES:
    raise ValueError(f"config.data.name={name!r} has no known image shape; "
                     "pass --image_shape=H,W,C")
  return _SHAPES[name]


def _peak_memory_mb(device) -> float:
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(run, steps: int) -> list[float]:
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return times


def benchmark(config, name: str, *, steps: int, stages: list[str], num_devices: int | None,
              pipeline: bool, shape_override: str = "", profile_dir: str = "") -> list[dict]:
  """Times the config's train step at each stage; returns one record per stage."""
  import jax
  import numpy as np

  from dti_jax.run import partition

  # Each method's trainer module is named after it; the training loop (and with it the
  # tf.data pipeline) is not needed to time the step.
  if config.method not in METHODS:
    raise ValueError(f"config.method={config.method!r}: benchmark.py times {METHODS}")
  method = importlib.import_module(f"dti_jax.methods.{config.method}.trainer")
  shape = image_shape(config, shape_override)
  if config.method == "unsup_parts":
    config = _random_part_weights(config)
  method.validate(config, shape)
  mesh = partition.create_mesh(num_devices)
  batch_size = config.train.batch_size
  partition.check_batch_size(batch_size, mesh, "config.train.batch_size")
  rng = np.random.default_rng(0)
  num_images = batch_size * (steps + 2)
  images = rng.integers(0, 256, (num_images,) + shape, dtype=np.uint8)
  masks = None
  if "mask" in getattr(method, "BATCH_KEYS", ()):   # a centred box of foreground
    masks = np.zeros((num_images,) + shape[:2], np.uint8)
    masks[:, shape[0] // 4:3 * shape[0] // 4, shape[1] // 4:3 * shape[1] // 4] = 1
  source = types.SimpleNamespace(name="random", images=images, num_examples=num_images,
                                 labels=np.full(num_images, -1, np.int32), num_classes=None,
                                 masks=masks, semantic=None, image_shape=shape)
  steps_per_epoch = 1000
  total_steps = (config.train.get("num_steps", 0)
                 or config.train.num_epochs * steps_per_epoch)
  repl = partition.replicated(mesh)
  host_batch = {"image": images[:batch_size].astype(np.float32) / 255.0}
  if masks is not None:
    host_batch["mask"] = masks[:batch_size].astype(np.int32)
  device_batch = partition.to_global(host_batch, mesh)
  records = []
  for stage_name in stages:
    at_step = {"first": 0, "last": total_steps - 1}.get(stage_name)
    at_step = int(stage_name) * steps_per_epoch if at_step is None else at_step
    stage = method.stage_at(config, at_step, steps_per_epoch)
    state = jax.jit(functools.partial(method.create_state, config), out_shardings=repl)(
        jax.random.key(0), method.init_arrays(config, source))
    state = state.replace(step=jax.numpy.asarray(at_step, state.step.dtype))
    step_fn = jax.jit(method.step_function(config, stage, steps_per_epoch),
                      in_shardings=(repl, partition.data_sharding(mesh)),
                      out_shardings=(repl, repl), donate_argnums=0)
    start = time.perf_counter()
    compiled = step_fn.lower(state, device_batch).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": compiled(state, device_batch)[0]}  # warm-up

    def run_on_device():
      holder["state"], metrics = compiled(holder["state"], device_batch)
      jax.block_until_ready(metrics)

    if profile_dir:
      with jax.profiler.trace(os.path.join(profile_dir, f"{name}_{stage_name}".replace(
          "/", "_").replace(":", "_").replace(" ", "_"))):
        times = _timed(run_on_device, steps)
    else:
      times = _timed(run_on_device, steps)
    median = statistics.median(times)
    record = {
        "config": name, "method": config.method,
        "stage": f"{stage_name}: {method.describe_stage(config, stage)}",
        "device": jax.devices()[0].device_kind, "devices": mesh.size,
        "host_cpu": machine.cpu_model(),
        "batch_size": batch_size, "image_shape": list(shape),
        "compile_s": round(compile_s, 2), "step_ms_median": round(1e3 * median, 2),
        "step_ms_p90": round(1e3 * float(np.percentile(times, 90)), 2),
        "images_per_s": round(batch_size / median, 1)}
    if pipeline:
      record["images_per_s_with_pipeline"] = _with_pipeline(
          compiled, holder, source, batch_size, steps, mesh)
    record.update({"peak_memory_mb": round(_peak_memory_mb(jax.devices()[0]), 1),
                   "jax": jax.__version__, "python": platform.python_version()})
    records.append(record)
  return records


def _with_pipeline(compiled, holder, source, batch_size: int, steps: int, mesh) -> float:
  """images/s of the step fed batch by batch from the tf.data pipeline."""
  import jax

  from dti_jax.run import partition
  try:
    import data_pipelines
  except ImportError as error:
    raise SystemExit(f"--pipeline needs the data pipeline's packages ({error}); install "
                     "requirements.txt or pass --nopipeline") from error
  batches = data_pipelines.train_batches(source, global_batch_size=batch_size, seed=0,
                                         epoch=0)
  start = time.perf_counter()
  for _, host_batch in zip(range(steps), batches):
    batch = partition.to_global({name: host_batch[name] for name in ("image", "mask")
                                 if name in host_batch}, mesh)
    holder["state"], metrics = compiled(holder["state"], batch)
  jax.block_until_ready(metrics)
  return round(batch_size * steps / (time.perf_counter() - start), 1)


def _random_part_weights(config):
  """A part-discovery config whose missing weight files are replaced by random ones of the
  same shapes (a temporary VGG-19 file; the segmenter from its initialisation): the step
  costs the same, and nothing pretrained is needed to time it."""
  import tempfile

  import jax

  from dti_jax.methods.unsup_parts import weights as unsup_parts_weights
  from dti_jax.methods.unsup_parts import vgg19_features
  config = config.copy_and_resolve_references()
  with config.unlocked():
    if not config.model.backbone_weights:
      config.model.allow_random_init = True
    if config.perceptual.kind == "vgg19" and not config.perceptual.weights:
      params = vgg19_features.init_params(jax.random.key(0))
      path = os.path.join(tempfile.mkdtemp(prefix="random_vgg19_"), "vgg19.npz")
      unsup_parts_weights.save_npz(path, {f"params/{name}/{leaf}": value
                                          for name, layer in params.items()
                                          for leaf, value in layer.items()})
      config.perceptual.weights = path
  return config


def _load_config(name: str, variant: str):
  module = importlib.import_module(f"configs.{name}")
  return module.get_config(variant)


def _config_name() -> str:
  """The --config argument and its --config.* overrides, e.g. 'configs/mnist.py:embedded'."""
  parts = [a.split("=", 1)[-1] for a in sys.argv[1:] if a.startswith("--config=")]
  parts += [a[len("--config."):] for a in sys.argv[1:] if a.startswith("--config.")]
  return " ".join(parts)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if _ALL.value == (_CONFIG.value is not None):
    raise app.UsageError("pass exactly one of --config and --all")
  if _DEVICES.value > 1:  # Emulated host devices when there is no accelerator.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={_DEVICES.value}")
  runs = ([(f"{n}:{v}" if v else n, _load_config(n, v)) for n, v in ALL_CONFIGS]
          if _ALL.value else [(_config_name(), _CONFIG.value)])
  for name, config in runs:
    for record in benchmark(config, name, steps=_STEPS.value,
                            stages=_STAGES.value.split(","),
                            num_devices=_DEVICES.value or None, pipeline=_PIPELINE.value,
                            shape_override=_IMAGE_SHAPE.value,
                            profile_dir=_PROFILE_DIR.value):
      print(json.dumps(record), flush=True)


if __name__ == "__main__":
  app.run(main)
