import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import mnist
from dti_jax.methods.dti_clustering import trainer as dti
from dti_jax.run import partition


def _config(sequence="identity_affine", name="dtikmeans", k=4):
  config = mnist.get_config("embedded")
  config.model.transformation_sequence = sequence
  config.model.name = name
  config.model.n_prototypes = k
  config.train.curriculum_epochs = (1,) * (len(sequence.split("_")) - 1)
  return config


def _state(config, k=4, size=12, seed=0):
  protos = np.random.default_rng(seed).random((k, size, size, 1)).astype(np.float32)
  return dti.create_state(config, jax.random.key(seed), jnp.asarray(protos))


def _images(b=8, size=12, seed=1):
  return jnp.asarray(np.random.default_rng(seed).random((b, size, size, 1)), jnp.float32)


def test_curriculum_and_learning_rate_follow_epoch_milestones():
  config = mnist.get_config("")  # curriculum (5, 15, 20), lr decay after epoch 35
  spe = 547
  stages = [dti.stage_at(config, s, spe) for s in (0, 2734, 2735, 8204, 8205, 10939, 10940)]
  assert stages == [1, 1, 2, 2, 3, 3, 4]
  lr = [float(dti.learning_rate(config, jnp.int32(s), spe)) for s in (19144, 19145)]
  np.testing.assert_allclose(lr, [1e-3, 1e-4])
  config.train.curriculum_epochs = ()
  assert dti.stage_at(config, 0, spe) == 4


def test_assignment_is_argmin_of_pixel_distances_in_identity_stage():
  config = _config()
  state = _state(config)
  images = _images()
  batch = {"image": images, "label": jnp.zeros(8, jnp.int32), "_mask": jnp.ones(8, bool)}
  out = dti.eval_step(state, batch, config=config, n_active=1)
  protos = np.asarray(state.params["clusters"]["prototypes"])
  distances = ((np.asarray(images)[:, None] - protos[None]) ** 2).mean(axis=(2, 3, 4))
  np.testing.assert_array_equal(out["cluster"], distances.argmin(axis=1))
  np.testing.assert_allclose(out["distance"], distances.min(axis=1), rtol=1e-6)


def test_identity_stage_step_is_one_adam_step_on_prototypes_only():
  config = _config()
  state = _state(config)
  images = _images()
  before = jax.tree.map(np.asarray, state.params)
  new_state, metrics = dti.train_step(state, {"image": images}, config=config, n_active=1,
                                      steps_per_epoch=10)
  # Closed form: first bias-corrected Adam step is -lr * g / (|g| + eps).
  x, c = np.asarray(images), before["clusters"]["prototypes"]
  d = ((x[:, None] - c[None]) ** 2).mean(axis=(2, 3, 4))
  assign = d.argmin(axis=1)
  grad = np.zeros_like(c)
  for i, k in enumerate(assign):
    grad[k] += -2 * (x[i] - c[k]) / (x[i].size * len(x))
  expected = c - 1e-3 * grad / (np.abs(grad) + 1e-8)
  np.testing.assert_allclose(new_state.params["clusters"]["prototypes"], expected, atol=1e-6)
  np.testing.assert_allclose(metrics["loss"], d.min(axis=1).mean(), rtol=1e-6)
  # Encoder and heads are inactive: untouched, and their Adam count has not started.
  for name in ("encoder_net", "head_affine"):
    jax.tree.map(np.testing.assert_array_equal, new_state.params["predictor"][name],
                 before["predictor"][name])
    counts = [s.count for s in jax.tree.leaves(
        new_state.opt_states[name], is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))
              if isinstance(s, optax.ScaleByAdamState)]
    assert [int(n) for n in counts] == [0]
  np.testing.assert_allclose(new_state.proportion_sum,
                             np.bincount(assign, minlength=4) / len(assign))


@pytest.mark.usefixtures("fast_compile")
def test_heads_start_at_identity_and_affine_stage_trains_encoder():
  """At init every head is the identity (reconstructions are the prototypes); one step
  of the affine stage moves the encoder and the affine head."""
  config = _config()
  state = _state(config)
  images = _images()
  at_init = jax.jit(functools.partial(dti.reconstructions, config=config, n_active=2))(
      state, images)
  protos = state.params["clusters"]["prototypes"]
  np.testing.assert_allclose(at_init, jnp.broadcast_to(protos, at_init.shape), atol=1e-6)
  new_state, _ = jax.jit(dti.step_function(config, 2, 10))(state, {"image": images})
  changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         new_state.params["predictor"], state.params["predictor"])
  assert any(jax.tree.leaves(changed["encoder_net"]))
  assert any(jax.tree.leaves(changed["head_affine"]))


def _adam(opt_state):
  return [s for s in jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByAdamState))
          if isinstance(s, optax.ScaleByAdamState)][0]


