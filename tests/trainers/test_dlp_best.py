"""DLP keeps the state of its lowest validation loss beside the latest checkpoints, as
the original's _best model, and eval_only scores either."""

import glob
import json
import os

import numpy as np
import pytest

from configs import dlp_shapes
from dti_jax import methods
from dti_jax.run import checkpointing


def _tiny_config():
  config = dlp_shapes.get_config("cpu")
  config.data.num_examples = 16
  config.model.enc_channels = (8, 16, 32)
  config.model.prior_channels = (4, 8, 16)
  config.model.num_particles = 4
  config.model.num_prior = 6
  config.train.batch_size = 8
  config.train.num_epochs = 3                    # 6 steps
  config.eval.every_steps = 2
  config.eval.num_images = 8
  config.eval.batch_size = 8
  config.eval.bn_recalibration_batches = 0
  config.log.every_steps = 2
  return config


def _eval_elbos(workdir) -> dict[int, float]:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  values = {}
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == "eval/elbo":
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def test_best_checkpoint_is_the_lowest_validation_loss_and_eval_only_scores_it(
    tmp_path, fast_compile):
  del fast_compile
  workdir = str(tmp_path / "run")
  methods.train_and_evaluate(_tiny_config(), workdir, num_devices=1)
  elbos = _eval_elbos(workdir)
  assert sorted(elbos) == [2, 4]             # periodic evaluations (the last is final)
  best_step = min(elbos, key=elbos.get)
  assert os.listdir(os.path.join(workdir, checkpointing.BEST_DIRECTORY)) == [str(best_step)]
  manager = checkpointing.create_manager(workdir, subdirectory=checkpointing.BEST_DIRECTORY)
  meta = checkpointing.restore_meta(manager)
  manager.close()
  assert (meta["step"], meta["best_metric"]) == (best_step, "elbo")
  assert meta["best_value"] == pytest.approx(elbos[best_step], rel=1e-6)
  # eval_only scores the kept checkpoint on request (the latest by default, tested with
  # the other methods).
  config = _tiny_config()
  config.eval_only = True
  config.eval.checkpoint = "best"
  best = methods.train_and_evaluate(config, workdir, num_devices=1)
  assert best["elbo"] == pytest.approx(elbos[best_step], rel=1e-5)
  with open(os.path.join(workdir, "final_scores.json")) as f:
    assert json.load(f)["elbo"] == best["elbo"]
  config.eval.checkpoint = "oldest"
  with pytest.raises(ValueError, match="config.eval.checkpoint='oldest' must be"):
    methods.train_and_evaluate(config, workdir, num_devices=1)
  assert np.isfinite(best["elbo"])
