"""DTI-Sprites trainer: every config steps, stages, reassignment, devices, optimizer groups."""

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dti_jax.methods.dti_sprites import trainer
from dti_jax.run import partition

# Config file (and variant) -> image shape of its data.
CONFIGS = {
    "tetrominoes": (35, 35, 3), "tetrominoes:procedural": (35, 35, 3),
    "multi_dsprites": (64, 64, 3), "multi_dsprites:procedural": (64, 64, 3),
    "clevr6": (128, 128, 3), "gtsrb8": (28, 28, 3), "sprites_svhn": (32, 32, 3),
    "weizmann_horse": (128, 128, 3), "sprites_instagram": (128, 128, 3),
}


def _config(name):
  module, _, variant = name.partition(":")
  return importlib.import_module(f"configs.{module}").get_config(variant)


def _images(shape, batch, seed=0):
  return jax.random.uniform(jax.random.key(seed), (batch,) + shape)


def _state(config, shape, seed=0):
  init = np.asarray(_images(shape, 2, seed + 1))[None]
  return jax.jit(functools.partial(trainer.create_state, config))(jax.random.key(seed), init)


def _late_stage(config):
  """Every curriculum module on, sprites unfrozen."""
  return trainer.stage_at(config, 10 ** 7, 1)


# Compiling a step of every config takes minutes on CPU: two configs (greedy and
# exhaustive selection) run their step; every config traces its step's shapes.
STEPPED = ("tetrominoes:procedural", "gtsrb8")


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.usefixtures("fast_compile")
def test_every_config_validates_and_takes_a_training_step(name):
  config, shape = _config(name), CONFIGS[name]
  trainer.validate(config, shape)
  if name in STEPPED:
    state = _state(config, shape)
  else:
    init = np.asarray(_images(shape, 2, 1))[None]
    state = jax.eval_shape(functools.partial(trainer.create_state, config), jax.random.key(0),
                           init)
  stages = {trainer.stage_at(config, 0, 1), _late_stage(config)}
  batch = {"image": _images(shape, 2, seed=3)}
  for stage in stages:
    step = trainer.step_function(config, stage, steps_per_epoch=1)
    if name not in STEPPED:
      new, metrics = jax.eval_shape(step, state, batch)
      assert jax.tree.map(lambda x: (x.shape, x.dtype), new) == jax.tree.map(
          lambda x: (x.shape, x.dtype), state)
      assert metrics["loss"].shape == ()
      continue
    new, metrics = jax.jit(step)(state, batch)
    assert np.isfinite(float(metrics["loss"])) and int(new.step) == 1
    moved = lambda a, b: any(bool(np.any(np.asarray(x) != np.asarray(y)))
                             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert moved(new.params["predictor"]["encoder_net"], state.params["predictor"]["encoder_net"])
    # Frozen sprites are skipped by Adam (no count, no moments); unfrozen ones are stepped
    # even when no layer chose them (zero gradient), as PyTorch does.
    assert moved(new.opt_states["masks"], state.opt_states["masks"]) != stage.frozen
    assert float(jnp.sum(new.usage_sum)) == pytest.approx(config.model.n_layers)


def test_configs_carry_the_original_hyper_parameters():
  tetro, dsprites, clevr = _config("tetrominoes"), _config("multi_dsprites"), _config("clevr6")
  assert (tetro.model.n_sprites, tetro.model.n_layers, tetro.model.sprite_size) == (19, 3, 24)
  assert (tetro.train.freeze_sprite_epochs, tetro.model.greedy_iterations) == (1, 1)
  assert (tetro.seed, tetro.train.num_epochs, tuple(tetro.optim.lr_milestones)) == (65176, 210, (100, 200))
  assert (dsprites.model.n_sprites, dsprites.model.add_empty_sprite, dsprites.model.n_layers) == (3, True, 5)
  assert (dsprites.model.pool_grid, dsprites.model.mask_std, dsprites.model.lambda_empty) == (4, 7.0, 1e-4)
  assert dsprites.model.sprite_transformation == "identity_similarity"
  assert tuple(dsprites.train.sprite_curriculum_epochs) == (20,)
  assert (clevr.model.encoder, clevr.model.pool_grid, clevr.model.sprite_size) == ("resnet18", 2, 40)
  assert (clevr.train.freeze_sprite_epochs, clevr.optim.encoder_updates_per_step) == (40, 8)
  gtsrb, horse = _config("gtsrb8"), _config("weizmann_horse")
  assert (gtsrb.model.selection, gtsrb.train.batch_size, tuple(gtsrb.train.sprite_curriculum_epochs)) == (
      "exhaustive", 128, (100, 350))
  assert (horse.model.n_sprites, horse.model.mask_std, horse.train.num_epochs) == (1, 20.0, 15000)


def test_stage_follows_freeze_and_curriculum_epochs():
  config = _config("multi_dsprites")                   # freeze 10, similarity from epoch 20
  assert trainer.stage_at(config, 9 * 100 + 99, 100) == trainer.Stage(1, 1, True)
  assert trainer.stage_at(config, 10 * 100, 100) == trainer.Stage(1, 1, False)
  assert trainer.stage_at(config, 20 * 100, 100) == trainer.Stage(2, 1, False)
  assert not trainer.reassign_allowed(trainer.Stage(1, 1, True))


@pytest.mark.usefixtures("fast_compile")
def test_frozen_sprites_get_no_adam_state_and_heads_of_inactive_modules_stay_at_init():
  config = _config("multi_dsprites")
  shape = CONFIGS["multi_dsprites"]
  state = _state(config, shape)
  stage = trainer.stage_at(config, 0, 1)               # frozen, similarity inactive
  new, _ = jax.jit(trainer.step_function(config, stage, 1))(state, {"image": _images(shape, 2)})
  for group in ("prototypes", "masks", "head_sprite_similarity"):
    jax.tree.map(np.testing.assert_array_equal, new.opt_states[group], state.opt_states[group])
  np.testing.assert_array_equal(new.params["predictor"]["head_sprite_similarity"]["w3"], 0.0)
  # The background is not frozen; the encoder is stepped once per transformer holding it.
  assert np.any(np.asarray(new.params["backgrounds"]) != np.asarray(state.params["backgrounds"]))
  counts = [int(leaf) for leaf in jax.tree.leaves(new.opt_states["encoder_net"])
            if np.ndim(leaf) == 0]
  assert counts and all(c == config.optim.encoder_updates_per_step for c in counts)


@pytest.mark.usefixtures("fast_compile")
def test_reassignment_copies_the_most_used_sprite_with_its_heads_and_moments():
  """The under-used sprite becomes a copy of the most used one: mask, prototype (plus
  noise), every sprite head and the mask and head Adam moments; other rows stay."""
  config = _config("multi_dsprites")                   # 3 sprites + empty, 5 layers
  shape = CONFIGS["multi_dsprites"]
  state = _state(config, shape)
  # Distinct values in every row of the sprites, their heads and all Adam moments (as
  # after training steps, without compiling one), so that a copy of a wrong row shows.
  rng = np.random.default_rng(3)
  randomize = lambda tree: jax.tree.map(
      lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype)
      if x.ndim > 0 and jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
  predictor = {name: (randomize(tree) if name.startswith("head_sprite_") else tree)
               for name, tree in state.params["predictor"].items()}
  state = state.replace(
      params=dict(state.params, sprites=randomize(state.params["sprites"]), predictor=predictor),
      opt_states=randomize(state.opt_states))
  usage = jnp.tile(jnp.array([0.5, 0.01, 0.3, 0.19]), (5, 1))   # sprite 1 under 0.2/3 relative
  state = state.replace(usage_sum=usage * 4, usage_batches=jnp.array(4.0))
  new, moved = jax.jit(functools.partial(trainer.reassign_clusters, config=config))(
      state, jax.random.key(0))
  assert int(moved) == 1
  old_p, new_p = state.params, new.params
  np.testing.assert_array_equal(new_p["sprites"]["masks"][1], old_p["sprites"]["masks"][0])
  np.testing.assert_allclose(new_p["sprites"]["prototypes"][1], old_p["sprites"]["prototypes"][0],
                             atol=1e-3)
  np.testing.assert_array_equal(new_p["sprites"]["prototypes"][2], old_p["sprites"]["prototypes"][2])
  heads_old = old_p["predictor"]["head_sprite_similarity"]["w1"].reshape(5, 4, -1, 128)
  heads_new = new_p["predictor"]["head_sprite_similarity"]["w1"].reshape(5, 4, -1, 128)
  np.testing.assert_array_equal(heads_new[:, 1], heads_old[:, 0])
  np.testing.assert_array_equal(heads_new[:, 3], heads_old[:, 3])      # empty sprite untouched
  mu = lambda s, g: [x for x in jax.tree.leaves(s.opt_states[g]) if np.ndim(x) == 4][0]
  np.testing.assert_array_equal(mu(new, "masks")[1], mu(state, "masks")[0])
  np.testing.assert_array_equal(mu(new, "prototypes")[1], mu(state, "prototypes")[1])
  assert float(new.usage_batches) == 0


@pytest.mark.usefixtures("fast_compile")
def test_train_step_on_eight_devices_matches_one_device():
  config = _config("tetrominoes:procedural")
  shape = CONFIGS["tetrominoes"]
  images = _images(shape, 8, seed=5)
  stage = _late_stage(config)
  results = {}
  for n in (1, 8):
    mesh = partition.create_mesh(n)
    repl, data = partition.replicated(mesh), partition.data_sharding(mesh)
    state = jax.device_put(_state(config, shape), repl)
    step = jax.jit(trainer.step_function(config, stage, 10), in_shardings=(repl, data),
                   out_shardings=(repl, repl))
    for _ in range(2):
      state, metrics = step(state, {"image": jax.device_put(images, data)})
    results[n] = (jax.device_get(state.params), float(metrics["loss"]))
  p1, l1 = results[1]
  for n in (8,):
    pn, ln = results[n]
    np.testing.assert_allclose(l1, ln, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4), p1, pn)


