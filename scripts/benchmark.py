"""Train-step throughput of a DTI-Clustering config, one JSON line per curriculum stage.

  python scripts/benchmark.py --config=configs/mnist.py:embedded --steps=20

Times the jitted train step alone (batches already on device, random images of the
config's data shape, no input pipeline): compile time, median and p90 step time,
images/s, peak memory (device stats where the backend has them, else process RSS).
"""

import functools
import json
import resource
import sys
import time

from absl import app
from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].",
                                          lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per stage (after compilation).")
_STAGES = flags.DEFINE_string("stages", "first,last", "Comma-separated stages to time: "
                              "'first', 'last' or numbers of active modules.")
_IMAGE_SHAPE = flags.DEFINE_string("image_shape", "28,28,1", "H,W,C of the synthetic data.")


def _peak_memory_mb(device) -> float:
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv):
  del argv
  import jax
  import jax.numpy as jnp
  import numpy as np

  from dti_jax import transforms
  from dti_jax.trainers import dti_clustering, partition

  config = _CONFIG.value
  shape = tuple(int(v) for v in _IMAGE_SHAPE.value.split(","))
  dti_clustering.validate(config, shape)
  mesh = partition.create_mesh()
  repl, data_sh = partition.replicated(mesh), partition.data_sharding(mesh)
  batch_size = config.train.batch_size
  partition.check_batch_size(batch_size, mesh, "config.train.batch_size")
  rng = np.random.default_rng(0)
  protos = rng.random((config.model.n_prototypes,) + shape, np.float32)
  images = jax.device_put(rng.random((batch_size,) + shape, np.float32), data_sh)
  n_modules = len(transforms.parse_sequence(config.model.transformation_sequence))
  stages = [{"first": 1, "last": n_modules}.get(s, None) or int(s)
            for s in _STAGES.value.split(",")]
  for n_active in stages:
    state = jax.jit(functools.partial(dti_clustering.create_state, config),
                    out_shardings=repl)(jax.random.key(0), jnp.asarray(protos))
    step = jax.jit(functools.partial(dti_clustering.train_step, config=config,
                                     n_active=n_active, steps_per_epoch=10**9),
                   in_shardings=(repl, data_sh), out_shardings=(repl, repl), donate_argnums=0)
    start = time.perf_counter()
    compiled = step.lower(state, {"image": images}).compile()
    compile_s = time.perf_counter() - start
    state, metrics = compiled(state, {"image": images})  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(_STEPS.value):
      start = time.perf_counter()
      state, metrics = compiled(state, {"image": images})
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - start)
    median, p90 = float(np.median(times)), float(np.percentile(times, 90))
    print(json.dumps({
        "config": sys.argv[1:], "model": config.model.name,
        "sequence": config.model.transformation_sequence, "active_modules": n_active,
        "device": jax.devices()[0].device_kind, "devices": mesh.size,
        "batch_size": batch_size, "compile_s": round(compile_s, 2),
        "step_ms_median": round(1e3 * median, 2), "step_ms_p90": round(1e3 * p90, 2),
        "images_per_s": round(batch_size / median, 1),
        "peak_memory_mb": round(_peak_memory_mb(jax.devices()[0]), 1),
        "jax": jax.__version__}), flush=True)


if __name__ == "__main__":
  app.run(main)
