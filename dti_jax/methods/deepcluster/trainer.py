"""DeepCluster's per-epoch loop: features -> PCA-whitening -> k-means -> pseudo-label training.

Each epoch, in the original's order:
  1. features of every image: eval mode, un-augmented, the fc7 output before its ReLU;
     the PCA statistics are accumulated in the same pass;
  2. PCA-whitening (faiss's conventions) and L2 normalisation;
  3. faiss-style k-means (seed from (seed, epoch)) -> one cluster per image;
  4. the uniform-over-clusters sampler draws N images with their compacted labels;
  5. a new top layer Linear(F, k), N(0, 0.01^2), and its momentum-free SGD; the body's
     SGD momentum persists;
  6. one pass over the draws with random resized crops; logged: loss, NMI with the
     previous epoch's clustering and with the labels (geometric normalisation, the
     paper's), cluster sizes, and the time of each phase.
The checkpoint after each epoch holds the train state and the epoch's clustering, so a
rerun resumes at the next epoch with the same data order (every RNG is a function of
(seed, epoch)).
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any, Iterator

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from sklearn import linear_model, metrics as sk_metrics, preprocessing

import data_pipelines
from data_pipelines import cluster_sampler, streaming
from dti_jax.nets import alexnet, vgg
from dti_jax.ops import kmeans as kmeans_lib
from dti_jax.ops import pca as pca_lib
from dti_jax.methods.deepcluster import data as deepcluster_data
from dti_jax.run import checkpointing, partition, reporting
from dti_jax.run import workdir as workdir_lib
from dti_jax.run import scores as scores_lib

ARCHS = {"mini_alexnet": alexnet.MiniAlexNet, "alexnet": alexnet.AlexNet, "vgg16": vgg.VGG16}


@flax.struct.dataclass
class TrainState:
  epoch: jax.Array          # epochs completed
  params: Any
  batch_stats: Any
  opt_state: Any            # the body's SGD momentum (persists across epochs)
  assignment: jax.Array     # [N] int32, the last epoch's clustering (-1 before the first)


def create_network(config: ml_collections.ConfigDict):
  if config.model.arch not in ARCHS:
    raise ValueError(f"config.model.arch={config.model.arch!r} is not one of {sorted(ARCHS)}")
  width = {"mini_alexnet": "width"}.get(config.model.arch, "fc_width")
  return ARCHS[config.model.arch](sobel=config.model.sobel,
                                  **{width: config.model.feature_dim})


def body_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """PyTorch SGD: coupled L2 on every parameter, then momentum, constant lr."""
  t = config.train
  return optax.chain(optax.add_decayed_weights(t.weight_decay),
                     optax.sgd(t.lr, momentum=t.momentum))


def head_update(config: ml_collections.ConfigDict, head: dict, grads: dict) -> dict:
  """The top layer's SGD without momentum (no state): p -= lr * (g + wd * p)."""
  t = config.train
  return jax.tree.map(lambda p, g: p - t.lr * (g + t.weight_decay * p), head, grads)


def new_head(key: jax.Array, features: int, k: int) -> dict:
  return {"kernel": 0.01 * jax.random.normal(key, (features, k)), "bias": jnp.zeros((k,))}


def normalize(config: ml_collections.ConfigDict, images_uint8: jax.Array) -> jax.Array:
  """x / 255, then (x - mean) / std per channel."""
  mean, std = (jnp.asarray(v, jnp.float32) for v in (config.data.mean, config.data.std))
  return (images_uint8.astype(jnp.float32) / 255.0 - mean) / std


