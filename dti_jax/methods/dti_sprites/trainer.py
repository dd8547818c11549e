"""DTI-Sprites: state, train step, sprite reassignment and evaluation step (pure functions).

Parameter groups follow the original's Adam: prototypes, masks and backgrounds (the
"cluster" group: no weight decay, gamma_sprites) and the encoder and every head (the
"transformer" group: coupled L2, gamma_transformer). Each leaf group has its own Adam
state, so parameters PyTorch would skip (sprites while frozen, heads of inactive
curriculum modules) get no update, no decay and no step count; unchosen sprites and
heads are in the graph with zero gradient and do get their Adam steps, as there.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dti_jax.methods.dti_sprites import segmentation
from dti_jax.methods.dti_sprites import model as model_lib
from dti_jax.methods.dti_sprites import decomposition
from dti_jax.nets import resnet
from dti_jax.ops import reassignment
from dti_jax.methods.dti_sprites import compositing
from dti_jax.run import schedules

BATCH_KEYS = ("image",)  # what a train step reads of a batch
CLUSTER_GROUPS = ("prototypes", "masks", "backgrounds")
ENCODER_GROUP = "encoder_net"
Stage = decomposition.Stage


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; the data position and stage follow from step."""

  step: jax.Array
  params: dict[str, Any]          # {'sprites': {...}, 'backgrounds': [M,H,W,C]?, 'predictor'}
  batch_stats: dict[str, Any]
  opt_states: dict[str, Any]      # group name -> optax state
  usage_sum: jax.Array            # [L, K] summed per-batch selection frequencies
  usage_batches: jax.Array        # [] batches in that sum
  key: jax.Array                  # base key of the per-step mask noise


def model_spec(config: ml_collections.ConfigDict,
               image_shape: tuple[int, int, int]) -> decomposition.SpritesSpec:
  m = config.model
  height, width, channels = image_shape
  return decomposition.SpritesSpec(
      height=height, width=width, channels=channels, n_sprites=m.n_sprites,
      add_empty=m.add_empty_sprite, n_layers=m.n_layers, n_backgrounds=m.n_backgrounds,
      sprite_modules=model_lib.parse_modules(m.sprite_transformation),
      layer_transform=m.layer_transformation == "color_position",
      bkg_modules=model_lib.parse_modules(m.bkg_transformation),
      predict_occlusion=m.pred_occlusion, selection=m.selection,
      greedy_iterations=m.greedy_iterations, lambda_empty=m.lambda_empty,
      noise_eta=m.inject_noise, grid_size=m.grid_size)


