"""Unsupervised Part Discovery: state, optimiser and the pure train step for the shared loop.

One step (spec 4-6): two independent colour jitters of the batch; branch 1 segments
jitter 1, and the feature, visual-consistency and contrastive losses read its soft
assignment; branch 2 segments the randomly TPS-warped jitter 2, and the equivariance
loss compares it with the warped, detached logits of branch 1. Both forwards update the
BatchNorm statistics (batch statistics in training, as the original's train mode). The
gradient of the weighted sum is clipped to global norm 5 (frozen BN gamma/beta
excluded: their gradient is zeroed first, as PyTorch has none) and applied by SGD with
momentum and weight decay, the ASPP head at 10x the poly-decayed rate (or, for the
toy benchmark, Adam). Per-step randomness is fold_in(key, step).
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dti_jax.methods.unsup_parts import weights as unsup_parts_weights
from dti_jax.methods.unsup_parts import losses as part_losses
from dti_jax.methods.unsup_parts import model as model_lib
from dti_jax.methods.unsup_parts import deeplab_resnet, random_vgg, vgg19_features
from dti_jax.methods.unsup_parts.lab import rgb_to_lab
from dti_jax.methods.unsup_parts import color_jitter, equivariance
from dti_jax.run import schedules

Stage = str
BATCH_KEYS = ("image", "mask")
STANDARDIZER_IMAGES = 64


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; the data position follows from step."""

  step: jax.Array
  params: dict[str, Any]
  batch_stats: dict[str, Any]
  opt_state: Any
  perceptual: dict[str, Any]     # the frozen phi (weights, standardiser): constants
  key: jax.Array


def validate(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> None:
  """One-line ValueError naming the offending config key (before anything is written)."""
  if len(image_shape) != 3 or image_shape[-1] != 3:
    raise ValueError(f"config.data.name={config.data.name!r}: part discovery needs RGB "
                     f"images, the data has shape {tuple(image_shape)}")
  model_lib.create_segmenter(config.model)
  if config.perceptual.kind not in model_lib.PERCEPTUAL:
    raise ValueError(f"config.perceptual.kind={config.perceptual.kind!r} is not one of "
                     f"{model_lib.PERCEPTUAL}")
  if config.optim.kind not in ("sgd", "adam"):
    raise ValueError(f"config.optim.kind={config.optim.kind!r} is not 'sgd' or 'adam'")
  if config.loss.feature_reduction not in ("sum", "mean"):
    raise ValueError(f"config.loss.feature_reduction={config.loss.feature_reduction!r} "
                     "is not 'sum' or 'mean'")
  if config.train.batch_size < 2:
    raise ValueError(f"config.train.batch_size={config.train.batch_size}: the contrastive "
                     "loss needs at least 2 images per batch")
  if config.model.backbone_weights:
    unsup_parts_weights.check_segmenter_file(
        config.model.backbone_weights, _abstract_variables(config, image_shape),
        "config.model.backbone_weights")
  elif not config.model.allow_random_init:
    raise ValueError("config.model.backbone_weights is empty: give the converted ImageNet "
                     "ResNet-50 (python -m scripts.convert_torch_weights --kind="
                     "resnet50_caffe ...) or set config.model.allow_random_init=True")
  if config.perceptual.kind == "vgg19":
    unsup_parts_weights.check_vgg19_file(config.perceptual.weights, "config.perceptual.weights")


def _abstract_variables(config, image_shape):
  side = image_shape[0]
  return jax.eval_shape(lambda: model_lib.create_segmenter(config.model).init(
      jax.random.key(0), jnp.zeros((1, side, image_shape[1], 3)), train=False))


def stage_at(config, step: int, steps_per_epoch: int) -> Stage:
  del config, step, steps_per_epoch
  return "train"


def describe_stage(config, stage: Stage) -> str:
  del config, stage
  return "training (feature, visual-consistency, contrastive and equivariance losses)"


def stage_scalars(stage: Stage) -> dict[str, int]:
  del stage
  return {}


def stage_meta(stage: Stage) -> dict[str, Any]:
  return {"stage": stage}


def learning_rate(config: ml_collections.ConfigDict, step) -> jax.Array:
  """Poly decay lr (1 - step / poly_total_steps)^power (fixed horizon, spec 6), or constant."""
  o = config.optim
  if o.schedule == "constant":
    return jnp.asarray(o.lr, jnp.float32)
  return schedules.poly_decay(o.lr, o.poly_total_steps, o.poly_power)(step)


def optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Global-norm clip, then per group: backbone at lr, head at head_lr_multiplier x lr,
  frozen BN gamma/beta untouched (no decay either)."""
  o = config.optim

  def group(multiplier: float) -> optax.GradientTransformation:
    schedule = lambda step: multiplier * learning_rate(config, step)
    if o.kind == "adam":
      return optax.adam(schedule)
    return optax.chain(optax.add_decayed_weights(o.weight_decay),
                       optax.sgd(schedule, momentum=o.momentum))

  return optax.chain(
      optax.clip_by_global_norm(o.clip_norm),
      optax.multi_transform({"backbone": group(1.0), "head": group(o.head_lr_multiplier),
                             "frozen": optax.set_to_zero()},
                            deeplab_resnet.param_labels))


def init_arrays(config: ml_collections.ConfigDict, source) -> dict[str, np.ndarray]:
  """Host arrays create_state needs: the first training images and masks (the random
  phi's standardiser), and the converted weight files named by the config."""
  count = min(STANDARDIZER_IMAGES, source.num_examples)
  arrays = {"images": source.images[:count].astype(np.float32) / 255.0,
            "masks": (source.masks[:count, ..., None] > 0).astype(np.float32)}
  if config.model.backbone_weights:
    arrays["segmenter"] = unsup_parts_weights.read_flat(config.model.backbone_weights)
  if config.perceptual.kind == "vgg19":
    arrays["vgg19"] = unsup_parts_weights.load_vgg19(config.perceptual.weights)
  return arrays


def create_perceptual(config: ml_collections.ConfigDict, arrays: dict[str, Any]
                      ) -> dict[str, Any]:
  p = config.perceptual
  if p.kind == "vgg19":
    return {"params": arrays["vgg19"]}
  perceptual = {"params": random_vgg.init_params(p.seed)}
  features = model_lib.raw_features(perceptual, arrays["images"], p.kind,
                                    tuple(p.tap_weights))
  perceptual["standardizer"] = model_lib.standardizer(features, arrays["masks"])
  return perceptual


def create_state(config: ml_collections.ConfigDict, key: jax.Array,
                 arrays: dict[str, Any]) -> TrainState:
  params_key, noise_key = jax.random.split(key)
  images = arrays["images"]
  variables = model_lib.create_segmenter(config.model).init(
      params_key, jnp.zeros((1,) + images.shape[1:]), train=False)
  if "segmenter" in arrays:
    variables = unsup_parts_weights.merge_flat(variables, arrays["segmenter"])
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}),
                    opt_state=optimizer(config).init(params),
                    perceptual=create_perceptual(config, arrays), key=noise_key)


