"""DeepCluster on the shared loop: features -> PCA-whitening -> k-means -> pseudo-labels.

Each epoch, in the original's order (the epoch-start hook, then the loop's steps):
  1. features of every image: eval mode, un-augmented, the fc7 output before its ReLU;
     the PCA statistics are accumulated in the same pass;
  2. PCA-whitening (faiss's conventions) and L2 normalisation;
  3. faiss-style k-means (seed from (seed, epoch)) -> one cluster per image, or power
     iteration clustering (``config.cluster.method = "pic"``, the original's
     ``--clustering PIC``) of the k-nearest-neighbour graph, as many clusters as it
     finds (at most config.cluster.k, the top layer's width; the logits of the unused
     columns are masked out, which equals the original's narrower top layer);
  4. the uniform-over-clusters sampler draws N images with their compacted labels;
  5. a new top layer Linear(F, k), N(0, 0.01^2), and its momentum-free SGD; the body's
     SGD momentum persists;
  6. one pass over the draws with random resized crops.
With ``config.cluster.reassign_epochs = r`` (the original's ``--reassign``) steps 1-5
run every r epochs only: the sampler then draws r N images at once (as the original's
``UnifLabelSampler(r N)``) and the next r epochs are its consecutive slices, under the
same pseudo-labels and top layer. (The original counts one epoch per clustering, so its
``--epochs E --reassign r`` is ``num_epochs = E r`` here.)
Logged at each clustering: NMI with the previous clustering and with the labels
(geometric normalisation, the paper's), the k-means loss or PIC's number of clusters,
cluster sizes, and the time of each phase; the assignment itself is saved in the
workdir (`dti_jax.methods.deepcluster.assignments`). The state holds the current
clustering (assignment, whitening and centroids, with which new images are assigned)
and top layer, so a run resumed in the middle of an epoch redraws the same sampler order
without clustering again. Every random draw is a function of config.seed: the network's
initial weights of key(seed), the top layers and the crops of fold_in(key(seed), 1) with
the epoch (and the step within it).
"""

import functools
import time
from typing import Any, Iterator

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from data_pipelines import cluster_sampler, streaming
from dti_jax.methods.deepcluster import assignments as assignments_lib
from dti_jax.methods.deepcluster import clustering, network as network_lib
from dti_jax.methods.deepcluster import data as deepcluster_data
from dti_jax.ops import pca as pca_lib
from dti_jax.run import partition, sources

BATCH_KEYS = ("image", "label")
STAGE = "deepcluster"     # one stage: the step function never changes
CLUSTER_METHODS = ("kmeans", "pic")


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any            # the body's SGD momentum (persists across epochs)
  head: Any                 # this epoch's top layer {"kernel" [F, k], "bias" [k]}
  assignment: jax.Array     # [N] int32, this epoch's clustering (-1 before the first)
  whitening: Any            # this epoch's PCA-whitening (mean, projection, eigenvalues)
  centroids: jax.Array      # [k, pca_dim] this epoch's k-means centroids


def train_key(config: ml_collections.ConfigDict) -> jax.Array:
  return jax.random.fold_in(jax.random.key(config.seed), 1)