def validate(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> None:
  """Raises a one-line ValueError naming the offending config key."""
  m = config.model
  if m.selection not in ("greedy", "exhaustive"):
    raise ValueError(f"config.model.selection={m.selection!r} is not 'greedy' or 'exhaustive'")
  if m.selection == "exhaustive" and m.n_layers != 1:
    raise ValueError(f"config.model.selection='exhaustive' enumerates one layer only; "
                     f"config.model.n_layers={m.n_layers} needs 'greedy'")
  if m.selection == "greedy" and m.n_backgrounds > 1:
    raise ValueError(f"config.model.n_backgrounds={m.n_backgrounds}: greedy selection uses "
                     "at most one background")
  if m.layer_transformation not in ("color_position", "identity"):
    raise ValueError(f"config.model.layer_transformation={m.layer_transformation!r} is not "
                     "'color_position' or 'identity'")
  if m.layer_transformation == "identity" and m.sprite_size != image_shape[0]:
    raise ValueError(f"config.model.sprite_size={m.sprite_size} must equal the image size "
                     f"{image_shape[0]} without the color_position layer transformation")
  if m.n_sprites < 1 or m.n_layers < 1:
    raise ValueError(f"config.model.n_sprites={m.n_sprites} and n_layers={m.n_layers} must be >= 1")
  for key in ("sprite_transformation", "bkg_transformation"):
    modules = model_lib.parse_modules(m[key])
    curriculum = tuple(config.train[key.replace("transformation", "curriculum_epochs")])
    if curriculum and len(curriculum) != len(modules) - 1:
      raise ValueError(f"config.train.{key.replace('transformation', 'curriculum_epochs')}="
                       f"{curriculum} needs {len(modules) - 1} milestones for {m[key]!r}")
  if m.bkg_init not in ("constant", "mean"):
    raise ValueError(f"config.model.bkg_init={m.bkg_init!r} is not 'constant' or 'mean'")
  resnet.check_input_size(m.encoder, image_shape, m.pool_grid)


def _active_count(modules: tuple[str, ...], curriculum, epochs_done: int) -> int:
  if not curriculum:
    return len(modules)
  return 1 + sum(epochs_done >= milestone for milestone in curriculum)


def stage_at(config: ml_collections.ConfigDict, step: int, steps_per_epoch: int) -> Stage:
  """Curriculum modules switch on after m epochs; sprites are frozen for freeze_sprite epochs."""
  m, t = config.model, config.train
  epochs_done = step // steps_per_epoch
  return Stage(
      _active_count(model_lib.parse_modules(m.sprite_transformation),
                    tuple(t.sprite_curriculum_epochs), epochs_done),
      _active_count(model_lib.parse_modules(m.bkg_transformation),
                    tuple(t.bkg_curriculum_epochs), epochs_done),
      epochs_done < t.freeze_sprite_epochs)


def describe_stage(config: ml_collections.ConfigDict, stage: Stage) -> str:
  sprite = model_lib.parse_modules(config.model.sprite_transformation)[:stage.n_sprite_modules]
  text = f"sprite modules {'+'.join(sprite)}"
  if config.model.n_backgrounds:
    bkg = model_lib.parse_modules(config.model.bkg_transformation)[:stage.n_bkg_modules]
    text += f", background modules {'+'.join(bkg)}"
  return text + (", sprites frozen" if stage.frozen else "")


def reassign_allowed(stage: Stage) -> bool:
  return not stage.frozen


def stage_scalars(stage: Stage) -> dict[str, int]:
  return {"train/active_sprite_modules": stage.n_sprite_modules,
          "train/active_bkg_modules": stage.n_bkg_modules,
          "train/sprites_frozen": int(stage.frozen)}


def stage_meta(stage: Stage) -> dict[str, Any]:
  """What inference needs to rebuild the stage from a checkpoint."""
  return {"stage": [stage.n_sprite_modules, stage.n_bkg_modules, bool(stage.frozen)]}


def create_predictor(config: ml_collections.ConfigDict, spec: decomposition.SpritesSpec):
  return model_lib.SpritesPredictor(
      encoder=config.model.encoder, pool_grid=config.model.pool_grid, n_layers=spec.n_layers,
      n_sprites=spec.num_candidates, channels=spec.channels,
      sprite_modules=spec.sprite_modules, layer_transform=spec.layer_transform,
      n_backgrounds=spec.n_backgrounds, bkg_modules=spec.bkg_modules,
      predict_occlusion=spec.predict_occlusion, grid_size=spec.grid_size,
      mixed_precision=config.mixed_precision)


def _is_cluster(group: str) -> bool:
  return group in CLUSTER_GROUPS


def group_optimizer(config: ml_collections.ConfigDict, group: str) -> optax.GradientTransformation:
  """Adam without the learning rate; coupled L2 (added to the gradient) on transformer groups."""
  o = config.optim
  adam = optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps)
  if _is_cluster(group) or o.weight_decay == 0:
    return adam
  return optax.chain(optax.add_decayed_weights(o.weight_decay), adam)


def init_arrays(config: ml_collections.ConfigDict, source) -> np.ndarray:
  """Images the background init reads: [max(M, 1), n, H, W, C] float in [0, 1].

  'mean' init: one random batch of 100 training images per background (its mean is
  the background); otherwise one image, which only fixes the shapes.
  """
  rng = np.random.default_rng(config.seed)
  n = 100 if config.model.bkg_init == "mean" else 1
  picks = rng.integers(0, source.num_examples, size=(max(config.model.n_backgrounds, 1), n))
  return source.images[picks].astype(np.float32) / 255.0