def augment(key: jax.Array, images: jax.Array, masks: jax.Array, *,
            config: ml_collections.ConfigDict) -> tuple[jax.Array, ...]:
  """(clean images, jitter 1, jitter 2, masks), each image flipped left-right with p=0.5
  when ``config.data.random_flip`` (CUB, DeepFashion)."""
  flip_key, jitter1_key, jitter2_key = jax.random.split(key, 3)
  if config.data.get("random_flip", False):
    flip = jax.random.bernoulli(flip_key, 0.5, (images.shape[0], 1, 1, 1))
    images = jnp.where(flip, images[:, :, ::-1], images)
    masks = jnp.where(flip, masks[:, :, ::-1], masks)
  jitter = dict(config.jitter)
  return (images, color_jitter.color_jitter_batch(jitter1_key, images, **jitter),
          color_jitter.color_jitter_batch(jitter2_key, images, **jitter), masks)


def losses(params, state: TrainState, images, jitter1, jitter2, masks, grids, key, *,
           config: ml_collections.ConfigDict):
  """(weighted total, (unweighted terms, batch stats after both forwards))."""
  model = model_lib.create_segmenter(config.model)
  kind, l = config.model.segmenter, config.loss
  logits, batch_stats = model_lib.part_logits(
      model, {"params": params, "batch_stats": state.batch_stats},
      model_lib.segmenter_input(jitter1, kind), train=True)
  assignment = jax.nn.softmax(logits, axis=-1) * masks
  features = model_lib.perceptual_features(state.perceptual, images, masks,
                                           kind=config.perceptual.kind,
                                           tap_weights=tuple(config.perceptual.tap_weights))
  lab = rgb_to_lab(images, xp=jnp) * l.lab_scale
  descriptors = part_losses.part_means(assignment, features, 1e-7)
  warped_input = equivariance.warp(model_lib.segmenter_input(jitter2, kind), grids)
  warped_logits, batch_stats = model_lib.part_logits(
      model, {"params": params, "batch_stats": batch_stats}, warped_input, train=True)
  terms = {
      "feature": part_losses.feature_loss(assignment, features, masks,
                                          l.feature_reduction),
      "visual": part_losses.visual_consistency_loss(assignment, lab, masks),
      "contrastive": part_losses.contrastive_loss(descriptors, key, l.temperature),
      "equivariance": part_losses.equivariance_loss(
          equivariance.warp(logits, grids), warped_logits, equivariance.warp(masks, grids)),
  }
  if l.w_concentration:
    terms["concentration"] = part_losses.concentration_loss(assignment)
  total = (l.w_feature * terms["feature"] + l.w_visual * terms["visual"]
           + l.w_contrastive * terms["contrastive"] + l.w_equiv * terms["equivariance"]
           + l.w_concentration * terms.get("concentration", 0.0))
  return total, (terms, batch_stats)