def test_validate_names_the_bad_key():
  config = _config("tetrominoes")
  config.model.selection = "exhaustive"
  with pytest.raises(ValueError, match=r"config\.model\.selection='exhaustive'"):
    trainer.validate(config, (35, 35, 3))
  config = _config("multi_dsprites")
  config.train.sprite_curriculum_epochs = (1, 2)
  with pytest.raises(ValueError, match=r"config\.train\.sprite_curriculum_epochs"):
    trainer.validate(config, (64, 64, 3))


def test_cosegmentation_scores_of_an_all_foreground_mask_have_the_closed_form():
  from configs import sprites_single
  import data_pipelines
  from dti_jax.methods.dti_sprites import evaluation as sprites_evaluation
  config = sprites_single.single_object_config(n_sprites=1, sequence="color", curriculum=(),
                                               mask_std=1e4, encoder="resnet32")
  config.model.sprite_size = 16
  config.eval.batch_size = 4
  images = np.zeros((4, 16, 16, 3), np.uint8)
  masks = np.zeros((4, 16, 16), np.uint8)
  images[:, 5:11, 5:11], masks[:, 5:11, 5:11] = 255, 1      # 36 of 256 pixels
  source = data_pipelines.ArraySource("squares", images, np.full(4, -1, np.int32), None,
                                      masks=masks)
  state = _state(config, (16, 16, 3))
  evaluator = sprites_evaluation.SpritesEvaluator(config, partition.create_mesh(1), source)
  scores = evaluator.scores(state, trainer.stage_at(config, 0, 1))
  # The initial mask is ~1 everywhere: all pixels foreground; Hungarian then matches the
  # predicted foreground with the larger true class (background, 220 pixels).
  assert scores["coseg_acc"] == pytest.approx(220 / 256)
  assert scores["coseg_miou"] == pytest.approx(0.5 * 220 / 256)
  np.testing.assert_allclose(scores["proportions"], [1.0])
