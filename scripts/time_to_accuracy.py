"""Wall time until a DTI-Clustering config reaches a clustering accuracy, without TensorFlow.

  python scripts/time_to_accuracy.py --write_npz=/tmp/mnist5k.npz \
      --config=configs/mnist.py:embedded            # where TensorFlow is installed
  python scripts/time_to_accuracy.py --npz=/tmp/mnist5k.npz \
      --config=configs/mnist.py:embedded --threshold=0.90

The training loop needs tf.data and TensorBoard's writer; this runs the same jitted
train step, curriculum, learning-rate schedule, data order (the permutation of
`data_pipelines.epoch_permutation`) and cluster reassignment on images held in an
.npz file, and scores every image every --eval_every steps. It prints one JSON line:
the step and the seconds since start (compilation included) at which `acc` first
reached --threshold, with the device.
"""

import functools
import json
import os
import sys
import time
import types

from absl import app
from absl import flags
from ml_collections import config_flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].")
_NPZ = flags.DEFINE_string("npz", "", "images (uint8 [N, H, W, C]) and labels (int [N]).")
_WRITE_NPZ = flags.DEFINE_string("write_npz", "", "Write the config's data to this .npz "
                                 "(needs the data pipeline's packages) and exit.")
_THRESHOLD = flags.DEFINE_float("threshold", 0.90, "Accuracy to reach.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every", 250, "Steps between evaluations.")


def _write_npz(config, path: str) -> None:
  import data_pipelines  # pylint: disable=import-outside-toplevel
  source = data_pipelines.load_source(config.data.name, data_dir=config.data.data_dir or None,
                                      split=config.data.split)
  if source.num_classes is None:
    raise SystemExit(f"config.data.name={config.data.name!r} has no labels to score")
  import numpy as np  # pylint: disable=import-outside-toplevel
  np.savez_compressed(path, images=source.images, labels=source.labels,
                      num_classes=source.num_classes)


def main(argv):
  del argv
  config = _CONFIG.value
  if _WRITE_NPZ.value:
    _write_npz(config, _WRITE_NPZ.value)
    return
  if not _NPZ.value:
    raise app.UsageError("pass --npz (made with --write_npz) or --write_npz")
  start = time.perf_counter()
  import jax
  import numpy as np

  from dti_jax.metrics import clustering as clustering_metrics
  from dti_jax.methods.dti_clustering import trainer as method
  from dti_jax.run import partition

  data = np.load(_NPZ.value)
  images, labels = data["images"], data["labels"]
  num_classes = int(data["num_classes"])
  source = types.SimpleNamespace(images=images, num_examples=len(images))
  method.validate(config, images.shape[1:])
  mesh = partition.create_mesh()
  repl = partition.replicated(mesh)
  batch_size, seed = config.train.batch_size, config.seed
  steps_per_epoch = len(images) // batch_size
  total_steps = config.train.num_epochs * steps_per_epoch
  init_key, train_key = jax.random.split(jax.random.key(seed))
  state = jax.jit(functools.partial(method.create_state, config), out_shardings=repl)(
      init_key, method.init_arrays(config, source))
  step_fns, assign_fns = {}, {}
  reassign = jax.jit(functools.partial(method.reassign_clusters, config=config),
                     donate_argnums=0)
  eval_images = jax.device_put(images.astype(np.float32) / 255.0)
  step = 0
  while step < total_steps:
    epoch = step // steps_per_epoch
    order = np.random.default_rng([seed, epoch]).permutation(len(images))
    stage = method.stage_at(config, step, steps_per_epoch)
    if stage not in step_fns:
      step_fns[stage] = jax.jit(method.step_function(config, stage, steps_per_epoch),
                                donate_argnums=0)
      assign_fns[stage] = jax.jit(functools.partial(method.assign, config=config,
                                                    n_active=stage))
    rows = order[(step % steps_per_epoch) * batch_size:][:batch_size]
    batch = partition.to_global({"image": images[rows].astype(np.float32) / 255.0}, mesh)
    state, _ = step_fns[stage](state, batch)
    step += 1
    if (config.model.reassign_clusters and step % config.train.check_cluster_every_steps == 0
        and method.reassign_allowed(stage)):
      state, _ = reassign(state, jax.random.fold_in(train_key, step))
    if step % _EVAL_EVERY.value == 0 or step == total_steps:
      clusters = np.asarray(assign_fns[stage](state, eval_images)["cluster"])
      scores = clustering_metrics.clustering_scores(labels, clusters, num_classes,
                                                    config.model.n_prototypes)
      seconds = time.perf_counter() - start
      print(f"step {step}: acc {scores['acc']:.4f} at {seconds:.1f} s", flush=True)
      if scores["acc"] >= _THRESHOLD.value:
        print(json.dumps({"threshold": _THRESHOLD.value, "step": step, "seconds": round(
            seconds, 1), "acc": round(scores["acc"], 4), "device": jax.devices()[0].device_kind,
                          "jax": jax.__version__}), flush=True)
        return
  print(json.dumps({"threshold": _THRESHOLD.value, "reached": False, "step": step}))


if __name__ == "__main__":
  app.run(main)
