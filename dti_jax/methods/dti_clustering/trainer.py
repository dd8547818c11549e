"""DTI-KMeans and DTI-GMM: state, train step, reassignment and evaluation (pure functions).

Parameter groups follow the original's Adam semantics: the cluster parameters
(prototypes; for the GMM also sigma maps and mixing logits) form one group, the encoder
and the head bank of each transformation module form the others. Every group has its
own Adam state, so a group that is not yet active (encoder during the identity phase,
heads of modules the curriculum has not reached) is neither updated nor decayed, and
its bias-correction count starts when it first receives a gradient, as PyTorch's
per-parameter step counts do. Only the transformer groups get the coupled L2 term.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dti_jax import transforms
from dti_jax.methods.dti_clustering import model as model_lib
from dti_jax.nets import resnet
from dti_jax.ops import gaussian, reassignment
from dti_jax.run import schedules

BATCH_KEYS = ("image",)  # what a train step reads of a batch
MODELS = ("dtikmeans", "dtigmm")
CLUSTER_GROUP = "clusters"
ENCODER_GROUP = "encoder_net"


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; the data position and curriculum follow from step."""

  step: jax.Array                  # int32 [], global iteration count
  params: dict[str, Any]           # {'clusters': {...}, 'predictor': flax params}
  batch_stats: dict[str, Any]
  opt_states: dict[str, Any]       # group name -> optax state
  proportion_sum: jax.Array        # [K] sum of per-batch assignment fractions since the last check
  proportion_batches: jax.Array    # [] number of batches in that sum


def validate(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> None:
  """Raises a one-line ValueError naming the offending config key."""
  m = config.model
  if m.name not in MODELS:
    raise ValueError(f"config.model.name={m.name!r} is not one of {MODELS}")
  if m.n_prototypes < 1:
    raise ValueError(f"config.model.n_prototypes={m.n_prototypes} must be >= 1")
  modules = transforms.parse_sequence(m.transformation_sequence)
  curriculum = tuple(config.train.curriculum_epochs)
  if curriculum and len(curriculum) != len(modules) - 1:
    raise ValueError(f"config.train.curriculum_epochs={curriculum} needs {len(modules) - 1} "
                     f"milestones for sequence {m.transformation_sequence!r} (or () for all at once)")
  if list(curriculum) != sorted(curriculum):
    raise ValueError(f"config.train.curriculum_epochs={curriculum} must be non-decreasing")
  if m.padding_mode not in ("border", "zeros"):
    raise ValueError(f"config.model.padding_mode={m.padding_mode!r} is not 'border' or 'zeros'")
  if m.init_type != "sample":
    raise ValueError(f"config.model.init_type={m.init_type!r}: only 'sample' is implemented")
  channels = image_shape[-1]
  if "morpho" in modules and channels != 1:
    raise ValueError(f"config.model.transformation_sequence uses 'morpho', which the original "
                     f"defines for 1 channel only; the data has {channels}")
  resnet.check_input_size(m.encoder, image_shape)


def transform_spec(config: ml_collections.ConfigDict, channels: int) -> transforms.TransformSpec:
  m = config.model
  return transforms.TransformSpec(
      modules=transforms.parse_sequence(m.transformation_sequence), channels=channels,
      grid_size=m.grid_size, kernel_size=m.kernel_size, padding_mode=m.padding_mode)


def create_predictor(config: ml_collections.ConfigDict, channels: int):
  return model_lib.TransformationPredictor(
      spec=transform_spec(config, channels), encoder=config.model.encoder,
      n_prototypes=config.model.n_prototypes, mixed_precision=config.mixed_precision)


def stage_at(config: ml_collections.ConfigDict, step: int, steps_per_epoch: int) -> int:
  """Number of active modules at a step: module j switches on once m_j epochs are done."""
  n_modules = len(transforms.parse_sequence(config.model.transformation_sequence))
  curriculum = tuple(config.train.curriculum_epochs)
  if not curriculum:
    return n_modules
  epochs_done = step // steps_per_epoch
  return 1 + sum(epochs_done >= milestone for milestone in curriculum)


def describe_stage(config: ml_collections.ConfigDict, n_active: int) -> str:
  active = config.model.transformation_sequence.split("_")[:n_active]
  return f"curriculum stage {n_active}, active: {'+'.join(active)}"


def stage_scalars(n_active: int) -> dict[str, int]:
  return {"train/active_modules": n_active}


def stage_meta(n_active: int) -> dict[str, int]:
  """What inference needs to rebuild the stage from a checkpoint."""
  return {"n_active": n_active}


def reassign_allowed(n_active: int) -> bool:  # pylint: disable=unused-argument
  return True


def learning_rate(config: ml_collections.ConfigDict, step: jax.Array,
                  steps_per_epoch: int) -> jax.Array:
  """MultiStepLR stepped per epoch: lr x factor once each decay epoch is done."""
  o = config.optim
  milestones = schedules.epochs_to_steps(o.lr_decay_epochs, steps_per_epoch)
  return schedules.step_decay(o.lr, milestones, o.lr_decay_factor)(step)


def group_optimizer(config: ml_collections.ConfigDict, group: str) -> optax.GradientTransformation:
  """Adam without the learning rate; coupled L2 (added to the gradient) on transformer groups."""
  o = config.optim
  adam = optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps)
  if group == CLUSTER_GROUP or o.weight_decay == 0:
    return adam
  return optax.chain(optax.add_decayed_weights(o.weight_decay), adam)