def create_state(config: ml_collections.ConfigDict, key: jax.Array,
                 init_images: jax.Array) -> TrainState:
  """Initial state: constant prototypes, Gaussian masks, constant or mean backgrounds."""
  m = config.model
  image_shape = tuple(init_images.shape[2:])
  spec = model_spec(config, image_shape)
  init_key, noise_key = jax.random.split(key)
  predictor = create_predictor(config, spec)
  variables = predictor.init(init_key, jnp.zeros((1,) + image_shape, jnp.float32), train=False)
  params = {"sprites": model_lib.init_sprites(m.n_sprites, m.sprite_size, m.sprite_size,
                                              spec.channels, m.mask_std, m.proto_init_value),
            "predictor": dict(variables["params"])}
  if m.n_backgrounds:
    if m.bkg_init == "mean":
      params["backgrounds"] = jnp.mean(init_images, axis=1)[:m.n_backgrounds]
    else:
      params["backgrounds"] = jnp.full((m.n_backgrounds,) + image_shape, m.bkg_value, jnp.float32)
  opt_states = {group: group_optimizer(config, group).init(tree)
                for group, tree in _groups(params).items()}
  k = spec.num_candidates
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=dict(variables.get("batch_stats", {})), opt_states=opt_states,
                    usage_sum=jnp.zeros((spec.n_layers, k), jnp.float32),
                    usage_batches=jnp.zeros((), jnp.float32), key=noise_key)


def _groups(params: dict[str, Any]) -> dict[str, Any]:
  groups = {"prototypes": params["sprites"]["prototypes"], "masks": params["sprites"]["masks"]}
  if "backgrounds" in params:
    groups["backgrounds"] = params["backgrounds"]
  return {**groups, **params["predictor"]}


def _ungroup(groups: dict[str, Any]) -> dict[str, Any]:
  params = {"sprites": {"prototypes": groups["prototypes"], "masks": groups["masks"]},
            "predictor": {g: t for g, t in groups.items() if not _is_cluster(g)}}
  if "backgrounds" in groups:
    params["backgrounds"] = groups["backgrounds"]
  return params


def active_groups(spec: decomposition.SpritesSpec, stage: Stage,
                  groups: dict[str, Any]) -> tuple[str, ...]:
  """Groups that receive gradients at a stage (PyTorch's non-None grads)."""
  active = [] if stage.frozen else ["prototypes", "masks"]
  if spec.n_backgrounds:
    active.append("backgrounds")
  heads = [f"head_sprite_{n}" for n in spec.sprite_modules[:stage.n_sprite_modules]]
  heads += [f"head_bkg_{n}" for n in spec.bkg_modules[:stage.n_bkg_modules]]
  heads += ["head_layer_color", "head_layer_position", "head_occlusion"]
  heads = [h for h in heads if h in groups]
  return tuple(active) + ((ENCODER_GROUP,) + tuple(heads) if heads else ())


def learning_rates(config: ml_collections.ConfigDict, step: jax.Array,
                   steps_per_epoch: int) -> tuple[jax.Array, jax.Array]:
  """(cluster lr, transformer lr): MultiStepLR per epoch with a gamma per group.

  The cluster group (sprites, backgrounds) uses ``optim.sprite_lr`` when it is set
  (> 0), else ``optim.lr`` like the transformer group, as the original.
  """
  o = config.optim
  milestones = schedules.epochs_to_steps(o.lr_milestones, steps_per_epoch)
  cluster_lr = o.sprite_lr if o.sprite_lr > 0 else o.lr
  return (schedules.step_decay(cluster_lr, milestones, o.gamma_sprites)(step),
          schedules.step_decay(o.lr, milestones, o.gamma_transformer)(step))


def forward(config, spec, stage, params, batch_stats, images, *, train: bool,
            uniform: jax.Array | None = None):
  """Predictor + decomposition; returns (outputs, new batch stats)."""
  predictor = create_predictor(config, spec)
  variables = {"params": params["predictor"], "batch_stats": batch_stats}
  if train:
    head_out, updates = predictor.apply(variables, images, train=True, mutable=["batch_stats"])
    new_stats = updates.get("batch_stats", batch_stats)
  else:
    head_out, new_stats = predictor.apply(variables, images, train=False), batch_stats
  out = decomposition.decompose(spec, stage, params, head_out, images, train=train,
                                uniform=uniform)
  return out, new_stats