@pytest.mark.parametrize("name", ["dtikmeans", "dtigmm"])
def test_reassignment_copies_prototype_heads_and_adam_moments(name):
  config = _config("identity_affine_tps", name=name)
  state = _state(config)
  # Give every row distinct Adam moments and head values, then mark cluster 2 as empty.
  rng = np.random.default_rng(3)
  randomize = lambda tree: jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), tree)
  opt_states = {g: jax.tree.map(lambda x: randomize(x) if x.ndim > 0 else x, s)
                for g, s in state.opt_states.items()}
  predictor = {n: (randomize(t) if n.startswith("head_") else t)
               for n, t in state.params["predictor"].items()}
  state = state.replace(opt_states=opt_states,
                        params={"clusters": state.params["clusters"], "predictor": predictor},
                        proportion_sum=jnp.array([1.5, 0.9, 0.01, 0.59]),
                        proportion_batches=jnp.array(3.0))
  new, moved = dti.reassign_clusters(state, jax.random.key(5), config=config)
  assert int(moved) == 1
  new, state = jax.device_get(new), jax.device_get(state)
  old_p, new_p = state.params["clusters"]["prototypes"], new.params["clusters"]["prototypes"]
  # Cluster 2 <- cluster 0 (largest share) + N(0, 1e-4^2); 0 itself perturbed; others untouched.
  assert 0 < np.abs(new_p[2] - old_p[0]).max() < 1e-3
  assert 0 < np.abs(new_p[0] - old_p[0]).max() < 1e-3
  np.testing.assert_array_equal(new_p[[1, 3]], old_p[[1, 3]])
  for head in ("head_affine", "head_tps"):
    for leaf_new, leaf_old in zip(jax.tree.leaves(new.params["predictor"][head]),
                                  jax.tree.leaves(state.params["predictor"][head])):
      np.testing.assert_array_equal(leaf_new[2], leaf_old[0])
      np.testing.assert_array_equal(leaf_new[[0, 1, 3]], leaf_old[[0, 1, 3]])
    for moment in ("mu", "nu"):
      for leaf_new, leaf_old in zip(jax.tree.leaves(getattr(_adam(new.opt_states[head]), moment)),
                                    jax.tree.leaves(getattr(_adam(state.opt_states[head]), moment))):
        np.testing.assert_array_equal(leaf_new[2], leaf_old[0])
  cluster_mu_new = _adam(new.opt_states["clusters"]).mu
  cluster_mu_old = _adam(state.opt_states["clusters"]).mu
  for key in cluster_mu_new:
    np.testing.assert_array_equal(cluster_mu_new[key][2], cluster_mu_old[key][0])
  if name == "dtigmm":
    for key in ("sigmas", "mixing_logits"):
      np.testing.assert_array_equal(new.params["clusters"][key][2], state.params["clusters"][key][0])
  assert float(new.proportion_batches) == 0 and not np.any(np.asarray(new.proportion_sum))


def test_no_reassignment_leaves_state_unchanged():
  config = _config()
  state = _state(config).replace(proportion_sum=jnp.full((4,), 0.25), proportion_batches=jnp.array(1.0))
  new, moved = dti.reassign_clusters(state, jax.random.key(0), config=config)
  assert int(moved) == 0
  np.testing.assert_array_equal(new.params["clusters"]["prototypes"],
                                state.params["clusters"]["prototypes"])


def _assert_adam_close(a, b, *, steps, lr):
  """Equal up to float32 noise, except where Adam amplified it.

  Reduction order differs across devices; Adam normalises a near-zero gradient, so a
  rounding difference can flip an update of up to lr per step, on a rare parameter.
  """
  diff = np.abs(np.asarray(a) - np.asarray(b))
  assert diff.max() <= steps * lr * 1.01
  assert np.mean(diff > 1e-4 + 1e-4 * np.abs(np.asarray(a))) < 1e-2


# Each device count compiles the step again: the two models share 2, 4 and 8 devices.
@pytest.mark.parametrize("name,device_counts", [("dtikmeans", (2, 8)), ("dtigmm", (4,))])
@pytest.mark.usefixtures("fast_compile")
def test_train_step_on_several_devices_matches_one_device(name, device_counts):
  """Three steps of the full curriculum with the batch sharded over 2, 4 or 8 devices give
  the single-device parameters and loss (up to Adam-amplified rounding)."""
  config = _config("identity_affine_morpho_tps", name=name)
  images = _images(b=16, seed=4)
  initial = _state(config)
  results = {}
  for n in (1,) + device_counts:
    mesh = partition.create_mesh(n)
    repl, data = partition.replicated(mesh), partition.data_sharding(mesh)
    state = jax.device_put(initial, repl)
    step = jax.jit(functools.partial(dti.train_step, config=config, n_active=4, steps_per_epoch=10),
                   in_shardings=(repl, data), out_shardings=(repl, repl))
    for _ in range(3):
      state, metrics = step(state, {"image": jax.device_put(images, data)})
    results[n] = (jax.device_get(state.params), float(metrics["loss"]))
  p1, l1 = results[1]
  for n in device_counts:
    pn, ln = results[n]
    np.testing.assert_allclose(l1, ln, rtol=1e-5)
    jax.tree.map(functools.partial(_assert_adam_close, steps=3, lr=config.optim.lr), p1, pn)


def test_validate_names_the_bad_key():
  config = _config()
  config.model.n_prototypes = 0
  with pytest.raises(ValueError, match=r"config\.model\.n_prototypes=0"):
    dti.validate(config, (28, 28, 1))
  config = _config()
  config.train.curriculum_epochs = (1, 2)
  with pytest.raises(ValueError, match=r"config\.train\.curriculum_epochs"):
    dti.validate(config, (28, 28, 1))
