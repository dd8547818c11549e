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
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dti_jax.models import dlp as model_lib
from dti_jax.models import dlp_losses

Stage = str  # "warmup", "noisy" or "normal"
PHASE_CODES = {"warmup": 0, "noisy": 1, "normal": 2}
BACKGROUND_BRANCH = ("pointnet", "background_decoder")


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
  if tuple(image_shape) != (m.image_size, m.image_size, 3):
    raise ValueError(f"config.model.image_size={m.image_size} needs RGB images of "
                     f"{m.image_size}x{m.image_size}; the data has {tuple(image_shape)}")
  if m.kind not in model_lib.MODELS:
    raise ValueError(f"config.model.kind={m.kind!r} is not one of {model_lib.MODELS}")
  if m.image_size % m.patch_size:
    raise ValueError(f"config.model.patch_size={m.patch_size} does not divide the image "
                     f"size {m.image_size}")
  patches = (m.image_size // m.patch_size) ** 2
  if not 1 <= m.num_prior <= patches:
    raise ValueError(f"config.model.num_prior={m.num_prior} must be in [1, {patches}] "
                     f"(one proposal per {m.patch_size}x{m.patch_size} patch)")
  if config.loss.rec_loss != "mse":
    raise ValueError(f"config.loss.rec_loss={config.loss.rec_loss!r}: only 'mse' is "
                     "available (the VGG perceptual loss needs ImageNet VGG-16 weights)")
  jax.eval_shape(lambda: create_model(config).init(
      {"params": jax.random.key(0), "sample": jax.random.key(1)},
      jnp.zeros((1,) + tuple(image_shape)), jnp.zeros((1,) + tuple(image_shape)),
      train=False, phase="normal"))


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


def reassign_allowed(stage: Stage) -> bool:
  del stage
  return False


def stage_scalars(stage: Stage) -> dict[str, int]:
  return {"train/phase": PHASE_CODES[stage]}


def stage_meta(stage: Stage) -> dict[str, Any]:
  return {"phase": stage}


def reassign_clusters(state, key, *, config):
  """DLP has no clusters to reassign (the loop never calls this: reassign_clusters False)."""
  del key, config
  return state, jnp.int32(0)


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
  epochs_done = step // steps_per_epoch
  decays = sum((epochs_done >= e).astype(jnp.float32) for e in o.lr_milestones)
  return o.lr * o.gamma ** decays


def loss_kwargs(config: ml_collections.ConfigDict) -> dict[str, Any]:
  l = config.loss
  return {"beta_rec": l.beta_rec, "beta_kl": l.beta_kl, "kl_balance": l.kl_balance,
          "rec_loss": l.rec_loss, "sigma": config.model.sigma}


def train_step(state: TrainState, batch: dict[str, jax.Array], *,
               config: ml_collections.ConfigDict, stage: Stage,
               steps_per_epoch: int) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step of every module that ran. Pure: jit it once per phase."""
  images = batch["image"]
  model = create_model(config)
  key = jax.random.fold_in(state.key, state.step)

  def loss_fn(params):
    out, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, images,
                               images, train=True, phase=stage, rngs={"sample": key},
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


def eval_outputs(state: TrainState, images: jax.Array, *, config: ml_collections.ConfigDict,
                 deterministic: bool = True, key: jax.Array | None = None
                 ) -> dict[str, jax.Array]:
  """Eval-mode forward (BN running statistics, learned presences); z = mu when
  ``deterministic``, else sampled with ``key`` (the validation ELBO)."""
  key = jax.random.key(0) if key is None else key
  return create_model(config).apply(
      {"params": state.params, "batch_stats": state.batch_stats}, images, images, train=False,
      phase="normal", deterministic=deterministic, rngs={"sample": key})