def train_step(state: TrainState, batch: dict[str, jax.Array], *,
               config: ml_collections.ConfigDict, stage: Stage,
               steps_per_epoch: int) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step on the stage's active groups. Pure: jit it once per stage."""
  images = batch["image"]
  spec = model_spec(config, images.shape[1:])
  noise_key = jax.random.fold_in(state.key, state.step)
  uniform = jax.random.uniform(noise_key, (spec.num_candidates, spec.height, spec.width, 1))

  def loss_fn(params):
    out, new_stats = forward(config, spec, stage, params, state.batch_stats, images,
                             train=True, uniform=uniform)
    return jnp.mean(out["errors"]), (out["selection"], new_stats)

  (loss, (selection, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params)
  cluster_lr, transformer_lr = learning_rates(config, state.step, steps_per_epoch)
  groups, grad_groups = _groups(state.params), _groups(grads)
  new_groups, new_opt = dict(groups), dict(state.opt_states)
  for group in active_groups(spec, stage, groups):
    lr = cluster_lr if _is_cluster(group) else transformer_lr
    # The original's optimizer lists the shared encoder once per transformer that holds
    # it and steps it once per listing (moments and count advance each time).
    repeats = config.optim.encoder_updates_per_step if group == ENCODER_GROUP else 1
    for _ in range(repeats):
      updates, new_opt[group] = group_optimizer(config, group).update(
          grad_groups[group], new_opt[group], new_groups[group])
      new_groups[group] = jax.tree.map(lambda p, u, lr=lr: p - lr * u, new_groups[group],
                                       updates)
  new_state = state.replace(
      step=state.step + 1, params=_ungroup(new_groups), batch_stats=new_stats,
      opt_states=new_opt, usage_sum=state.usage_sum + jnp.mean(selection, axis=0),
      usage_batches=state.usage_batches + 1)
  return new_state, {"loss": loss, "learning_rate": transformer_lr}


def step_function(config, stage: Stage, steps_per_epoch: int):
  return functools.partial(train_step, config=config, stage=stage,
                           steps_per_epoch=steps_per_epoch)


def _copy_sprite_rows(tree, empty: jax.Array, source: jax.Array, num_layers: int):
  """Sprite-head leaves [L*K, ...] (l-major): rows (l, i) with empty[i] take (l, source)."""
  def copy(x):
    shaped = x.reshape((num_layers, -1) + x.shape[1:])
    mask = empty.reshape((1, -1) + (1,) * (x.ndim - 1))
    return jnp.where(mask, shaped[:, source][:, None], shaped).reshape(x.shape)
  return jax.tree.map(copy, tree)


def reassign_clusters(state: TrainState, key: jax.Array, *,
                      config: ml_collections.ConfigDict) -> tuple[TrainState, jax.Array]:
  """Sprite reassignment from layer usage (spec 8), then resets the usage meters.

  Usage is that of one layer drawn at random; with an empty sprite it is relative to
  the most used sprite (empty one dropped). A sprite used less than ratio / K0 becomes
  a copy of the most used sprite j: prototype + N(0, std^2), mask, every (layer, i)
  sprite head and the Adam moments of the mask and heads (prototype moments are left
  as they are); j's prototype gets fresh noise too if anything moved.
  """
  m = config.model
  num_layers = state.usage_sum.shape[0]
  layer_key, noise_key, source_key = jax.random.split(key, 3)
  layer = jax.random.randint(layer_key, (), 0, num_layers)
  usage = state.usage_sum[layer] / jnp.maximum(state.usage_batches, 1.0)
  if m.add_empty_sprite:
    usage = usage[:-1] / jnp.max(usage[:-1])
  empty = usage < m.empty_sprite_ratio / m.n_sprites
  source = jnp.argmax(usage)
  any_empty = jnp.any(empty)

  sprites = dict(state.params["sprites"])
  protos, std = sprites["prototypes"], m.reassign_noise_std
  noisy = protos[source][None] + std * jax.random.normal(noise_key, protos.shape)
  protos = jnp.where(empty[:, None, None, None], noisy, protos)
  protos = protos.at[source].add(
      jnp.where(any_empty, std * jax.random.normal(source_key, protos.shape[1:]), 0.0))
  rows = reassignment.copy_rows
  sprites["prototypes"] = protos
  sprites["masks"] = rows(sprites["masks"], empty, source)
  head_empty = jnp.concatenate([empty, jnp.zeros((1,), bool)]) if m.add_empty_sprite else empty
  copy_heads = lambda tree: _copy_sprite_rows(tree, head_empty, source, num_layers)
  predictor = {name: (copy_heads(tree) if name.startswith("head_sprite_") else tree)
               for name, tree in state.params["predictor"].items()}
  opt_states = dict(state.opt_states)
  opt_states["masks"] = reassignment.map_adam_moments(opt_states["masks"],
                                                lambda t: rows(t, empty, source))
  for name in opt_states:
    if name.startswith("head_sprite_"):
      opt_states[name] = reassignment.map_adam_moments(opt_states[name], copy_heads)
  params = dict(state.params, sprites=sprites, predictor=predictor)
  new_state = state.replace(params=params, opt_states=opt_states,
                            usage_sum=jnp.zeros_like(state.usage_sum),
                            usage_batches=jnp.zeros_like(state.usage_batches))
  return new_state, jnp.sum(empty)


def eval_step(state: TrainState, batch: dict[str, jax.Array], *,
              config: ml_collections.ConfigDict, stage: Stage,
              num_true_ids: int) -> dict[str, jax.Array]:
  """Eval-mode decomposition of a batch and its segmentation labels and scores.

  Returns per image: instance labels (0 = uncovered), the same with uncovered pixels
  given their closest layer ('instance_fg', the original's eval_with_bkg False),
  semantic labels (1 + sprite index), the chosen sprite/candidate, the error, and the
  ARI (all pixels, labels as is) and ARI-FG (ground-truth foreground, instance_fg)
  when the batch has masks.
  """
  images = batch["image"]
  spec = model_spec(config, images.shape[1:])
  out, _ = forward(config, spec, stage, state.params, state.batch_stats, images, train=False)
  instance = jax.vmap(model_lib.layer_labels)(out["alphas"], out["occlusion"])
  instance_fg = jax.vmap(model_lib.fill_uncovered)(instance, out["colours"], images)
  choice = jnp.argmax(out["selection"], axis=-1)                            # [B, L]
  semantic = jax.vmap(model_lib.layer_labels)(out["alphas"], out["occlusion"], choice + 1)
  result = {"instance": instance, "instance_fg": instance_fg, "semantic": semantic,
            "choice": choice, "background_choice": out["background_choice"],
            "error": out["errors"], "valid": batch["_mask"]}
  if "mask" in batch:
    labels = spec.n_layers + 1
    result["ari"] = segmentation.adjusted_rand_index(batch["mask"], instance, num_true_ids, labels)
    result["ari_fg"] = segmentation.adjusted_rand_index(batch["mask"], instance_fg,
                                                        num_true_ids, labels, background_id=0)
  return result


def decomposition_outputs(state: TrainState, images: jax.Array, *,
                          config: ml_collections.ConfigDict, stage: Stage) -> dict:
  """Eval-mode decomposition of a few images, for pictures and inference."""
  spec = model_spec(config, images.shape[1:])
  out, _ = forward(config, spec, stage, state.params, state.batch_stats, images, train=False)
  out["instance"] = jax.vmap(model_lib.layer_labels)(out["alphas"], out["occlusion"])
  out["choice"] = jnp.argmax(out["selection"], axis=-1)
  hard = (out["occlusion"] > 0.5).astype(jnp.float32)
  out["hard_reconstruction"] = jax.vmap(compose_hard)(out["background"], out["colours"],
                                                      out["alphas"], hard)
  return out


def compose_hard(background, colours, alphas, occlusion):
  """Reconstruction with the hardened occlusion (the original's segmentation pictures)."""
  slot_colours = jnp.concatenate([background[None], colours])
  slot_alphas = jnp.concatenate([jnp.ones_like(alphas[:1]), alphas])
  return compositing.compose(slot_colours, slot_alphas, compositing.with_background(occlusion))


# The loop's after-step hook: small clusters reassigned every check_cluster_every_steps.
after_step_function = reassignment.after_step_hook(reassign_clusters, reassign_allowed)