def random_resized_crop(key: jax.Array, images: jax.Array, scale: tuple[float, float],
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> jax.Array:
  """Per-image random crop of area fraction in ``scale`` and aspect ratio in ``ratio``
  (log-uniform), resized back to the input size with nearest-pixel sampling.

  torchvision retries 10 times when the box does not fit; here the box is clipped to
  the image instead.
  """
  batch, height, width, _ = images.shape
  k_area, k_ratio, k_y, k_x = jax.random.split(key, 4)
  area = height * width * jax.random.uniform(k_area, (batch,), minval=scale[0],
                                             maxval=scale[1])
  aspect = jnp.exp(jax.random.uniform(k_ratio, (batch,), minval=np.log(ratio[0]),
                                      maxval=np.log(ratio[1])))
  box_w = jnp.clip(jnp.sqrt(area * aspect), 1, width)
  box_h = jnp.clip(jnp.sqrt(area / aspect), 1, height)
  y0 = jax.random.uniform(k_y, (batch,)) * (height - box_h)
  x0 = jax.random.uniform(k_x, (batch,)) * (width - box_w)
  rows = jnp.floor(y0[:, None] + (jnp.arange(height) + 0.5) * box_h[:, None] / height)
  cols = jnp.floor(x0[:, None] + (jnp.arange(width) + 0.5) * box_w[:, None] / width)
  rows = jnp.clip(rows, 0, height - 1).astype(jnp.int32)
  cols = jnp.clip(cols, 0, width - 1).astype(jnp.int32)
  return jax.vmap(lambda image, r, c: image[r][:, c])(images, rows, cols)


def nmi(a: np.ndarray, b: np.ndarray) -> float:
  """NMI with the paper's geometric normalisation I / sqrt(H(a) H(b))."""
  return float(sk_metrics.normalized_mutual_info_score(a, b, average_method="geometric"))


def _train_step(config, network, augment_on_device, state, head, images, labels, key):
  augment_key, dropout_key = jax.random.split(key)
  images = normalize(config, images)
  if augment_on_device:  # in-memory data; streamed images are cropped by tf.data
    crop_key, flip_key = jax.random.split(augment_key)
    images = random_resized_crop(crop_key, images, tuple(config.train.crop_scale))
    if config.train.flip:
      flip = jax.random.bernoulli(flip_key, 0.5, (images.shape[0], 1, 1, 1))
      images = jnp.where(flip, images[:, :, ::-1], images)

  def loss_fn(params, head):
    features, updates = network.apply(
        {"params": params, "batch_stats": state.batch_stats}, images, True,
        rngs={"dropout": dropout_key}, mutable=["batch_stats"])
    logits = jax.nn.relu(features) @ head["kernel"] + head["bias"]
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, updates["batch_stats"]

  (loss, batch_stats), (grads, head_grads) = jax.value_and_grad(
      loss_fn, argnums=(0, 1), has_aux=True)(state.params, head)
  updates, opt_state = body_optimizer(config).update(grads, state.opt_state, state.params)
  state = state.replace(params=optax.apply_updates(state.params, updates),
                        batch_stats=batch_stats, opt_state=opt_state)
  return state, head_update(config, head, head_grads), loss


def _features(network, state, images):
  return network.apply({"params": state.params, "batch_stats": state.batch_stats}, images,
                       False)


@dataclasses.dataclass
class FeaturePass:
  """The eval-mode features of every image, left on the devices, sharded by rows.

  ``chunks`` are the global batches in dataset order (row r of the concatenation is
  image r; rows from ``num_images`` on are padding); ``stats`` their PCA statistics
  without the padding; ``labels`` int32 [N] (-1 where unknown), gathered on the host.
  """
  chunks: list
  stats: pca_lib.PCAStatistics
  labels: np.ndarray
  num_images: int

  def to_host(self) -> np.ndarray:
    """All features as one host array [N, F]: for small data only."""
    return np.concatenate([np.asarray(partition.to_host(c)) for c in self.chunks]
                          )[:self.num_images]


class DeepCluster:
  """The jitted pieces of one run (network, feature pass, train step) over one mesh."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
               augment_on_device: bool = True):
    self.config, self.mesh = config, mesh
    self.network = create_network(config)
    repl, data = partition.replicated(mesh), partition.data_sharding(mesh)
    self.train_step = jax.jit(
        functools.partial(_train_step, config, self.network, augment_on_device),
        in_shardings=(repl, repl, data, data, repl), out_shardings=(repl, repl, repl),
        donate_argnums=(0, 1))

    def features_and_stats(state, images, mask):
      features = _features(self.network, state, normalize(config, images))
      return features, pca_lib.statistics(features, mask)

    self.features = jax.jit(features_and_stats, in_shardings=(repl, data, data),
                            out_shardings=(data, repl))
    self.project = jax.jit(lambda pca, chunk: pca_lib.l2_normalize(pca_lib.whiten(pca, chunk)),
                           in_shardings=(repl, data), out_shardings=data)

  def create_state(self, key: jax.Array, image_shape: tuple[int, ...], num_images: int):
    variables = self.network.init(key, jnp.zeros((1, *image_shape)), False)
    return TrainState(epoch=jnp.int32(0), params=variables["params"],
                      batch_stats=variables["batch_stats"],
                      opt_state=body_optimizer(self.config).init(variables["params"]),
                      assignment=jnp.full((num_images,), -1, jnp.int32))

  def feature_pass(self, state, batches: Iterator[dict[str, np.ndarray]],
                   num_images: int) -> FeaturePass:
    """Eval-mode features of ``ordered_image_batches``, kept on device, with statistics.

    No host ever holds the features: each global batch stays sharded over the devices
    that computed it, and only the PCA statistics (summed on device) and the labels
    come back.
    """
    chunks, labels, stats = [], [], None
    for batch in batches:
      batch = partition.to_global({"image": batch["image"], "mask": batch["_mask"],
                                   "label": batch["label"]}, self.mesh)
      features, part = self.features(state, batch["image"], batch["mask"])
      chunks.append(features)
      labels.append(batch["label"])
      stats = part if stats is None else stats + part
    labels = np.concatenate([np.asarray(partition.to_host(x)) for x in labels])
    return FeaturePass(chunks, stats, labels[:num_images].astype(np.int32), num_images)


def whitened_points(config: ml_collections.ConfigDict, run: DeepCluster,
                    features: FeaturePass) -> jax.Array:
  """PCA-whitening (fitted on the host in float64) + L2 of the features, on device."""
  c = config.cluster
  whitening = pca_lib.fit(features.stats, c.pca_dim, c.pca_relative_eps)
  whitening = jax.device_put(whitening, partition.replicated(run.mesh))
  return jnp.concatenate([run.project(whitening, chunk) for chunk in features.chunks]
                         )[:features.num_images]


def kmeans_assignment(config: ml_collections.ConfigDict, run: DeepCluster, points: jax.Array,
                      seed: int) -> tuple[np.ndarray, float]:
  """faiss-style k-means of the whitened points: (assignment, k-means loss)."""
  c = config.cluster
  mesh = run.mesh
  result = kmeans_lib.kmeans(points, c.k, num_iters=c.niter, seed=seed,
                             mesh=mesh if mesh.size > 1 else None,
                             tile_size=c.get("tile_size", 1024))
  return np.asarray(partition.to_host(result.assignment)), float(result.objectives[-1])


def cluster(config: ml_collections.ConfigDict, run: DeepCluster, features: FeaturePass,
            seed: int) -> tuple[np.ndarray, float]:
  """PCA-whitening + L2 + k-means of the features, on device: (assignment, k-means loss)."""
  return kmeans_assignment(config, run, whitened_points(config, run, features), seed)


def representation_scores(config: ml_collections.ConfigDict, run: DeepCluster,
                          features: FeaturePass) -> dict[str, float]:
  """The offline benchmark's measures of a representation (spec section 10).

  NMI of k-means (k = config.cluster.k, on PCA-whitened + L2 features) with the labels,
  averaged over seeds; kNN (cosine, k = eval.knn_k) and logistic-regression accuracy on
  standardised features, trained on eval.probe_train_size images of a fixed random
  split and scored on the others. Holds the features on the host: small data only.
  """
  e = config.eval
  labels = features.labels
  nmis = [nmi(cluster(config, run, features, seed)[0], labels)
          for seed in range(e.nmi_seeds)]
  host = features.to_host()
  # A fixed random split (the embedded MNIST sample is sorted by class).
  order = np.random.default_rng(0).permutation(len(labels))
  train, test = order[:e.probe_train_size], order[e.probe_train_size:]
  unit = host / np.linalg.norm(host, axis=1, keepdims=True)
  neighbours = np.argsort(-(unit[test] @ unit[train].T), axis=1)[:, :e.knn_k]
  votes = labels[train][neighbours]
  knn = np.mean([np.bincount(row).argmax() == truth for row, truth in zip(votes, labels[test])])
  scaler = preprocessing.StandardScaler().fit(host[train])
  probe = linear_model.LogisticRegression(max_iter=1000).fit(
      scaler.transform(host[train]), labels[train])
  linear = probe.score(scaler.transform(host[test]), labels[test])
  return {"nmi_kmeans_labels": float(np.mean(nmis)), "knn_accuracy": float(knn),
          "linear_probe_accuracy": float(linear)}


def load_variables(path: str) -> dict[str, Any]:
  """{"params", "batch_stats"} of a DeepCluster network, from a run's workdir (its latest
  checkpoint) or from a ``.msgpack`` file written by scripts/convert_deepcluster_checkpoint.py.
  """
  if os.path.isfile(path):
    with open(path, "rb") as f:
      tree = flax.serialization.msgpack_restore(f.read())
    missing = {"params", "batch_stats"} - set(tree)
    if missing:
      raise ValueError(f"{path} has no {sorted(missing)}: not a converted DeepCluster network")
    return {"params": tree["params"], "batch_stats": tree["batch_stats"]}
  directory = os.path.join(path, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{path} is neither a DeepCluster workdir (no checkpoints/ "
                            "folder) nor a converted .msgpack file")
  manager = checkpointing.create_manager(path)
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"{directory} holds no checkpoint yet")
  state = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))["state"]
  manager.close()
  return {"params": state["params"], "batch_stats": state["batch_stats"]}


def validate(config: ml_collections.ConfigDict, source, mesh: jax.sharding.Mesh) -> None:
  if config.cluster.k < 2 or config.cluster.k >= source.num_examples:
    raise ValueError(f"config.cluster.k={config.cluster.k} must be in [2, "
                     f"{source.num_examples}) for {source.num_examples} images")
  partition.check_batch_size(config.train.batch_size, mesh, "config.train.batch_size")
  if config.train.batch_size > source.num_examples:
    raise ValueError(f"config.train.batch_size={config.train.batch_size} exceeds the dataset "
                     f"size ({source.num_examples})")
  create_network(config)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       num_devices: int | None = None) -> dict[str, Any]:
  """Trains (or resumes) DeepCluster in ``workdir``; returns the final scores."""
  source = deepcluster_data.load_data(config)
  mesh = partition.create_mesh(num_devices)
  validate(config, source, mesh)
  in_memory = not isinstance(source, streaming.StreamingSource)
  run = DeepCluster(config, mesh, augment_on_device=in_memory)
  num_images = source.num_examples
  state = jax.device_put(run.create_state(jax.random.key(config.seed),
                                          deepcluster_data.input_shape(config, source), num_images),
                         partition.replicated(mesh))
  manager, restored, _ = workdir_lib.open_workdir(workdir, config, state)
  random_init_scores = None
  if restored is not None:
    state, meta = restored
    random_init_scores = meta.get("random_init_scores")
    reporting.console(f"resumed from {workdir} at epoch {int(state.epoch)}")
  if jax.process_index() == 0:
    workdir_lib.write_config(workdir, config, int(state.epoch))
  writer = reporting.create_writer(workdir)
  described = data_pipelines.describe(source) if in_memory else (
      f"{source.location}: {num_images} images")
  reporting.console(f"data: {described}; k = {config.cluster.k}, "
                    f"{config.train.num_epochs} epochs on {mesh.size} device(s)")
  # kNN and logistic probes need the features on the host: small labelled data only.
  scored = config.eval.representation_scores and in_memory and source.num_classes is not None
  if random_init_scores is None and scored:
    features = run.feature_pass(
        state, deepcluster_data.ordered_image_batches(config, source), num_images)
    random_init_scores = representation_scores(config, run, features)
    reporting.console(f"random init: {json.dumps(random_init_scores)}")

  train_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  while int(state.epoch) < config.train.num_epochs:
    epoch = int(state.epoch)
    times = {}
    start = time.perf_counter()
    features = run.feature_pass(
        state, deepcluster_data.ordered_image_batches(config, source), num_images)
    labels = features.labels if np.all(features.labels >= 0) else None
    times["features"] = time.perf_counter() - start
    start = time.perf_counter()
    points = jax.block_until_ready(whitened_points(config, run, features))
    del features  # the full-width features leave the devices before training
    times["pca"] = time.perf_counter() - start
    start = time.perf_counter()
    assignment, kmeans_loss = kmeans_assignment(config, run, points,
                                                config.seed * 1000 + epoch)
    times["kmeans"] = time.perf_counter() - start
    rng = np.random.default_rng([config.seed, epoch])
    draws, draw_labels = cluster_sampler.uniform_over_clusters(
        assignment, config.cluster.k, num_images, rng, config.sampler.compat_index_bug)
    head = jax.device_put(new_head(jax.random.fold_in(train_key, epoch),
                                   config.model.feature_dim, config.cluster.k),
                          partition.replicated(mesh))
    start = time.perf_counter()
    losses = []
    epoch_key = jax.random.fold_in(train_key, epoch)
    batches = deepcluster_data.training_batches(config, source, draws, draw_labels, epoch)
    for step, batch in enumerate(batches):
      batch = partition.to_global(batch, mesh)
      state, head, loss = run.train_step(state, head, batch["image"], batch["label"],
                                         jax.random.fold_in(epoch_key, step))
      losses.append(loss)
    loss = float(np.mean(jax.device_get(losses)))
    times["training"] = time.perf_counter() - start
    if not np.isfinite(loss):
      raise FloatingPointError(f"the loss is NaN or Inf in epoch {epoch}; the last good "
                               f"checkpoint is epoch {manager.latest_step()}")
    previous = np.asarray(jax.device_get(state.assignment))
    scalars = {"train/loss": loss, "train/kmeans_loss": kmeans_loss,
               "train/non_empty_clusters": int(np.count_nonzero(np.bincount(
                   assignment, minlength=config.cluster.k))),
               **{f"time/{name}_s": value for name, value in times.items()}}
    if previous[0] >= 0:
      scalars["train/nmi_previous_epoch"] = nmi(assignment, previous)
    if labels is not None:
      scalars["train/nmi_labels"] = nmi(assignment, labels)
    writer.write_scalars(epoch + 1, scalars)
    writer.write_histograms(epoch + 1, {"train/cluster_sizes": np.bincount(
        assignment, minlength=config.cluster.k)})
    reporting.console(f"epoch {epoch + 1}/{config.train.num_epochs} " + " ".join(
        f"{name.split('/')[-1]} {value:.4g}" for name, value in scalars.items()))
    state = state.replace(epoch=jnp.int32(epoch + 1), assignment=jnp.asarray(assignment))
    checkpointing.save(manager, epoch + 1, state, {
        "epoch": epoch + 1, "random_init_scores": random_init_scores})
  manager.wait_until_finished()

  final = {}
  if scored:
    features = run.feature_pass(
        state, deepcluster_data.ordered_image_batches(config, source), num_images)
    final = representation_scores(config, run, features)
    final.update({f"random_init_{name}": value for name, value in random_init_scores.items()})
    writer.write_scalars(int(state.epoch), {f"final/{n}": v for n, v in final.items()})
    scores_lib.write_scores_json(workdir, final)
    reporting.console(f"final: {json.dumps(final)}")
  manager.close()
  writer.flush()
  writer.close()
  return final
