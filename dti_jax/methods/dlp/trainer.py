"""Deep Latent Particles: state, phases and train step (pure functions) for the shared loop.

The original steps two Adam optimisers (encoder and decoder groups, lr, betas (0.9,
0.999), eps 1e-4, no weight decay) and PyTorch skips parameters without a gradient. Here
each top-level module has its own Adam state with the same settings, so a module that
does not run (the background branch during warm-up) gets no update and no step count,
as there, while the others match the two-group optimisers exactly. The learning rate is
a MultiStepLR per epoch.

Phases (the object model; spec 4.4), from the step: "warmup" for the first
warmup_steps (glimpse loss, no background branch), "noisy" until 5 x warmup_steps
(random presences, alpha noise), then "normal". One jitted step per phase.

With ``config.model.weights`` (a converted checkpoint of the original) `create_state`
starts from those weights and BN statistics instead of the initial ones; with
``eval_only`` the loop scores them (`given_weights`) without a training checkpoint.

Eval mode uses BN running statistics re-estimated at the current weights
(`recalibrate_batch_stats`), not the training EMAs, which lag the weights: the
evaluator, the particle editor (`dti_jax.methods.dlp.edit`) and scripts/time_to_psnr.py all
re-estimate them on ``eval.bn_recalibration_batches`` training batches first.
"""

import functools
from typing import Any, Callable, Iterable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dti_jax.methods.dlp import model as model_lib
from dti_jax.methods.dlp import losses as dlp_losses
from dti_jax.methods.dlp import perceptual as vgg_perceptual
from dti_jax.methods.dlp import tps_pairs
from dti_jax.methods.dlp import weights as dlp_weights
from dti_jax.run import schedules

