"""DeepCluster's clustering of a representation: the feature pass that keeps features
on the devices, PCA-whitening + L2 (faiss's conventions), and the sharded k-means or
power iteration clustering (PIC) of the whitened points."""

import dataclasses
from typing import Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from sklearn import metrics as sk_metrics

from dti_jax.methods.deepcluster import network as network_lib
from dti_jax.ops import kmeans as kmeans_lib
from dti_jax.ops import pca as pca_lib
from dti_jax.ops import pic as pic_lib
from dti_jax.run import partition


def nmi(a: np.ndarray, b: np.ndarray) -> float:
  """NMI with the paper's geometric normalisation I / sqrt(H(a) H(b))."""
  return float(sk_metrics.normalized_mutual_info_score(a, b, average_method="geometric"))


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


class FeatureExtractor:
  """The jitted feature pass and whitening of one network over one mesh."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.config, self.mesh = config, mesh
    self.network = network_lib.create_network(config)
    repl, data = partition.replicated(mesh), partition.data_sharding(mesh)

    def features_and_stats(variables, images, mask):
      features = self.network.apply(variables, network_lib.normalize(config, images), False)
      return features, pca_lib.statistics(features, mask)

    self.features = jax.jit(features_and_stats, in_shardings=(repl, data, data),
                            out_shardings=(data, repl))
    self.project = jax.jit(lambda pca, chunk: pca_lib.l2_normalize(pca_lib.whiten(pca, chunk)),
                           in_shardings=(repl, data), out_shardings=data)

  def feature_pass(self, variables, batches: Iterator[dict[str, np.ndarray]],
                   num_images: int) -> FeaturePass:
    """Eval-mode features of ``ordered_image_batches``, kept on device, with statistics.

    ``variables`` are the network's {"params", "batch_stats"}. No host ever holds the
    features: each global batch stays sharded over the devices that computed it, and
    only the PCA statistics (summed on device) and the labels come back.
    """
    chunks, labels, stats = [], [], None
    for batch in batches:
      batch = partition.to_global({"image": batch["image"], "mask": batch["_mask"],
                                   "label": batch["label"]}, self.mesh)
      features, part = self.features(variables, batch["image"], batch["mask"])
      chunks.append(features)
      labels.append(batch["label"])
      stats = part if stats is None else stats + part
    labels = np.concatenate([np.asarray(partition.to_host(x)) for x in labels])
    return FeaturePass(chunks, stats, labels[:num_images].astype(np.int32), num_images)


def whitened_points(config: ml_collections.ConfigDict, run: FeatureExtractor,
                    features: FeaturePass) -> tuple[jax.Array, pca_lib.PCAWhitening]:
  """PCA-whitening (fitted on the host in float64) + L2 of the features, on device; and
  the whitening (replicated)."""
  c = config.cluster
  whitening = pca_lib.fit(features.stats, c.pca_dim, c.pca_relative_eps)
  whitening = jax.device_put(whitening, partition.replicated(run.mesh))
  points = jnp.concatenate([run.project(whitening, chunk) for chunk in features.chunks]
                           )[:features.num_images]
  return points, whitening


def kmeans_assignment(config: ml_collections.ConfigDict, run: FeatureExtractor,
                      points: jax.Array,
                      seed: int) -> tuple[np.ndarray, float, jax.Array]:
  """faiss-style k-means of the whitened points: (assignment, k-means loss, centroids)."""
  c = config.cluster
  mesh = run.mesh
  result = kmeans_lib.kmeans(points, c.k, num_iters=c.niter, seed=seed,
                             mesh=mesh if mesh.size > 1 else None,
                             tile_size=c.get("tile_size", 1024))
  return (np.asarray(partition.to_host(result.assignment)), float(result.objectives[-1]),
          result.centroids)


def pic_assignment(config: ml_collections.ConfigDict, run: FeatureExtractor,
                   points: jax.Array) -> tuple[np.ndarray, int, jax.Array]:
  """PIC of the whitened points: (assignment, number of clusters, cluster means).

  The means (rows past the number of clusters far away, so they never win) let new
  images be assigned to their nearest cluster as with k-means centroids. A one-line
  ValueError when PIC finds more clusters than the top layer holds (config.cluster.k).
  """
  c, p = config.cluster, config.cluster.pic
  mesh = run.mesh
  result = pic_lib.pic(points, nnn=p.neighbours, sigma=p.sigma, alpha=p.alpha,
                       num_iters=p.iterations, distribute_singletons=p.distribute_singletons,
                       mesh=mesh if mesh.size > 1 else None, tile_size=c.get("tile_size", 1024))
  count = int(result.num_clusters)
  if count > c.k:
    raise ValueError(f"PIC found {count} clusters, more than config.cluster.k={c.k}, the "
                     "top layer's width: rerun with a larger config.cluster.k")
  means = cluster_means(points, result.assignment, c.k)
  return np.asarray(partition.to_host(result.assignment)), count, means


@jax.jit
def _means(points, assignment, far):
  k = far.shape[0]
  sums = jax.ops.segment_sum(points, assignment, num_segments=k)
  counts = jax.ops.segment_sum(jnp.ones_like(assignment), assignment, num_segments=k)
  return jnp.where((counts > 0)[:, None], sums / jnp.maximum(counts, 1)[:, None], far)


def cluster_means(points: jax.Array, assignment: jax.Array, k: int) -> jax.Array:
  """[k, d] mean of each cluster's points; an empty cluster's row lies at 1,000 on every
  axis (unit-norm points are never nearest to it)."""
  return _means(points, jnp.asarray(assignment),
                jnp.full((k, points.shape[1]), 1000.0, points.dtype))


def cluster(config: ml_collections.ConfigDict, run: FeatureExtractor, features: FeaturePass,
            seed: int) -> tuple[np.ndarray, float]:
  """PCA-whitening + L2 + k-means of the features, on device: (assignment, k-means loss)."""
  points, _ = whitened_points(config, run, features)
  return kmeans_assignment(config, run, points, seed)[:2]


def assign(whitening: pca_lib.PCAWhitening, centroids: jax.Array,
           features: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(cluster, squared distance) of each feature row [n, F] under a clustering's
  whitening and centroids: the k-means' last assignment pass, for new images."""
  points = pca_lib.l2_normalize(pca_lib.whiten(whitening, features))
  distances = (jnp.sum(points * points, axis=1, keepdims=True)
               - 2.0 * jnp.matmul(points, centroids.T, precision=jax.lax.Precision.HIGHEST)
               + jnp.sum(centroids * centroids, axis=1))
  return jnp.argmin(distances, axis=1), jnp.min(distances, axis=1)
