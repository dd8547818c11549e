"""Deep Latent Particles' held-out PSNR and keypoint recall over wall time, without TensorFlow.

  python scripts/time_to_psnr.py --config=configs/dlp_shapes.py --write_npz=/tmp/shapes.npz
  python scripts/time_to_psnr.py --config=configs/dlp_shapes.py --npz=/tmp/shapes.npz \
      --time_limit=300

The training loop needs tf.data and TensorBoard's writer; this runs the same jitted
train step per phase, learning-rate schedule and data order (the permutation of
`data_pipelines.epoch_permutation`) on images held in an .npz file (the training set,
the held-out set and its object centroids, written by ``--write_npz`` where the data
pipeline is installed). After every ``--eval_every_epochs`` epochs it scores the
held-out set as the evaluator does (`keypoints.particle_scores`: clamped PSNR, recall
and precision at eval.radii, deterministic encoding, eval-mode BN with the running
statistics first re-estimated at the current weights on the evaluator's
``eval.bn_recalibration_batches`` training batches, `dlp.recalibrate_batch_stats`;
training goes on with its own EMAs) and prints one JSON line with the epoch, the step,
the seconds since start (compilation included) and the mean training-batch PSNR of the
epoch (stochastic particles, unclamped: the quantity the original's notebook logs). It
stops at the end of the schedule or the first epoch end past ``--time_limit`` seconds.
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
_NPZ = flags.DEFINE_string("npz", "", "images, heldout_images (uint8 [N, S, S, 3]) and "
                           "heldout_centres (float [N, O, 2]), from --write_npz.")
_WRITE_NPZ = flags.DEFINE_string("write_npz", "", "Write the config's training and held-out "
                                 "data to this .npz (needs the data pipeline) and exit.")
_EVAL_EVERY = flags.DEFINE_integer("eval_every_epochs", 1, "Epochs between evaluations.")
_TIME_LIMIT = flags.DEFINE_float("time_limit", 0.0, "Stop at the first epoch end past this "
                                 "many seconds (0: run the whole schedule).")


def _write_npz(config, path: str) -> None:
  import numpy as np  # pylint: disable=import-outside-toplevel

  import data_pipelines  # pylint: disable=import-outside-toplevel
  from data_pipelines import shapes  # pylint: disable=import-outside-toplevel
  d, e = config.data, config.eval
  if not d.name.endswith("_procedural"):
    raise SystemExit(f"config.data.name={d.name!r}: --write_npz writes generated data only")
  train = data_pipelines.load_source(d.name, num_examples=d.num_examples, seed=config.seed)
  heldout = data_pipelines.load_source(d.name, num_examples=e.num_images, seed=e.heldout_seed)
  np.savez_compressed(path, images=train.images, heldout_images=heldout.images,
                      heldout_centres=shapes.object_centroids(heldout.masks))


def _recalibration_batches(images, config, mesh):
  """The evaluator's re-estimation batches of the training array: the first
  ``eval.bn_recalibration_batches`` full batches in order, again from the start if there
  are fewer."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from dti_jax.run import partition  # pylint: disable=import-outside-toplevel
  batch_size = config.train.batch_size
  full_batches = len(images) // batch_size
  count = config.eval.get("bn_recalibration_batches", 0) if full_batches else 0
  for index in range(count):
    start = index % full_batches * batch_size
    chunk = images[start:start + batch_size].astype(np.float32) / 255.0
    yield partition.to_global({"image": chunk}, mesh)["image"]


def _evaluate(state, images, centres, *, config, deterministic_fn) -> dict:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from dti_jax.methods.dlp import keypoints  # pylint: disable=import-outside-toplevel
  outputs = []
  for start in range(0, len(images), config.eval.batch_size):
    chunk = images[start:start + config.eval.batch_size].astype(np.float32) / 255.0
    out = deterministic_fn(state, chunk)
    outputs.append({k: out[k] for k in ("reconstruction", "mu", "obj_on") if k in out})
  out = {k: np.concatenate([np.asarray(jax.device_get(o[k])) for o in outputs])
         for k in outputs[0]}
  return keypoints.particle_scores(images.astype(np.float32) / 255.0, out["reconstruction"],
                                   out["mu"][:, :-1], centres, out.get("obj_on"),
                                   tuple(config.eval.radii))


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

  from dti_jax.methods.dlp import trainer as method
  from dti_jax.run import partition

  data = np.load(_NPZ.value)
  images = data["images"]
  heldout, centres = data["heldout_images"], data["heldout_centres"]
  source = types.SimpleNamespace(images=images, num_examples=len(images))
  method.validate(config, images.shape[1:])
  mesh = partition.create_mesh()
  repl = partition.replicated(mesh)
  batch_size, seed = config.train.batch_size, config.seed
  steps_per_epoch = len(images) // batch_size
  total_steps = config.train.num_epochs * steps_per_epoch
  state = jax.jit(functools.partial(method.create_state, config), out_shardings=repl)(
      jax.random.key(seed), method.init_arrays(config, source))
  deterministic_fn = jax.jit(functools.partial(method.eval_outputs, config=config))
  step_fns = {}
  step, epoch_psnr = 0, []
  while step < total_steps:
    epoch = step // steps_per_epoch
    order = np.random.default_rng([seed, epoch]).permutation(len(images))
    stage = method.stage_at(config, step, steps_per_epoch)
    if stage not in step_fns:
      step_fns[stage] = jax.jit(method.step_function(config, stage, steps_per_epoch),
                                donate_argnums=0)
    rows = order[(step % steps_per_epoch) * batch_size:][:batch_size]
    batch = partition.to_global({"image": images[rows].astype(np.float32) / 255.0}, mesh)
    state, metrics = step_fns[stage](state, batch)
    if stage != "warmup":  # the warm-up loss is the glimpse loss: no image PSNR
      epoch_psnr.append(metrics["psnr"])
    step += 1
    if step % steps_per_epoch == 0 or step == total_steps:
      epoch_done = step // steps_per_epoch
      train_psnr = float(np.mean(jax.device_get(epoch_psnr))) if epoch_psnr else None
      epoch_psnr = []
      over_time = _TIME_LIMIT.value and time.perf_counter() - start > _TIME_LIMIT.value
      if epoch_done % _EVAL_EVERY.value == 0 or step == total_steps or over_time:
        scored = method.recalibrate_batch_stats(
            state, _recalibration_batches(images, config, mesh), config=config)
        scores = _evaluate(scored, heldout, centres, config=config,
                           deterministic_fn=deterministic_fn)
        record = {"epoch": epoch_done, "step": step, "phase": stage,
                  "seconds": round(time.perf_counter() - start, 1),
                  "train_psnr": None if train_psnr is None else round(train_psnr, 2),
                  **{k: round(v, 4) for k, v in scores.items()},
                  "device": jax.devices()[0].device_kind, "jax": jax.__version__}
        print(json.dumps(record), flush=True)
      if over_time:
        break


if __name__ == "__main__":
  app.run(main)