Stage = str  # "warmup", "noisy" or "normal"
PHASE_CODES = {"warmup": 0, "noisy": 1, "normal": 2}
BACKGROUND_BRANCH = ("pointnet", "background_decoder")
BATCH_KEYS = ("image",)  # what a train step reads of a batch


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; the data position and phase follow from step."""

  step: jax.Array
  params: dict[str, Any]
  batch_stats: dict[str, Any]
  opt_states: dict[str, Any]      # top-level module -> Adam state
  key: jax.Array                  # base key of the per-step noise


def create_model(config: ml_collections.ConfigDict) -> model_lib.DLP:
  m = config.model
  return model_lib.DLP(
      image_size=m.image_size, enc_channels=tuple(m.enc_channels),
      prior_channels=tuple(m.prior_channels), num_particles=m.num_particles,
      num_prior=m.num_prior, patch_size=m.patch_size, feature_dim=m.feature_dim,
      anchor_s=m.anchor_s, sigma=m.sigma, model=m.kind,
      exclusive_patches=m.exclusive_patches, mask_threshold=m.mask_threshold,
      pointnet_k=m.pointnet_k)


def validate(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> None:
  """Raises a one-line ValueError naming the offending config key."""
  m = config.model
  side = input_side(config)
  if tuple(image_shape) != (side, side, 3):
    raise ValueError(f"config.model.image_size={m.image_size} needs RGB images of "
                     f"{side}x{side}; the data has {tuple(image_shape)}")
  if m.kind not in model_lib.MODELS:
    raise ValueError(f"config.model.kind={m.kind!r} is not one of {model_lib.MODELS}")
  if m.image_size % m.patch_size:
    raise ValueError(f"config.model.patch_size={m.patch_size} does not divide the image "
                     f"size {m.image_size}")
  patches = (m.image_size // m.patch_size) ** 2
  if not 1 <= m.num_prior <= patches:
    raise ValueError(f"config.model.num_prior={m.num_prior} must be in [1, {patches}] "
                     f"(one proposal per {m.patch_size}x{m.patch_size} patch)")
  if config.loss.rec_loss not in dlp_losses.REC_LOSSES:
    raise ValueError(f"config.loss.rec_loss={config.loss.rec_loss!r} is not one of "
                     f"{dlp_losses.REC_LOSSES}")
  if config.loss.rec_loss == "vgg":
    vgg_params(config.loss.get("vgg_weights", ""))  # one line naming config.loss.vgg_weights
  jax.eval_shape(lambda: create_model(config).init(
      {"params": jax.random.key(0), "sample": jax.random.key(1)},
      jnp.zeros((1, m.image_size, m.image_size, 3)),
      jnp.zeros((1, m.image_size, m.image_size, 3)), train=False, phase="normal"))
  if given_weights(config):
    dlp_weights.load_variables(given_weights(config), config)  # one line if it does not fit


def given_weights(config: ml_collections.ConfigDict) -> str:
  """``config.model.weights``: a converted checkpoint of the original
  (scripts/convert_dlp_weights.py) that `create_state` starts from, or ""."""
  return config.model.get("weights", "")


def warmup_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  t = config.train
  if config.model.kind != "object":
    return 0
  return t.warmup_steps if t.warmup_steps > 0 else t.warmup_epochs * steps_per_epoch


def stage_at(config: ml_collections.ConfigDict, step: int, steps_per_epoch: int) -> Stage:
  warmup = warmup_steps(config, steps_per_epoch)
  if step < warmup:
    return "warmup"
  if step < config.train.noisy_factor * warmup:
    return "noisy"
  return "normal"


def describe_stage(config: ml_collections.ConfigDict, stage: Stage) -> str:
  del config
  return {"warmup": "warm-up (glimpse loss, no background branch, random presences)",
          "noisy": "noisy masks (random presences, alpha noise)",
          "normal": "normal (learned presences)"}[stage]


def stage_scalars(stage: Stage) -> dict[str, int]:
  return {"train/phase": PHASE_CODES[stage]}


def stage_meta(stage: Stage) -> dict[str, Any]:
  return {"phase": stage}


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  o = config.optim
  return optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps)


def init_arrays(config: ml_collections.ConfigDict, source) -> np.ndarray:
  """One zero image: the shapes the model is initialised with."""
  del source
  side = config.model.image_size
  return np.zeros((1, side, side, 3), np.float32)


def create_state(config: ml_collections.ConfigDict, key: jax.Array,
                 init_images: jax.Array) -> TrainState:
  params_key, sample_key, noise_key = jax.random.split(key, 3)
  variables = create_model(config).init({"params": params_key, "sample": sample_key},
                                        init_images, init_images, train=False, phase="normal")
  if given_weights(config):  # the converted weights replace the initial ones
    variables, _ = dlp_weights.load_variables(given_weights(config), config)
    variables = jax.tree.map(jnp.asarray, variables)
  params = dict(variables["params"])
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=dict(variables["batch_stats"]),
                    opt_states={name: optimizer(config).init(tree)
                                for name, tree in params.items()},
                    key=noise_key)


def learning_rate(config: ml_collections.ConfigDict, step: jax.Array,
                  steps_per_epoch: int) -> jax.Array:
  """MultiStepLR stepped once per epoch: lr * gamma^(milestones passed)."""
  o = config.optim
  milestones = schedules.epochs_to_steps(o.lr_milestones, steps_per_epoch)
  return schedules.step_decay(o.lr, milestones, o.gamma)(step)


@functools.lru_cache(maxsize=2)
def vgg_params(path: str) -> vgg_perceptual.Params:
  """The frozen VGG-16 of rec_loss "vgg", read once per path; the jitted steps close over
  it as a constant, so it is neither trained nor checkpointed."""
  return vgg_perceptual.load_vgg16_features(path)


def loss_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  l = config.loss
  kwargs = {"beta_rec": l.beta_rec, "beta_kl": l.beta_kl, "kl_balance": l.kl_balance,
            "rec_loss": l.rec_loss, "sigma": config.model.sigma}
  if l.rec_loss == "vgg":
    kwargs["vgg_params"] = vgg_params(l.get("vgg_weights", ""))
  return kwargs


def model_inputs(images: jax.Array, key: jax.Array, *, config: ml_collections.ConfigDict
                 ) -> tuple[jax.Array, jax.Array]:
  """(x, x_prior) of a training batch.

  With ``config.data.tps_pairs`` (CelebA) the pair is DVE's TPS Warper drawn on the
  batch as stored (the resized images with their border), in the original's roles
  (`train_dlp.py`: x_prior = im1, x = im2): the prior proposes keypoints on the lightly
  warped view A and the posterior encodes and reconstructs view B, view A warped again.
  Otherwise x = x_prior = the batch. Images
  larger than ``config.model.image_size`` then lose an equal border on every side (the
  original's crop after warping: 160 -> 128).
  """
  border = (images.shape[1] - config.model.image_size) // 2
  if config.data.get("tps_pairs", False):
    x_prior, x = tps_pairs.tps_pair(key, images)
  else:
    x = x_prior = images
  return tps_pairs.crop_border(x, border), tps_pairs.crop_border(x_prior, border)


def input_side(config: ml_collections.ConfigDict) -> int:
  """Side of the stored training images: the model's, except celeba_dve's training split,
  kept at 1.25 x with its border for the TPS pairs (160 for 128; `model_inputs` crops)."""
  side = config.model.image_size
  return side * 5 // 4 if config.data.name == "celeba_dve" else side


def train_step(state: TrainState, batch: dict[str, jax.Array], *,
               config: ml_collections.ConfigDict, stage: Stage,
               steps_per_epoch: int) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step of every module that ran. Pure: jit it once per phase."""
  model = create_model(config)
  key = jax.random.fold_in(state.key, state.step)
  # The pair's own stream; the model's noise keeps `key`, as without pairs.
  images, prior_images = model_inputs(batch["image"], jax.random.fold_in(key, 1),
                                      config=config)

  def loss_fn(params):
    out, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, images,
                               prior_images, train=True, phase=stage, rngs={"sample": key},
                               mutable=["batch_stats"])
    total, metrics = dlp_losses.loss(out, images, phase=stage, **loss_kwargs(config))
    return total, (metrics, updates["batch_stats"])

  (_, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  lr = learning_rate(config, state.step, steps_per_epoch)
  params, opt_states = dict(state.params), dict(state.opt_states)
  for name in params:
    if stage == "warmup" and config.model.kind == "object" and name in BACKGROUND_BRANCH:
      continue  # not run: PyTorch's Adam skips parameters without a gradient
    updates, opt_states[name] = optimizer(config).update(grads[name], opt_states[name],
                                                         params[name])
    params[name] = jax.tree.map(lambda p, u: p - lr * u, params[name], updates)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_states=opt_states)
  return new_state, {**metrics, "learning_rate": lr}