def warp_grids(key: jax.Array, batch: int, height: int, width: int,
               config: ml_collections.ConfigDict) -> jax.Array:
  w = config.warp
  return equivariance.random_grids(key, batch, height, width, sigma=w.sigma,
                                   max_rotation_degrees=w.max_rotation_degrees,
                                   scale_range=tuple(w.scale_range),
                                   max_translation=w.max_translation)


def train_step(state: TrainState, batch: dict[str, jax.Array], *,
               config: ml_collections.ConfigDict) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimiser step on a global batch {image [B,H,W,3] in [0,1], mask [B,H,W] int}."""
  key = jax.random.fold_in(state.key, state.step)
  augment_key, warp_key, contrastive_key = jax.random.split(key, 3)
  masks = (batch["mask"] > 0).astype(jnp.float32)[..., None]
  images, jitter1, jitter2, masks = augment(augment_key, batch["image"], masks,
                                            config=config)
  batch_size, height, width = images.shape[:3]
  grids = warp_grids(warp_key, batch_size, height, width, config)
  grad_fn = jax.value_and_grad(functools.partial(losses, config=config), has_aux=True)
  (total, (terms, batch_stats)), grads = grad_fn(state.params, state, images, jitter1,
                                                 jitter2, masks, grids, contrastive_key)
  grads = deeplab_resnet.zero_frozen_gradients(grads)  # PyTorch computes none: not clipped
  updates, opt_state = optimizer(config).update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": total, **{f"loss_{name}": value for name, value in terms.items()},
             "grad_norm": optax.tree.norm(grads),
             "learning_rate": learning_rate(config, state.step)}
  return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                       opt_state=opt_state), metrics


def step_function(config, stage: Stage, steps_per_epoch: int):
  del stage, steps_per_epoch
  return functools.partial(train_step, config=config)


def predict_logits(state: TrainState, images: jax.Array, *,
                   config: ml_collections.ConfigDict) -> jax.Array:
  """Eval-mode logits [B, H, W, K] at the image side (aligned corners), running BN stats."""
  model = model_lib.create_segmenter(config.model)
  logits, _ = model_lib.part_logits(
      model, {"params": state.params, "batch_stats": state.batch_stats},
      model_lib.segmenter_input(images, config.model.segmenter), train=False)
  return logits


def abstract_state(config: ml_collections.ConfigDict) -> TrainState:
  """Shapes of a TrainState (the template to restore a checkpoint into), read no file."""
  arrays = {"images": np.zeros((1, 64, 64, 3), np.float32),
            "masks": np.ones((1, 64, 64, 1), np.float32)}
  if config.perceptual.kind == "vgg19":
    arrays["vgg19"] = {name: {"kernel": np.zeros(kernel, np.float32),
                              "bias": np.zeros(bias, np.float32)}
                       for name, (kernel, bias) in vgg19_features.expected_shapes().items()}
  return jax.eval_shape(lambda: create_state(config, jax.random.key(0), arrays))


def segmenter_state(config: ml_collections.ConfigDict, weights: str) -> TrainState:
  """A state holding only the segmenter, from a converted .npz (e.g. the released
  part-discovery checkpoints; scripts/convert_torch_weights.py --kind=unsup_parts).
  Every key and shape is checked, and the ASPP head must be in the file."""
  variables = model_lib.create_segmenter(config.model).init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)
  flat = unsup_parts_weights.read_flat(weights, "--weights")
  if not any(key.startswith(("params/layer5/", "params/head/")) for key in flat):
    raise ValueError(f"--weights={weights!r} has no part head (layer5): convert a trained "
                     "part-discovery checkpoint (--kind=unsup_parts), not a backbone")
  variables = unsup_parts_weights.merge_flat(variables, flat, f"--weights={weights!r}")
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                    batch_stats=variables.get("batch_stats", {}), opt_state=None,
                    perceptual={}, key=jax.random.key(0))