def create_state(config: ml_collections.ConfigDict, key: jax.Array,
                 initial_prototypes: jax.Array) -> TrainState:
  """Initial state; prototypes start as K training images ([K, H, W, C] in [0, 1])."""
  k, height, width, channels = initial_prototypes.shape
  predictor = create_predictor(config, channels)
  dummy = jnp.zeros((1, height, width, channels), jnp.float32)
  variables = predictor.init(key, dummy, len(predictor.spec.modules), train=False)
  clusters = {"prototypes": initial_prototypes.astype(jnp.float32)}
  if config.model.name == "dtigmm":
    clusters["sigmas"] = jnp.full_like(clusters["prototypes"], config.model.sigma_init)
    clusters["mixing_logits"] = jnp.ones((k,), jnp.float32)
  # An identity-only sequence has no heads, hence no encoder: plain gradient k-means.
  params = {CLUSTER_GROUP: clusters, "predictor": dict(variables.get("params", {}))}
  opt_states = {group: group_optimizer(config, group).init(tree)
                for group, tree in _groups(params).items()}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=dict(variables.get("batch_stats", {})), opt_states=opt_states,
                    proportion_sum=jnp.zeros((k,), jnp.float32),
                    proportion_batches=jnp.zeros((), jnp.float32))


def _groups(params: dict[str, Any]) -> dict[str, Any]:
  """Flat view {group: subtree}: the clusters and each top-level predictor submodule."""
  return {CLUSTER_GROUP: params[CLUSTER_GROUP], **params["predictor"]}


def _ungroup(groups: dict[str, Any]) -> dict[str, Any]:
  return {CLUSTER_GROUP: groups[CLUSTER_GROUP],
          "predictor": {name: tree for name, tree in groups.items() if name != CLUSTER_GROUP}}


def active_groups(spec: transforms.TransformSpec, n_active: int) -> tuple[str, ...]:
  """Groups that receive gradients in a curriculum stage."""
  heads = [f"head_{name}" for name, size in
           zip(spec.modules[:n_active], spec.param_sizes()[:n_active]) if size > 0]
  return (CLUSTER_GROUP,) + ((ENCODER_GROUP,) + tuple(heads) if heads else ())


def _pixel_weights(config, height, width):
  if not config.model.gaussian_weights:
    return None
  return jnp.asarray(gaussian.gaussian_map(height, width, config.model.gaussian_weights_std))