def step_function(config, stage: Stage, steps_per_epoch: int):
  return functools.partial(train_step, config=config, stage=stage,
                           steps_per_epoch=steps_per_epoch)


def updated_batch_stats(state: TrainState, images: jax.Array, key: jax.Array, *,
                        config: ml_collections.ConfigDict) -> dict[str, Any]:
  """BN running statistics after one train-mode forward pass of ``images`` (no update of
  the weights): one step of `recalibrate_batch_stats`. ``images`` are training batches
  as the step gets them (CelebA: with the border, made into TPS pairs here)."""
  x, x_prior = model_inputs(images, jax.random.fold_in(key, 1), config=config)
  _, updates = create_model(config).apply(
      {"params": state.params, "batch_stats": state.batch_stats}, x, x_prior,
      train=True, phase="normal", rngs={"sample": key}, mutable=["batch_stats"])
  return updates["batch_stats"]


@functools.partial(jax.jit, static_argnames="config")
def _jitted_updated_batch_stats(state: TrainState, images: jax.Array, key: jax.Array, *,
                                config: ml_collections.FrozenConfigDict) -> dict[str, Any]:
  """`updated_batch_stats` compiled once per (frozen, hashable) config and batch shape."""
  return updated_batch_stats(state, images, key, config=config)


UpdateFn = Callable[[TrainState, Any, jax.Array], dict[str, Any]]


def recalibrate_batch_stats(state: TrainState, image_batches: Iterable[np.ndarray | jax.Array],
                            *, config: ml_collections.ConfigDict,
                            update_fn: UpdateFn | None = None) -> TrainState:
  """``state`` with its BN running statistics re-estimated at its weights.

  The convolutions start at N(0, 0.01^2) and Adam moves them by about lr per step, a
  large relative change, so the training EMAs (momentum 0.1) lag the weights and
  eval-mode outputs drift (measured: held-out PSNR 16.7 dB with the training
  statistics against 22.3 dB re-estimated, shapes ``:cpu`` after 1,500 steps). Every
  batch of ``image_batches`` (training images in [0, 1], as the step gets them) updates
  the statistics as training does: a train-mode forward pass at fixed weights, no
  gradient, batch i with key ``jax.random.key(i)``. Everything but the statistics is
  ``state``'s. ``update_fn(state, images, key) -> batch_stats`` replaces the default
  jitted `updated_batch_stats` (e.g. one jitted with shardings).
  """
  if update_fn is None:
    update_fn = functools.partial(_jitted_updated_batch_stats,
                                  config=ml_collections.FrozenConfigDict(config))
  batch_stats = state.batch_stats
  for index, images in enumerate(image_batches):
    batch_stats = update_fn(state.replace(batch_stats=batch_stats), images,
                            jax.random.key(index))
  return state.replace(batch_stats=batch_stats)


def eval_outputs(state: TrainState, images: jax.Array, *, config: ml_collections.ConfigDict,
                 deterministic: bool = True, key: jax.Array | None = None
                 ) -> dict[str, jax.Array]:
  """Eval-mode forward (BN running statistics, learned presences); z = mu when
  ``deterministic``, else sampled with ``key`` (the validation ELBO)."""
  key = jax.random.key(0) if key is None else key
  return create_model(config).apply(
      {"params": state.params, "batch_stats": state.batch_stats}, images, images, train=False,
      phase="normal", deterministic=deterministic, rngs={"sample": key})
