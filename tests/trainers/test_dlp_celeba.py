"""DLP's CelebA preset: the config, TPS pairs in the train step, and the MAFL scores on a
tiny fake DVE tree."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dlp_celeba
from dti_jax.methods.dlp import trainer as dlp, evaluation as dlp_evaluation
from dti_jax.run import partition
from dti_jax.methods.dlp import tps_pairs
from tests.data_pipelines.test_celeba import write_fake_tree



def _tiny():
  """The :cpu preset (64-px faces stored at 80) with minimal nets."""
  config = dlp_celeba.get_config("cpu")
  config.model.enc_channels = (4, 8, 8)
  config.model.prior_channels = (4, 4, 8)
  config.model.num_particles = 4
  config.model.num_prior = 6
  config.model.feature_dim = 2
  config.train.batch_size = 4
  config.eval.batch_size = 2
  return config


def test_presets_carry_the_original_settings():
  config = dlp_celeba.get_config()
  m, l = config.model, config.loss
  assert (m.kind, m.num_particles, m.num_prior, m.feature_dim, m.patch_size, m.anchor_s) == (
      "masked", 30, 50, 10, 8, 0.125)
  assert (tuple(m.enc_channels), tuple(m.prior_channels)) == ((32, 64, 128, 256), (16, 32, 64))
  assert (l.rec_loss, l.vgg_weights, l.beta_kl, l.kl_balance) == ("vgg", "", 40.0, 0.001)
  assert (config.optim.lr, config.train.batch_size, config.train.warmup_epochs) == (2e-4, 64, 0)
  assert config.data.tps_pairs and config.eval.mafl
  assert dlp.input_side(config) == 160
  cpu = dlp_celeba.get_config("cpu")
  assert (cpu.model.kind, cpu.data.tps_pairs, cpu.eval.mafl) == ("masked", True, True)
  assert dlp.input_side(cpu) == 80
  dlp.validate(cpu, (80, 80, 3))          # stored with the border the TPS warp sees
  with pytest.raises(ValueError, match=r"needs RGB images of 80x80; the data has \(64, 64, 3\)"):
    dlp.validate(cpu, (64, 64, 3))
  with pytest.raises(ValueError, match="unknown variant"):
    dlp_celeba.get_config("gpu")


def test_model_inputs_are_cropped_tps_views():
  config = _tiny()
  images = jax.random.uniform(jax.random.key(0), (2, 80, 80, 3))
  x, x_prior = jax.jit(functools.partial(dlp.model_inputs, config=config))(
      images, jax.random.key(1))
  assert x.shape == x_prior.shape == (2, 64, 64, 3)
  assert float(jnp.abs(x - x_prior).mean()) > 0.01
  # The original's roles (train_dlp.py: x_prior = im1, x = im2): from the same key, the
  # prior sees view A and the posterior view B, view A warped again.
  view_a, view_b = jax.jit(tps_pairs.tps_pair)(jax.random.key(1), images)
  np.testing.assert_array_equal(x_prior, tps_pairs.crop_border(view_a, 8))
  np.testing.assert_array_equal(x, tps_pairs.crop_border(view_b, 8))
  config.data.tps_pairs = False
  x, x_prior = dlp.model_inputs(images, jax.random.key(1), config=config)
  np.testing.assert_array_equal(x, images[:, 8:72, 8:72])
  np.testing.assert_array_equal(x_prior, x)


@pytest.mark.usefixtures("fast_compile")
def test_one_train_step_and_the_mafl_scores(tmp_path):
  write_fake_tree(tmp_path)
  config = _tiny()
  config.data.data_dir = str(tmp_path)
  state = jax.jit(functools.partial(dlp.create_state, config))(
      jax.random.key(0), dlp.init_arrays(config, None))
  batch = {"image": jax.random.uniform(jax.random.key(2), (4, 80, 80, 3))}
  step = jax.jit(dlp.step_function(config, "normal", steps_per_epoch=10))
  state, metrics = step(state, batch)
  assert int(state.step) == 1 and math.isfinite(float(metrics["loss"]))

  mesh = partition.create_mesh(1)
  heldout = dlp_evaluation.heldout_source(config, None)   # MAFL test faces, no landmarks
  assert heldout.image_shape == (64, 64, 3) and heldout.landmarks is None
  evaluator = dlp_evaluation.DLPEvaluator(config, mesh, heldout)
  train, test = evaluator.mafl
  assert (train.num_examples, test.num_examples) == (2, 2)
  scores = evaluator.mafl_scores(state)
  assert set(scores) == {"mafl_error_mu", "mafl_error_mu_logvar", "mafl_error_all"}
  assert all(math.isfinite(value) and value >= 0 for value in scores.values())