def forward(config: ml_collections.ConfigDict, params: dict[str, Any], batch_stats,
            images: jax.Array, n_active: int, train: bool):
  """Distances [B, K] (assignment), objective terms and reconstructions [B, K, H, W, C].

  Returns (distances, loss_terms, reconstructions, new_batch_stats). For the GMM the
  "distances" are -log N without the mixing term (assignment ignores pi, as the
  original), and loss_terms are the log-densities.
  """
  predictor = create_predictor(config, images.shape[-1])
  spec = predictor.spec
  variables = {"params": params["predictor"], "batch_stats": batch_stats}
  if train:
    module_params, updates = predictor.apply(variables, images, n_active, train=True,
                                             mutable=["batch_stats"])
    new_stats = updates.get("batch_stats", batch_stats)
  else:
    module_params = predictor.apply(variables, images, n_active, train=False)
    new_stats = batch_stats
  clusters = params[CLUSTER_GROUP]
  weights = _pixel_weights(config, *images.shape[1:3])
  recon = model_lib.reconstruct(clusters["prototypes"], module_params, spec, n_active)
  if config.model.name == "dtikmeans":
    distances = model_lib.kmeans_distances(images, recon, weights)
    return distances, distances, recon, new_stats
  sigmas = model_lib.reconstruct(clusters["sigmas"], module_params, spec, n_active,
                                 spatial_only=True)
  log_densities = model_lib.gmm_log_densities(images, recon, sigmas, config.model.var_min, weights)
  return -log_densities, log_densities, recon, new_stats