def validate(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> None:
  del image_shape
  c = config.cluster
  if c.get("method", "kmeans") not in CLUSTER_METHODS:
    raise ValueError(f"config.cluster.method={c.method!r} is not one of {CLUSTER_METHODS}")
  reassign = c.get("reassign_epochs", 1)
  if not isinstance(reassign, int) or reassign < 1:
    raise ValueError(f"config.cluster.reassign_epochs={reassign!r} must be an integer >= 1")
  if c.get("method") == "pic":
    p = c.pic
    if p.neighbours < 1 or p.sigma <= 0 or not 0 < p.alpha <= 1 or p.iterations < 1:
      raise ValueError(f"config.cluster.pic={p.to_dict()} needs neighbours >= 1, sigma > 0, "
                       "0 < alpha <= 1 and iterations >= 1")
  network_lib.create_network(config)


def clusters_every(config: ml_collections.ConfigDict) -> int:
  """r: the epochs that share one clustering."""
  return config.cluster.get("reassign_epochs", 1)


def init_arrays(config: ml_collections.ConfigDict, source) -> dict[str, Any]:
  """The network's initial variables (from key(seed), outside jit) and an empty
  clustering; a one-line ValueError when k does not fit the data."""
  num_images = source.num_examples
  if config.cluster.k < 2 or config.cluster.k >= num_images:
    raise ValueError(f"config.cluster.k={config.cluster.k} must be in [2, {num_images}) "
                     f"for {num_images} images")
  shape = sources.image_shape(config, source)
  variables = network_lib.create_network(config).init(
      jax.random.key(config.seed), jnp.zeros((1, *shape)), False)
  return {"variables": variables, "assignment": np.full((num_images,), -1, np.int32)}


def create_state(config: ml_collections.ConfigDict, key: jax.Array,
                 arrays: dict[str, Any]) -> TrainState:
  del key  # the weights come from key(config.seed), see the module docstring
  params = arrays["variables"]["params"]
  width, k = config.model.feature_dim, config.cluster.k
  return TrainState(step=jnp.int32(0), params=params,
                    batch_stats=arrays["variables"]["batch_stats"],
                    opt_state=network_lib.body_optimizer(config).init(params),
                    head={"kernel": jnp.zeros((width, k)), "bias": jnp.zeros((k,))},
                    assignment=jnp.asarray(arrays["assignment"]),
                    whitening=pca_lib.PCAWhitening(
                        jnp.zeros((width,)), jnp.zeros((width, config.cluster.pca_dim)),
                        jnp.zeros((config.cluster.pca_dim,))),
                    centroids=jnp.zeros((k, config.cluster.pca_dim)))


def stage_at(config: ml_collections.ConfigDict, step: int, steps_per_epoch: int) -> str:
  del config, step, steps_per_epoch
  return STAGE


def describe_stage(config: ml_collections.ConfigDict, stage: str) -> str:
  del stage
  every = clusters_every(config)
  when = "every epoch" if every == 1 else f"every {every} epochs"
  how = (f"power iteration clustering (at most {config.cluster.k} clusters)"
         if config.cluster.get("method") == "pic" else f"k-means into {config.cluster.k} clusters")
  return f"{how} {when}, {config.model.arch} trained on the pseudo-labels"


def stage_scalars(stage: str) -> dict[str, float]:
  del stage
  return {}


def stage_meta(stage: str) -> dict[str, Any]:
  del stage
  return {}


def train_step(state: TrainState, batch: dict[str, jax.Array], *,
               config: ml_collections.ConfigDict, network: Any, augment_on_device: bool,
               steps_per_epoch: int) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on pseudo-labelled images (uint8 [B, H, W, C], labels [B])."""
  epoch, index = jnp.divmod(state.step, steps_per_epoch)
  key = jax.random.fold_in(jax.random.fold_in(train_key(config), epoch), index)
  augment_key, dropout_key = jax.random.split(key)
  images = network_lib.normalize(config, batch["image"])
  if augment_on_device:  # in-memory data; streamed images are cropped by tf.data
    crop_key, flip_key = jax.random.split(augment_key)
    images = network_lib.random_resized_crop(crop_key, images,
                                             tuple(config.train.crop_scale))
    if config.train.flip:
      flip = jax.random.bernoulli(flip_key, 0.5, (images.shape[0], 1, 1, 1))
      images = jnp.where(flip, images[:, :, ::-1], images)

  def loss_fn(params, head):
    features, updates = network.apply(
        {"params": params, "batch_stats": state.batch_stats}, images, True,
        rngs={"dropout": dropout_key}, mutable=["batch_stats"])
    logits = jax.nn.relu(features) @ head["kernel"] + head["bias"]
    if config.cluster.get("method") == "pic":  # a top layer as wide as PIC's clusters
      used = jnp.arange(logits.shape[-1]) <= jnp.max(state.assignment)
      logits = jnp.where(used, logits, -jnp.inf)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return loss, updates["batch_stats"]

  (loss, batch_stats), (grads, head_grads) = jax.value_and_grad(
      loss_fn, argnums=(0, 1), has_aux=True)(state.params, state.head)
  updates, opt_state = network_lib.body_optimizer(config).update(
      grads, state.opt_state, state.params)
  state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                        batch_stats=batch_stats, opt_state=opt_state,
                        head=network_lib.head_update(config, state.head, head_grads))
  return state, {"loss": loss, "learning_rate": jnp.float32(config.train.lr)}


def step_function(config: ml_collections.ConfigDict, stage: str, steps_per_epoch: int):
  del stage
  streamed = config.data.name in streaming.STREAMING_NAMES
  return functools.partial(train_step, config=config,
                           network=network_lib.create_network(config),
                           augment_on_device=not streamed, steps_per_epoch=steps_per_epoch)


def epoch_start_function(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                         source: Any, workdir: str):
  """The epoch-start hook (`dti_jax.run.method.EpochStartHook`): clustering (saved in
  ``workdir``), top layer and sampler every r epochs; in the middle of an epoch, and in
  the epochs between two clusterings, only the sampler's order."""
  extractor = clustering.FeatureExtractor(config, mesh)
  repl = partition.replicated(mesh)
  every = clusters_every(config)
  sampled = {}    # first epoch of the current clustering -> its draw of every * N images

  def epoch_start(state: TrainState, epoch: int, start_batch: int
                  ) -> tuple[TrainState, Iterator[dict[str, np.ndarray]], dict, str]:
    scalars, message = {}, ""
    first = epoch - epoch % every        # the epoch that made the current clustering
    if start_batch == 0 and epoch == first:
      state, scalars = _cluster(config, extractor, source, state, epoch, repl)
      message = f"epoch {epoch + 1}/{config.train.num_epochs} " + " ".join(
          f"{name.split('/')[-1]} {value:.4g}" for name, value in scalars.items()
          if np.ndim(value) == 0)
    if first not in sampled:  # drawn once for the r epochs that share the clustering
      assignment = np.asarray(partition.to_host(state.assignment))
      if start_batch == 0 and epoch == first and jax.process_index() == 0:
        assignments_lib.save_epoch(workdir, epoch, assignment)
      sampled.clear()
      sampled[first] = cluster_sampler.uniform_over_clusters(
          assignment, config.cluster.k, source.num_examples * every,
          np.random.default_rng([config.seed, first]), config.sampler.compat_index_bug)
    draws, draw_labels = sampled[first]
    count = source.num_examples
    part = slice((epoch - first) * count, (epoch - first + 1) * count)
    batches = deepcluster_data.training_batches(config, source, draws[part],
                                                draw_labels[part], epoch, start_batch)
    return state, batches, scalars, message

  return epoch_start


def _cluster(config, extractor, source, state, epoch, repl):
  """Clusters the current features; returns the state with the epoch's clustering and a
  new top layer, and the epoch's scalars."""
  times = {}
  start = time.perf_counter()
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  features = extractor.feature_pass(
      variables, deepcluster_data.ordered_image_batches(config, source), source.num_examples)
  labels = features.labels if np.all(features.labels >= 0) else None
  times["features"] = time.perf_counter() - start
  start = time.perf_counter()
  points, whitening = clustering.whitened_points(config, extractor, features)
  points = jax.block_until_ready(points)
  del features  # the full-width features leave the devices before training
  times["pca"] = time.perf_counter() - start
  start = time.perf_counter()
  if config.cluster.get("method") == "pic":
    assignment, count, centroids = clustering.pic_assignment(config, extractor, points)
    scalars = {"train/pic_clusters": count}
    times["pic"] = time.perf_counter() - start
  else:
    assignment, kmeans_loss, centroids = clustering.kmeans_assignment(
        config, extractor, points, config.seed * 1000 + epoch)
    scalars = {"train/kmeans_loss": kmeans_loss}
    times["kmeans"] = time.perf_counter() - start
  previous = np.asarray(partition.to_host(state.assignment))
  sizes = np.bincount(assignment, minlength=config.cluster.k)
  scalars.update({"train/non_empty_clusters": int(np.count_nonzero(sizes)),
                  **{f"time/{name}_s": value for name, value in times.items()}})
  if previous[0] >= 0:
    scalars["train/nmi_previous_epoch"] = clustering.nmi(assignment, previous)
  if labels is not None:
    scalars["train/nmi_labels"] = clustering.nmi(assignment, labels)
  scalars["train/cluster_sizes"] = sizes
  head = network_lib.new_head(jax.random.fold_in(train_key(config), epoch),
                              config.model.feature_dim, config.cluster.k)
  state = state.replace(head=jax.device_put(head, repl),
                        assignment=jax.device_put(jnp.asarray(assignment), repl),
                        whitening=whitening, centroids=jax.device_put(centroids, repl))
  return state, scalars
