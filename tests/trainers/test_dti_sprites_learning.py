"""A few optimisation steps of the Tetrominoes model reduce the reconstruction error."""

import functools

import jax
import numpy as np

import data_pipelines
from configs import tetrominoes
from dti_jax.methods.dti_sprites import trainer


def test_tetrominoes_reconstruction_error_decreases():
  config = tetrominoes.get_config("procedural")
  config.optim.lr = 1e-3
  source = data_pipelines.load_source("tetrominoes_procedural", num_examples=64, seed=0)
  images = source.images[:16].astype(np.float32) / 255.0
  state = jax.jit(functools.partial(trainer.create_state, config))(
      jax.random.key(0), images[None, :1])
  step = jax.jit(trainer.step_function(config, trainer.Stage(1, 1, False), 100),
                 donate_argnums=0)
  losses = []
  for _ in range(30):
    state, metrics = step(state, {"image": images})
    losses.append(float(metrics["loss"]))
  assert np.isfinite(losses).all()
  assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses
