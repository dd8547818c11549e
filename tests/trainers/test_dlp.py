"""DLP in the shared loop: phases from the step, a short run that writes its scores and
pictures, and one-line config errors."""

import json

import jax.numpy as jnp
import pytest

from configs import dlp_shapes
import data_pipelines
from dti_jax.trainers import dlp, loop


def _tiny():
  config = dlp_shapes.get_config("cpu")
  config.model.enc_channels = (8, 16, 32)
  config.model.prior_channels = (4, 8, 16)
  config.model.num_particles = 4
  config.model.num_prior = 6
  config.train.batch_size = 8
  return config


def _batch(count=8):
  source = data_pipelines.load_source("dlp_shapes_procedural", num_examples=count, seed=0)
  return {"image": jnp.asarray(source.images, jnp.float32) / 255.0}


def test_phases_follow_the_step():
  config = _tiny()
  config.train.warmup_steps = 0
  config.train.warmup_epochs = 2
  phases = [dlp.stage_at(config, step, steps_per_epoch=10) for step in (0, 19, 20, 99, 100)]
  assert phases == ["warmup", "warmup", "noisy", "noisy", "normal"]
  config.train.warmup_steps = 3
  assert [dlp.stage_at(config, s, 10) for s in (2, 3, 14, 15)] == [
      "warmup", "noisy", "noisy", "normal"]
  config.model.kind = "masked"
  assert dlp.stage_at(config, 0, 10) == "normal"


def test_short_run_scores_held_out_scenes(tmp_path):
  config = _tiny()
  config.data.num_examples = 32
  config.train.num_epochs = 1
  config.train.warmup_epochs = 0        # one phase: one compiled step
  config.eval.num_images = 16
  config.eval.batch_size = 8
  scores = loop.train_and_evaluate(config, str(tmp_path), num_devices=1)
  assert {"psnr", "elbo", "recall_4px", "random_recall_4px", "recall_active_4px",
          "precision_active_4px", "active_particles"} <= set(scores)
  assert 0 < scores["random_recall_4px"] < 0.5
  with open(tmp_path / "final_scores.json") as f:
    assert json.load(f)["psnr"] == pytest.approx(scores["psnr"])
  for name in ("particles", "masks", "glimpses"):
    assert (tmp_path / f"{name}.png").exists()


def test_bad_config_is_one_line(tmp_path):
  config = _tiny()
  config.model.num_prior = 100
  with pytest.raises(ValueError, match=r"config.model.num_prior=100 must be in \[1, 64\]"):
    loop.train_and_evaluate(config, str(tmp_path / "run"), num_devices=1)
  assert not (tmp_path / "run").exists()