def train_step(state: TrainState, batch: dict[str, jax.Array], *,
               config: ml_collections.ConfigDict, n_active: int,
               steps_per_epoch: int) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step on the active groups. Pure: jit it once per curriculum stage."""
  images = batch["image"]
  spec = transform_spec(config, images.shape[-1])
  active = active_groups(spec, n_active)

  def loss_fn(params):
    distances, terms, _, new_stats = forward(config, params, state.batch_stats, images,
                                             n_active, train=True)
    if config.model.name == "dtikmeans":
      loss = model_lib.kmeans_loss(terms)
    else:
      loss = model_lib.gmm_loss(terms, params[CLUSTER_GROUP]["mixing_logits"])
    return loss, (distances, new_stats)

  (loss, (distances, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  lr = learning_rate(config, state.step, steps_per_epoch)
  groups, grad_groups = _groups(state.params), _groups(grads)
  new_groups, new_opt = dict(groups), dict(state.opt_states)
  for group in active:
    updates, new_opt[group] = group_optimizer(config, group).update(
        grad_groups[group], state.opt_states[group], groups[group])
    new_groups[group] = jax.tree.map(lambda p, u: p - lr * u, groups[group], updates)

  assignment = jnp.argmin(distances, axis=1)
  proportions = jnp.mean(jax.nn.one_hot(assignment, distances.shape[1]), axis=0)
  new_state = state.replace(
      step=state.step + 1, params=_ungroup(new_groups), batch_stats=new_stats,
      opt_states=new_opt, proportion_sum=state.proportion_sum + proportions,
      proportion_batches=state.proportion_batches + 1)
  metrics = {"loss": loss, "learning_rate": lr}
  return new_state, metrics


def step_function(config: ml_collections.ConfigDict, n_active: int, steps_per_epoch: int):
  return functools.partial(train_step, config=config, n_active=n_active,
                           steps_per_epoch=steps_per_epoch)


def _copy_adam_rows(opt_state, empty, source):
  """Applies copy_rows to the Adam moments of a chain."""
  return reassignment.map_adam_moments(opt_state,
                                       lambda tree: reassignment.copy_rows(tree, empty, source))


def reassign_clusters(state: TrainState, key: jax.Array, *,
                      config: ml_collections.ConfigDict) -> tuple[TrainState, jax.Array]:
  """Empty/small cluster reassignment (spec 5.4), then resets the proportion meters.

  A cluster k whose mean share since the last check is below ratio/K becomes a copy of
  the largest cluster j: prototype c_j + N(0, std^2) noise, exact copies of all of j's
  head parameters (every module, active or not) and of the Adam moments of those rows.
  If anything moved, c_j itself gets fresh noise too. Deliberate deviation: moments are
  copied, not shared by reference as in the original; the bias-correction count is the
  group's own. Returns the new state and the number of reassigned clusters.
  """
  k = state.proportion_sum.shape[0]
  shares = state.proportion_sum / jnp.maximum(state.proportion_batches, 1.0)
  threshold = config.model.empty_cluster_ratio / k
  source = jnp.argmax(shares)
  empty = shares < threshold
  any_empty = jnp.any(empty)

  clusters = dict(state.params[CLUSTER_GROUP])
  noise_key, source_key = jax.random.split(key)
  std = config.model.reassign_noise_std
  protos = clusters["prototypes"]
  copied = reassignment.copy_rows(protos, empty, source)
  noise = std * jax.random.normal(noise_key, protos.shape)
  protos = jnp.where(empty.reshape(-1, 1, 1, 1), copied + noise, protos)
  source_noise = std * jax.random.normal(source_key, protos.shape[1:])
  protos = protos.at[source].add(jnp.where(any_empty, source_noise, 0.0))
  clusters["prototypes"] = protos
  for name in ("sigmas", "mixing_logits"):
    if name in clusters:
      clusters[name] = reassignment.copy_rows(clusters[name], empty, source)

  predictor = {name: (reassignment.copy_rows(tree, empty, source) if name.startswith("head_") else tree)
               for name, tree in state.params["predictor"].items()}
  opt_states = {name: (_copy_adam_rows(opt, empty, source)
                       if name == CLUSTER_GROUP or name.startswith("head_") else opt)
                for name, opt in state.opt_states.items()}
  new_state = state.replace(
      params={CLUSTER_GROUP: clusters, "predictor": predictor}, opt_states=opt_states,
      proportion_sum=jnp.zeros_like(state.proportion_sum),
      proportion_batches=jnp.zeros_like(state.proportion_batches))
  return new_state, jnp.sum(empty)


def eval_step(state: TrainState, batch: dict[str, jax.Array], *,
              config: ml_collections.ConfigDict, n_active: int) -> dict[str, jax.Array]:
  """Assignment (arg-min, first index on ties) and min distance per image, eval-mode BN."""
  distances, _, _, _ = forward(config, state.params, state.batch_stats, batch["image"],
                               n_active, train=False)
  return {"cluster": jnp.argmin(distances, axis=1), "distance": jnp.min(distances, axis=1),
          "label": batch["label"], "valid": batch["_mask"]}


def assign(state: TrainState, images: jax.Array, *, config: ml_collections.ConfigDict,
           n_active: int) -> dict[str, jax.Array]:
  """Cluster, distance and the assigned prototype warped to each image ([B, H, W, C])."""
  distances, _, recon, _ = forward(config, state.params, state.batch_stats, images, n_active,
                                   train=False)
  cluster = jnp.argmin(distances, axis=1)
  return {"cluster": cluster, "distance": jnp.min(distances, axis=1),
          "reconstruction": jnp.take_along_axis(
              recon, cluster[:, None, None, None, None], axis=1)[:, 0]}


def reconstructions(state: TrainState, images: jax.Array, *,
                    config: ml_collections.ConfigDict, n_active: int) -> jax.Array:
  """Every prototype warped to each image, [B, K, H, W, C] (for the image summaries)."""
  _, _, recon, _ = forward(config, state.params, state.batch_stats, images, n_active,
                           train=False)
  return recon


def init_arrays(config: ml_collections.ConfigDict, source) -> np.ndarray:
  """The initial prototypes (``create_state``'s array argument)."""
  return initial_prototypes(source.images, config.model.n_prototypes, config.seed)


def initial_prototypes(images_uint8: np.ndarray, n_prototypes: int, seed: int) -> np.ndarray:
  """init_type 'sample': K training images drawn with replacement, scaled to [0, 1]."""
  rng = np.random.default_rng(seed)
  indices = rng.integers(0, len(images_uint8), size=n_prototypes)
  return images_uint8[indices].astype(np.float32) / 255.0


# The loop's after-step hook: small clusters reassigned every check_cluster_every_steps.
after_step_function = reassignment.after_step_hook(reassign_clusters, reassign_allowed)
