"""A few optimisation steps of the DTI-Sprites tetrominoes model reduce the reconstruction error."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

import data_pipelines
from dti_jax.models import dti_sprites
from dti_jax.ops import compositing


def test_tetrominoes_reconstruction_error_decreases():
  source = data_pipelines.load_source("tetrominoes_procedural", num_examples=64, seed=0)
  images = jnp.asarray(source.images[:16], jnp.float32) / 255.0
  layers, sprites_k = 3, 19
  predictor = dti_sprites.LayerPredictor("resnet32", 1, layers, 3)
  variables = predictor.init(jax.random.key(0), images[:1], train=False)
  params = {"sprites": dti_sprites.init_sprites(sprites_k, 24, 24, 3, mask_std=5.0),
            "predictor": variables["params"]}
  occlusion = compositing.fixed_occlusion(layers + 1)
  background = jnp.zeros((35, 35, 3))

  def loss_fn(params, batch_stats, key):
    stacks = dti_sprites.sprite_stack(params["sprites"], add_empty=False, train=True)
    out, updates = predictor.apply({"params": params["predictor"], "batch_stats": batch_stats},
                                   images, train=True, mutable=["batch_stats"])
    uniform = jax.random.uniform(key, (sprites_k, 35, 35, 1))
    recon, _ = dti_sprites.multi_object_reconstruction(
        images, stacks, out["color"], out["position"], background, occlusion, iterations=1,
        candidates=jnp.ones(sprites_k, bool), penalties=jnp.zeros(sprites_k),
        uniform=uniform, eta=0.4)
    return jnp.mean((images - recon) ** 2), updates["batch_stats"]

  optimizer = optax.adam(1e-3)
  opt_state = optimizer.init(params)

  @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
  def step(params, batch_stats, opt_state, key):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  batch_stats = variables["batch_stats"]
  losses = []
  for i in range(30):
    params, batch_stats, opt_state, loss = step(params, batch_stats, opt_state,
                                                jax.random.key(i))
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3]), losses
