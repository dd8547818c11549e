"""DLP model and loss: preset shapes, parameter groups, the stop-gradients of the original,
the warm-up, deterministic encoding, decode(encode(x)) and a few-step overfit.

Keys use the "rbg" PRNG: a flax init draws one key per parameter and threefry makes the
CPU compile several times slower; the values drawn do not matter here.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from data_pipelines import sources
from dti_jax.methods.dlp import model as dlp
from dti_jax.methods.dlp import blocks as dlp_blocks
from dti_jax.methods.dlp import losses as dlp_losses
from dti_jax.methods.dlp import particles

SHAPES = dict(image_size=64, enc_channels=(32, 64, 128), prior_channels=(16, 32, 64),
              num_particles=10, num_prior=15, patch_size=8, feature_dim=6, anchor_s=0.25,
              model="object", exclusive_patches=True)
CELEBA = dict(image_size=128, enc_channels=(32, 64, 128, 256), prior_channels=(16, 32, 64),
              num_particles=30, num_prior=50, patch_size=8, feature_dim=10, anchor_s=0.125,
              model="masked")
# The shapes preset with narrow CNNs and fewer particles, for gradients and training.
SMALL = dict(SHAPES, enc_channels=(8, 16, 16), prior_channels=(4, 8), num_particles=6,
             num_prior=10, feature_dim=4)
SMALL_MASKED = dict(CELEBA, image_size=32, enc_channels=(8, 16), prior_channels=(4, 8),
                    num_particles=4, num_prior=6, feature_dim=3)
LOSS = dict(beta_rec=1.0, beta_kl=0.05, kl_balance=0.001, sigma=0.1)
# The loss terms, and the sum of the background decoder's output for the PointNet inputs.
TERMS = ("rec", "ckl", "kl_features", "background")
TRAIN_WEIGHTS = jnp.array(
    [LOSS["beta_rec"], LOSS["beta_kl"], LOSS["beta_kl"] * LOSS["kl_balance"], 0.0])


# XLA with most optimisations off: the gradients compile in about half the time.
pytestmark = pytest.mark.usefixtures("fast_compile_module")


def _key(seed):
  return jax.random.key(seed, impl="rbg")


def _init(model, x):
  init = jax.jit(functools.partial(model.init_with_output, train=True, phase="normal"))
  return init({"params": _key(0), "sample": _key(1)}, x, x)


def _random_variables(model, x):
  """N(0, 0.1^2) weights, unit BN scales and statistics, with shapes from eval_shape:
  enough for zero / non-zero gradient checks without compiling an init."""
  shapes = jax.eval_shape(lambda: model.init({"params": _key(0), "sample": _key(1)}, x, x,
                                             train=True, phase="normal"))
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    if jax.tree_util.keystr(path).endswith(("['scale']", "['var']")):
      return jnp.ones(leaf.shape, leaf.dtype)
    if jax.tree_util.keystr(path).endswith("['mean']"):
      return jnp.zeros(leaf.shape, leaf.dtype)
    return jnp.asarray(0.1 * rng.standard_normal(leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def _leaves_zero(tree):
  return all(bool(jnp.all(leaf == 0)) for leaf in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def shapes_batch():
  source = sources.load_source("dlp_shapes_procedural", num_examples=4, seed=0)
  return jnp.asarray(source.images, jnp.float32) / 255.0


def _weighted_grad(model):
  """Jitted gradient of w . TERMS in training mode, with the loss metrics and
  the new BN statistics. w is traced: a unit vector gives one term's gradient and
  `TRAIN_WEIGHTS` the training gradient, all from one compilation per phase."""

  @functools.partial(jax.jit, static_argnames="phase")
  def weighted_grad(params, batch_stats, x, key, weights, phase):
    def objective(params):
      outputs, state = model.apply({"params": params, "batch_stats": batch_stats}, x, x,
                                   train=True, phase=phase, rngs={"sample": key},
                                   mutable=["batch_stats"])
      _, metrics = dlp_losses.loss(outputs, x, phase=phase, **LOSS)
      terms = jnp.stack([metrics[name] for name in TERMS[:3]]
                        + [jnp.sum(outputs["background"])])
      return jnp.dot(weights, terms), (metrics, state["batch_stats"])
    grads, (metrics, batch_stats) = jax.grad(objective, has_aux=True)(params)
    return grads, metrics, batch_stats

  return weighted_grad


def _term_grads(weighted_grad, variables, x, key, phase, names=TERMS):
  """{term: gradient of that term alone} for the given variables."""
  return {name: weighted_grad(variables["params"], variables["batch_stats"], x, key,
                              jnp.eye(len(TERMS))[TERMS.index(name)], phase=phase)[0]
          for name in names}


@pytest.fixture(scope="module")
def small(fast_compile_module, shapes_batch):
  """Model, variables, init outputs and `_weighted_grad` for the small config; every
  small-config test uses the same batch, so each phase compiles once."""
  del fast_compile_module  # on before the init compiles
  model = dlp.DLP(**SMALL)
  outputs, variables = _init(model, shapes_batch)
  return model, variables, outputs, _weighted_grad(model)


def test_building_blocks_match_their_reference_forms():
  x = jax.random.normal(_key(9), (2, 5, 6, 3))
  np.testing.assert_array_equal(dlp_blocks.replicate_pad(x, 3),
                                jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="edge"))
  np.testing.assert_allclose(dlp_blocks.upsample_bilinear(x),
                             jax.image.resize(x, (2, 10, 12, 3), "bilinear"), atol=1e-6)
  ties = jnp.array([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]])
  np.testing.assert_array_equal(dlp_blocks.select_max(ties, axis=1), [3.0, 2.0])
  np.testing.assert_array_equal(jax.grad(lambda v: jnp.sum(dlp_blocks.select_max(v, 1)))(ties),
                                [[0, 1, 0], [1, 0, 0]])
  flat = jnp.arange(24.0).reshape(1, 2, 3, 4)                   # [B, H, W, C]
  np.testing.assert_array_equal(dlp_blocks.flatten_channel_major(flat)[0, :6], [0, 4, 8, 12, 16, 20])
  assert dlp_blocks.glimpse_side(0.25, 64) == 16 and dlp_blocks.glimpse_side(0.125, 16) == 2


def test_shapes_preset_outputs_have_documented_shapes():
  model = dlp.DLP(**SHAPES)
  batch, size, count, dim, side, glimpse = 2, 64, 10, 6, 16, 16
  x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
  out, variables = jax.eval_shape(
      lambda x: model.init_with_output({"params": _key(0), "sample": _key(1)}, x, x,
                                       train=True, phase="normal"), x)
  expected = {"kp_prior": (batch, 15, 2), "mu": (batch, count + 1, 2),
              "logvar": (batch, count + 1, 2), "z": (batch, count + 1, 2),
              "mu_features": (batch, count + 1, dim), "logvar_features": (batch, count + 1, dim),
              "z_features": (batch, count + 1, dim), "obj_on": (batch, count),
              "heatmaps": (batch, side, side, count), "gaussian_maps": (batch, side, side, count),
              "glimpses": (batch, count, glimpse, glimpse, 3),
              "decoded_glimpses": (batch, count, glimpse, glimpse, 3),
              "decoded_alphas": (batch, count, glimpse, glimpse, 1),
              "alphas": (batch, count, size, size, 1), "rgbs": (batch, count, size, size, 3),
              "reconstruction": (batch, size, size, 3), "background": (batch, size, size, 3),
              "objects": (batch, size, size, 3)}
  assert {name: value.shape for name, value in out.items()} == expected
  params = variables["params"]
  assert set(params) == set(dlp.ENCODER_MODULES + dlp.DECODER_MODULES)
  # Widths of the original: 2K -> 128 -> 64 -> 33 -> 3 decoder, K F^2 = 2560 inputs to the
  # position head, 2 + D + 2 inputs to the first PointNet layer, 32 (g/4)^2 glimpse code.
  decoder = params["background_decoder"]
  assert decoder["ConvBlock_0"]["Conv_0"]["kernel"].shape == (3, 3, 20, 128)
  assert decoder["ConvBlock_2"]["Conv_0"]["kernel"].shape == (3, 3, 64, 33)
  assert decoder["final"]["kernel"].shape == (1, 1, 33, 3)
  assert params["posterior"]["position_head"]["Dense_0"]["kernel"].shape == (2560, 256)
  assert params["posterior"]["presence_head"]["Dense_2"]["kernel"].shape == (128, 10)
  assert params["pointnet"]["Dense_0"]["kernel"].shape == (10, 64)
  assert params["pointnet"]["Dense_8"]["kernel"].shape == (512, 10 * 64)
  assert params["appearance"]["glimpse_head"]["Dense_0"]["kernel"].shape == (512, 256)
  assert params["appearance"]["background_head"]["Dense_0"]["kernel"].shape == (2560, 256)
  assert params["glimpse_decoder"]["Dense_1"]["kernel"].shape == (256, 32 * 8 * 8)
  assert params["prior"]["cnn"]["ConvBlock_0"]["Conv_0"]["kernel"].shape == (3, 3, 3, 16)
  assert params["posterior"]["cnn"]["ConvBlock_0"]["Conv_0"]["kernel"].shape == (7, 7, 3, 32)


def test_initialisation_and_parameter_groups(small):
  _, variables, out, _ = small
  # The background particle: mean (0, 0), log-variance log sigma^2.
  np.testing.assert_array_equal(out["mu"][:, -1], 0.0)
  np.testing.assert_allclose(out["logvar"][:, -1], math.log(0.01), rtol=1e-6)
  assert np.all(np.abs(out["mu"]) <= 1) and np.all(np.abs(out["kp_prior"]) <= 1)
  assert np.all((out["obj_on"] > 0) & (out["obj_on"] < 1))
  assert np.all((out["alphas"] >= 0) & (out["alphas"] <= 1))
  np.testing.assert_allclose(out["objects"], jnp.sum(
      particles.exclusive_masks(out["alphas"]) * out["rgbs"], axis=1), atol=1e-6)

  params = variables["params"]
  # Convs N(0, 0.01^2) with zero bias, linears U(+-1/sqrt(fan_in)) incl. bias, BN (1, 0).
  conv = params["posterior"]["cnn"]["ConvBlock_2"]["Conv_0"]["kernel"]
  assert abs(float(jnp.std(conv)) - 0.01) < 1e-3 and abs(float(jnp.mean(conv))) < 1e-3
  np.testing.assert_array_equal(params["posterior"]["cnn"]["keymap"]["bias"], 0.0)
  head = params["posterior"]["position_head"]["Dense_0"]
  bound = 1 / math.sqrt(head["kernel"].shape[0])
  for leaf in (head["kernel"], head["bias"]):
    assert 0.9 * bound < float(jnp.max(jnp.abs(leaf))) <= bound
  batch_norm = params["prior"]["cnn"]["ConvBlock_0"]["BatchNorm_0"]
  np.testing.assert_array_equal(batch_norm["scale"], 1.0)
  np.testing.assert_array_equal(batch_norm["bias"], 0.0)

  labels = dlp.parameter_labels(params)
  for name in dlp.ENCODER_MODULES:
    assert set(jax.tree.leaves(labels[name])) == {"encoder"}
  for name in dlp.DECODER_MODULES:
    assert set(jax.tree.leaves(labels[name])) == {"decoder"}
  with pytest.raises(ValueError, match="'extra'"):
    dlp.parameter_labels({**params, "extra": {"w": jnp.zeros(1)}})


def test_celeba_preset_builds():
  model = dlp.DLP(**CELEBA)
  x = jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32)
  out, variables = jax.eval_shape(
      lambda x: model.init_with_output({"params": _key(0), "sample": _key(1)}, x, x,
                                       train=True, phase="normal"), x)
  assert out["reconstruction"].shape == (2, 128, 128, 3)
  assert out["mu"].shape == (2, 31, 2) and out["z_features"].shape == (2, 31, 10)
  assert out["kp_prior"].shape == (2, 50, 2) and out["heatmaps"].shape == (2, 16, 16, 30)
  assert out["glimpses"].shape == (2, 30, 2, 2, 30)          # 2 x 2 windows of sg(H)
  assert "obj_on" not in out and "objects" not in out
  params = variables["params"]
  assert set(params) == {"prior", "posterior", "appearance", "pointnet", "background_decoder"}
  # Bypass decoder input 3K = 90, then 256 -> 128 -> 64 -> 31 (32 // 31 + 1) = 62 -> 3.
  decoder = params["background_decoder"]
  assert decoder["ConvBlock_0"]["Conv_0"]["kernel"].shape == (3, 3, 90, 256)
  assert decoder["ConvBlock_3"]["Conv_0"]["kernel"].shape == (3, 3, 64, 62)
  assert params["appearance"]["glimpse_head"]["Dense_0"]["kernel"].shape == (4 * 30 + 2, 256)
  assert params["posterior"]["position_head"]["Dense_0"]["kernel"].shape == (7680, 256)


def test_stop_gradients_normal_phase(small, shapes_batch):
  _, variables, _, weighted_grad = small
  grads = _term_grads(weighted_grad, variables, shapes_batch, _key(4), "normal")
  rec, ckl, kl_features = grads["rec"], grads["ckl"], grads["kl_features"]
  # The prior is trained only by the Chamfer-KL.
  assert _leaves_zero(rec["prior"]) and not _leaves_zero(ckl["prior"])
  # Gaussian maps and pasting carry the gradient to the positions; stitching to obj_on.
  assert not _leaves_zero(rec["posterior"]["position_head"])
  assert not _leaves_zero(rec["posterior"]["presence_head"])
  # Appearance: glimpses at sg(mu) of the image, obj_on on sg(H) -> no gradient to the
  # positions or the posterior CNN; the exclusive masks do carry it to obj_on.
  assert _leaves_zero(kl_features["posterior"]["position_head"])
  assert _leaves_zero(kl_features["posterior"]["cnn"])
  assert not _leaves_zero(kl_features["posterior"]["presence_head"])
  assert not _leaves_zero(kl_features["appearance"])
  assert _leaves_zero(ckl["appearance"]) and _leaves_zero(kl_features["prior"])
  # PointNet reads sg(z) and sg(foreground z_f): the background image does not train the
  # glimpse encoder, only the background feature head (and the positions through G).
  background = grads["background"]
  assert _leaves_zero(background["appearance"]["glimpse_cnn"])
  assert _leaves_zero(background["appearance"]["glimpse_head"])
  assert not _leaves_zero(background["appearance"]["background_head"])
  assert not _leaves_zero(background["posterior"]["position_head"])
  assert _leaves_zero(background["glimpse_decoder"]) and _leaves_zero(background["prior"])


def test_warmup_skips_background_branch(small, shapes_batch):
  _, variables, _, weighted_grad = small
  grads, metrics, batch_stats = weighted_grad(variables["params"], variables["batch_stats"],
                                              shapes_batch, _key(5), TRAIN_WEIGHTS, phase="warmup")
  np.testing.assert_allclose(
      jnp.dot(TRAIN_WEIGHTS[:3], jnp.stack([metrics[name] for name in TERMS[:3]])),
      metrics["loss"], rtol=1e-6)
  for name in ("background_decoder", "pointnet"):
    assert _leaves_zero(grads[name])
    jax.tree.map(np.testing.assert_array_equal, batch_stats[name],
                 variables["batch_stats"][name])
  assert not _leaves_zero(jax.tree.map(jnp.subtract, batch_stats["glimpse_decoder"],
                                       variables["batch_stats"]["glimpse_decoder"]))
  # Glimpses are cut at sg(mu): the glimpse loss does not move the positions.
  rec = _term_grads(weighted_grad, variables, shapes_batch, _key(5), "warmup", ("rec",))["rec"]
  assert _leaves_zero(rec["posterior"]["position_head"])
  assert not _leaves_zero(rec["glimpse_decoder"])
  assert not _leaves_zero(rec["appearance"]["glimpse_cnn"])


def test_masked_model_features_do_not_train_the_posterior():
  model = dlp.DLP(**SMALL_MASKED)
  x = jax.random.uniform(_key(2), (2, 32, 32, 3))
  variables = _random_variables(model, x)

  grads = _term_grads(_weighted_grad(model), variables, x, _key(6), "normal",
                      ("rec", "kl_features"))
  rec, kl_features = grads["rec"], grads["kl_features"]
  # The appearance reads sg(H) at sg(mu) and the background mask is detached.
  assert _leaves_zero(kl_features["posterior"]) and not _leaves_zero(kl_features["appearance"])
  # The reconstruction trains the posterior CNN through the Gaussian maps only (the
  # bypass uses sg(H)) and does not reach the prior.
  assert not _leaves_zero(rec["posterior"]["cnn"]) and _leaves_zero(rec["prior"])


def test_deterministic_encode_then_decode_equals_forward(small, shapes_batch):
  model, variables, _, _ = small

  def encode_decode(module, x):
    encoded = module.encode(x, train=False, deterministic=True)
    return encoded, module.decode(encoded, train=False)

  @jax.jit
  def both(variables, x):
    out = model.apply(variables, x, x, train=False, phase="normal", deterministic=True)
    return out, *model.apply(variables, x, method=encode_decode)

  out, encoded, decoded = both(variables, shapes_batch)
  np.testing.assert_array_equal(out["z"], out["mu"])
  np.testing.assert_array_equal(out["z_features"], out["mu_features"])
  np.testing.assert_allclose(decoded["reconstruction"], out["reconstruction"], atol=1e-6)
  np.testing.assert_allclose(encoded["mu"], out["mu"], atol=1e-6)


def test_loss_closed_form():
  x = jnp.zeros((2, 4, 4, 3))
  outputs = {"reconstruction": jnp.full((2, 4, 4, 3), 0.5),
             "mu": jnp.array([[[0.1, 0.0], [0.0, 0.0]]] * 2),
             "logvar": jnp.full((2, 2, 2), math.log(0.01)),
             "kp_prior": jnp.array([[[0.0, 0.0]]] * 2),
             "mu_features": jnp.ones((2, 2, 3)), "logvar_features": jnp.zeros((2, 2, 3))}
  total, metrics = dlp_losses.loss(outputs, x, phase="normal", **LOSS)
  # rec: 48 pixels * 0.25; ckl: KL of a 0.1 shift at variance 0.01 counted in both
  # directions (0.5 * 0.01 / 0.01 = 0.5 each); feature KL: 2 particles * 3 dims * 0.5.
  np.testing.assert_allclose(metrics["rec"], 12.0, rtol=1e-6)
  np.testing.assert_allclose(metrics["ckl"], 1.0, rtol=1e-5)
  np.testing.assert_allclose(metrics["kl_features"], 3.0, rtol=1e-6)
  np.testing.assert_allclose(metrics["psnr"], -10 * math.log10(0.25), rtol=1e-6)
  np.testing.assert_allclose(total, 12.0 + 0.05 * (1.0 + 0.001 * 3.0), rtol=1e-6)
  _, with_background = dlp_losses.loss(outputs, x, phase="normal",
                                       include_background_in_ckl=True, **LOSS)
  np.testing.assert_allclose(with_background["ckl"], 0.5, rtol=1e-5)  # bg sits on the proposal
  warm = dict(outputs, glimpses=jnp.ones((2, 3, 2, 2, 3)),
              decoded_glimpses=jnp.zeros((2, 3, 2, 2, 3)))
  _, metrics = dlp_losses.loss(warm, x, phase="warmup", **LOSS)
  np.testing.assert_allclose(metrics["rec"], 12.0, rtol=1e-6)      # 2 * 2 * 3 per glimpse
  with pytest.raises(ValueError, match="vgg_params"):
    dlp_losses.loss(outputs, x, phase="normal", rec_loss="vgg", **LOSS)


def test_few_steps_overfit_shapes(small, shapes_batch):
  _, variables, _, weighted_grad = small
  optimizer = optax.multi_transform(
      {"encoder": optax.adam(1e-3, eps=1e-4), "decoder": optax.adam(1e-3, eps=1e-4)},
      dlp.parameter_labels(variables["params"]))

  @jax.jit
  def update(grads, state, params):
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  history = {}
  for phase in ("warmup", "normal"):
    params, batch_stats = variables["params"], variables["batch_stats"]
    state = optimizer.init(params)
    history[phase] = []
    for step in range(30):
      grads, metrics, batch_stats = weighted_grad(params, batch_stats, shapes_batch,
                                                  jax.random.fold_in(_key(8), step),
                                                  TRAIN_WEIGHTS, phase=phase)
      params, state = update(grads, state, params)
      history[phase].append({name: float(value) for name, value in metrics.items()})
  warmup, normal = history["warmup"], history["normal"]
  # The warm-up targets move with the U(0, 1) presences of the exclusive masks: average.
  assert np.mean([m["rec"] for m in warmup[-5:]]) < 0.7 * warmup[0]["rec"]
  assert warmup[-1]["loss"] < warmup[0]["loss"]
  assert np.mean([m["loss"] for m in normal[-3:]]) < 0.7 * normal[0]["loss"]
  assert normal[-1]["psnr"] > normal[0]["psnr"]
