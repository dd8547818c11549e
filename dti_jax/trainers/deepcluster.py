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
from data_pipelines import cluster_sampler
from dti_jax.nets import alexnet, vgg
from dti_jax.ops import kmeans as kmeans_lib
from dti_jax.ops import pca as pca_lib
from dti_jax.trainers import checkpointing, partition, reporting, workdir as workdir_lib

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
  return ARCHS[config.model.arch](sobel=config.model.sobel)


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
  return (images_uint8.astype(jnp.float32) / 255.0 - config.data.mean) / config.data.std


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


def _train_step(config, network, state, head, images, labels, key):
  augment_key, dropout_key = jax.random.split(key)
  images = random_resized_crop(augment_key, normalize(config, images),
                               tuple(config.train.crop_scale))

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


class DeepCluster:
  """The jitted pieces of one run (network, feature pass, train step) over one mesh."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.config, self.mesh = config, mesh
    self.network = create_network(config)
    repl, data = partition.replicated(mesh), partition.data_sharding(mesh)
    self.train_step = jax.jit(functools.partial(_train_step, config, self.network),
                              in_shardings=(repl, repl, data, data, repl),
                              out_shardings=(repl, repl, repl), donate_argnums=(0, 1))

    def features_and_stats(state, images, mask):
      features = _features(self.network, state, normalize(config, images))
      return features, pca_lib.statistics(features, mask)

    self.features = jax.jit(features_and_stats, in_shardings=(repl, data, data),
                            out_shardings=(data, repl))

  def create_state(self, key: jax.Array, image_shape: tuple[int, ...], num_images: int):
    variables = self.network.init(key, jnp.zeros((1, *image_shape)), False)
    return TrainState(epoch=jnp.int32(0), params=variables["params"],
                      batch_stats=variables["batch_stats"],
                      opt_state=body_optimizer(self.config).init(variables["params"]),
                      assignment=jnp.full((num_images,), -1, jnp.int32))

  def feature_pass(self, state, images: np.ndarray) -> tuple[np.ndarray, pca_lib.PCAStatistics]:
    """Eval-mode features of every image in order, and their PCA statistics."""
    batch = self.config.eval.batch_size
    batch += -batch % self.mesh.size
    outputs, stats = [], None
    for start in range(0, len(images), batch):
      chunk = images[start:start + batch]
      valid = len(chunk)
      mask = np.arange(batch) < valid
      chunk = np.concatenate([chunk, np.zeros((batch - valid, *chunk.shape[1:]), chunk.dtype)])
      global_batch = partition.to_global({"image": chunk, "mask": mask}, self.mesh)
      features, part = self.features(state, global_batch["image"], global_batch["mask"])
      outputs.append(np.asarray(partition.to_host(features))[:valid])
      stats = part if stats is None else stats + part
    return np.concatenate(outputs), stats


def cluster(config: ml_collections.ConfigDict, features: np.ndarray,
            stats: pca_lib.PCAStatistics, seed: int,
            mesh: jax.sharding.Mesh) -> tuple[np.ndarray, float]:
  """PCA-whitening + L2 + k-means of features: (assignment, k-means loss)."""
  c = config.cluster
  whitening = pca_lib.fit(stats, c.pca_dim, c.pca_relative_eps)
  points = pca_lib.l2_normalize(pca_lib.whiten(whitening, jnp.asarray(features)))
  result = kmeans_lib.kmeans(points, c.k, num_iters=c.niter, seed=seed,
                             mesh=mesh if mesh.size > 1 else None)
  return np.asarray(result.assignment), float(result.objectives[-1])


def representation_scores(config: ml_collections.ConfigDict, features: np.ndarray,
                          labels: np.ndarray, mesh: jax.sharding.Mesh) -> dict[str, float]:
  """The offline benchmark's measures of a representation (spec section 10).

  NMI of k-means (k = config.cluster.k, on PCA-whitened + L2 features) with the labels,
  averaged over seeds; kNN (cosine, k = eval.knn_k) and logistic-regression accuracy on
  standardised features, trained on eval.probe_train_size images of a fixed random
  split and scored on the others.
  """
  e = config.eval
  stats = pca_lib.statistics(jnp.asarray(features))
  nmis = [nmi(cluster(config, features, stats, seed, mesh)[0], labels)
          for seed in range(e.nmi_seeds)]
  # A fixed random split (the embedded MNIST sample is sorted by class).
  order = np.random.default_rng(0).permutation(len(labels))
  train, test = order[:e.probe_train_size], order[e.probe_train_size:]
  unit = features / np.linalg.norm(features, axis=1, keepdims=True)
  neighbours = np.argsort(-(unit[test] @ unit[train].T), axis=1)[:, :e.knn_k]
  votes = labels[train][neighbours]
  knn = np.mean([np.bincount(row).argmax() == truth for row, truth in zip(votes, labels[test])])
  scaler = preprocessing.StandardScaler().fit(features[train])
  probe = linear_model.LogisticRegression(max_iter=1000).fit(
      scaler.transform(features[train]), labels[train])
  linear = probe.score(scaler.transform(features[test]), labels[test])
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


def ordered_image_batches(config: ml_collections.ConfigDict, source,
                          batch_size: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Every image once in dataset order, this process's rows of each global batch.

  Yields dicts with ``image`` uint8 [local, H, W, C] as the network sees it in eval mode,
  ``id`` int64 (the image's index), ``label`` int32 (-1 when unknown) and ``_mask`` bool
  (False on the zero rows that pad the last batch).
  """
  batch = batch_size or config.eval.batch_size
  batch += -batch % jax.device_count()
  local = batch // jax.process_count()
  first = jax.process_index() * local
  labels = (source.labels if source.num_classes is not None
            else np.full((source.num_examples,), -1, np.int32))
  for start in range(0, source.num_examples, batch):
    ids = np.arange(start + first, start + first + local)
    valid = ids < source.num_examples
    safe = np.where(valid, ids, 0)
    images = np.where(valid[:, None, None, None], source.images[safe], 0).astype(np.uint8)
    yield {"image": images, "id": ids, "label": np.where(valid, labels[safe], -1).astype(
        np.int32), "_mask": valid}


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
  source = data_pipelines.load_source(config.data.name, data_dir=config.data.data_dir or None)
  mesh = partition.create_mesh(num_devices)
  validate(config, source, mesh)
  run = DeepCluster(config, mesh)
  images = source.images
  num_images = source.num_examples
  state = jax.device_put(run.create_state(jax.random.key(config.seed), source.image_shape,
                                          num_images), partition.replicated(mesh))
  manager, restored, _ = workdir_lib.open_workdir(workdir, config, state)
  random_init_scores = None
  if restored is not None:
    state, meta = restored
    random_init_scores = meta.get("random_init_scores")
    reporting.console(f"resumed from {workdir} at epoch {int(state.epoch)}")
  if jax.process_index() == 0:
    workdir_lib.write_config(workdir, config, int(state.epoch))
  writer = reporting.create_writer(workdir)
  reporting.console(f"data: {data_pipelines.describe(source)}; k = {config.cluster.k}, "
                    f"{config.train.num_epochs} epochs on {mesh.size} device(s)")
  labels = source.labels if source.num_classes is not None else None
  if random_init_scores is None and labels is not None:
    features, _ = run.feature_pass(state, images)
    random_init_scores = representation_scores(config, features, labels, mesh)
    reporting.console(f"random init: {json.dumps(random_init_scores)}")

  batch_size = config.train.batch_size
  steps_per_epoch = num_images // batch_size
  train_key = jax.random.fold_in(jax.random.key(config.seed), 1)
  while int(state.epoch) < config.train.num_epochs:
    epoch = int(state.epoch)
    times = {}
    start = time.perf_counter()
    features, stats = run.feature_pass(state, images)
    times["features"] = time.perf_counter() - start
    start = time.perf_counter()
    assignment, kmeans_loss = cluster(config, features, stats, config.seed * 1000 + epoch,
                                       mesh)
    times["pca_kmeans"] = time.perf_counter() - start
    rng = np.random.default_rng([config.seed, epoch])
    draws, draw_labels = cluster_sampler.uniform_over_clusters(
        assignment, config.cluster.k, num_images, rng, config.sampler.compat_index_bug)
    head = jax.device_put(new_head(jax.random.fold_in(train_key, epoch), features.shape[1],
                                   config.cluster.k), partition.replicated(mesh))
    start = time.perf_counter()
    losses = []
    for step in range(steps_per_epoch):
      index = draws[step * batch_size:(step + 1) * batch_size]
      batch = partition.to_global({
          "image": images[index],
          "label": draw_labels[step * batch_size:(step + 1) * batch_size]}, mesh)
      state, head, loss = run.train_step(state, head, batch["image"], batch["label"],
                                         jax.random.fold_in(jax.random.fold_in(train_key, epoch),
                                                            step))
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
  if labels is not None:
    features, _ = run.feature_pass(state, images)
    final = representation_scores(config, features, labels, mesh)
    final.update({f"random_init_{name}": value for name, value in random_init_scores.items()})
    writer.write_scalars(int(state.epoch), {f"final/{n}": v for n, v in final.items()})
    if jax.process_index() == 0:
      with open(os.path.join(workdir, "final_scores.json"), "w") as f:
        json.dump(final, f, indent=1)
    reporting.console(f"final: {json.dumps(final)}")
  manager.close()
  writer.flush()
  writer.close()
  return final
