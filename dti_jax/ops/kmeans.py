"""Exact k-means with faiss's semantics, on device and sharded over the data axis.

DeepCluster clusters its features with ``faiss.Clustering``; this follows that
algorithm step by step (2018 ``Clustering.cpp`` and ``km_update_centroids``):

1. the initial centroids are the first k points of a random permutation (seed + 1);
2. each iteration assigns every point to its nearest centroid (squared L2, exact),
   records the objective (sum of squared distances, before the update), moves every
   non-empty centroid to the mean of its points and splits the empty clusters;
3. a last assignment pass against the final centroids gives the labels.

Empty-cluster split (after every update, an RNG freshly seeded 1234 at each call): for
each empty cluster i in index order, clusters j = 0, 1, 2, ... are scanned cyclically and
j is accepted with probability (n_j - 1) / (N - k); centroid j is copied into i and the
pair is pushed apart by a factor 1 +- 1/1024 with alternating signs per coordinate;
n_i = n_j // 2 and n_j -= n_i. The random draws come from JAX's generator, not faiss's,
so the choices match faiss's rule in distribution, not draw for draw.

Points are sharded over the mesh's data axis and the centroids replicated; each device
computes distances tile by tile (never the whole N x k matrix), its per-cluster sums with
``segment_sum``, and one all-reduce per iteration combines them.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

DATA_AXIS = "data"
SPLIT_EPS = 1.0 / 1024
SPLIT_SEED = 1234


class KMeansResult(NamedTuple):
  centroids: jax.Array   # [k, d] after the last update and split
  assignment: jax.Array  # [N] int32, nearest final centroid of every point
  objectives: jax.Array  # [num_iters] sum of squared distances at each assignment pass
  counts: jax.Array      # [k] int32 sizes of the final assignment


def nearest_centroids(points: jax.Array, centroids: jax.Array,
                      tile_size: int) -> tuple[jax.Array, jax.Array]:
  """(index, squared distance) of the nearest centroid of every point, tile by tile.

  ``points`` [n, d] with n a multiple of ``tile_size``; ties go to the lower index.
  """
  n, d = points.shape
  centroid_norms = jnp.sum(centroids * centroids, axis=1)

  def one_tile(tile):
    # ||x||^2 - 2 x.c + ||c||^2, as faiss's exact GEMM-based search.
    dots = jnp.matmul(tile, centroids.T, precision=lax.Precision.HIGHEST)
    distances = jnp.sum(tile * tile, axis=1, keepdims=True) - 2.0 * dots + centroid_norms
    index = jnp.argmin(distances, axis=1).astype(jnp.int32)
    return index, jnp.take_along_axis(distances, index[:, None], axis=1)[:, 0]

  index, distance = lax.map(one_tile, points.reshape(n // tile_size, tile_size, d))
  return index.reshape(n), distance.reshape(n)


def split_empty_clusters(centroids: jax.Array, counts: jax.Array,
                         num_points: int) -> tuple[jax.Array, jax.Array]:
  """faiss's split of every empty cluster (see the module docstring); needs N > k."""
  k, d = centroids.shape
  sign = jnp.where(jnp.arange(d) % 2 == 0, 1.0, -1.0).astype(centroids.dtype)

  def split_one(i, carry):
    centroids, counts, key = carry

    def split(carry):
      centroids, counts, key = carry

      def rejected(state):
        return ~state[2]

      def try_next(state):
        j, key, _ = state
        key, draw = jax.random.split(key)
        accept = jax.random.uniform(draw) * (num_points - k) < (counts[j] - 1)
        return jnp.where(accept, j, (j + 1) % k), key, accept

      j, key, _ = lax.while_loop(rejected, try_next, (jnp.int32(0), key, jnp.bool_(False)))
      source = centroids[j]
      centroids = centroids.at[i].set(source * (1 + SPLIT_EPS * sign))
      centroids = centroids.at[j].set(source * (1 - SPLIT_EPS * sign))
      half = counts[j] // 2
      counts = counts.at[i].set(half).at[j].add(-half)
      return centroids, counts, key

    return lax.cond(counts[i] == 0, split, lambda carry: carry, (centroids, counts, key))

  centroids, counts, _ = lax.fori_loop(
      0, k, split_one, (centroids, counts, jax.random.key(SPLIT_SEED)))
  return centroids, counts


def initial_centroid_indices(num_points: int, k: int, seed: int) -> np.ndarray:
  """faiss's initialisation: the first k of a random permutation seeded with seed + 1."""
  return np.random.default_rng(seed + 1).permutation(num_points)[:k]


def _mesh_size(mesh: jax.sharding.Mesh | None) -> int:
  return 1 if mesh is None else mesh.shape[DATA_AXIS]


@functools.partial(jax.jit, static_argnames=("num_iters", "tile_size", "num_points", "mesh"))
def _lloyd(points, weights, centroids, *, num_iters, tile_size, num_points, mesh):
  k = centroids.shape[0]

  def local_stats(points, weights, centroids):
    index, distance = nearest_centroids(points, centroids, tile_size)
    sums = jax.ops.segment_sum(points * weights[:, None], index, num_segments=k)
    counts = jax.ops.segment_sum(weights.astype(jnp.int32), index, num_segments=k)
    objective = jnp.sum(distance * weights)
    if mesh is not None:  # the one all-reduce of the iteration
      sums, counts, objective = lax.psum((sums, counts, objective), DATA_AXIS)
    return index, sums, counts, objective

  if mesh is not None:
    data, replicated = PartitionSpec(DATA_AXIS), PartitionSpec()
    local_stats = jax.shard_map(local_stats, mesh=mesh, in_specs=(data, data, replicated),
                                out_specs=(data, replicated, replicated, replicated))

  def iteration(t, carry):
    centroids, objectives = carry
    _, sums, counts, objective = local_stats(points, weights, centroids)
    means = sums / jnp.maximum(counts, 1)[:, None].astype(sums.dtype)
    centroids = jnp.where((counts > 0)[:, None], means, centroids)
    centroids, _ = split_empty_clusters(centroids, counts, num_points)
    return centroids, objectives.at[t].set(objective)

  objectives = jnp.zeros((num_iters,), jnp.float32)
  if num_iters:
    centroids, objectives = lax.fori_loop(0, num_iters, iteration, (centroids, objectives))
  index, _, counts, _ = local_stats(points, weights, centroids)
  return KMeansResult(centroids, index, objectives, counts)


def kmeans(points: jax.Array | np.ndarray, k: int, *, num_iters: int = 20, seed: int = 0,
           mesh: jax.sharding.Mesh | None = None, tile_size: int = 1024,
           initial_centroids: jax.Array | np.ndarray | None = None) -> KMeansResult:
  """faiss-style exact k-means of ``points`` [N, d] into ``k`` clusters.

  Args:
    points: [N, d] float32 (any N; padded internally to whole tiles per device).
    k: number of clusters, 1 <= k < N.
    num_iters: assignment + update iterations (DeepCluster: 20).
    seed: picks the initial centroids (faiss: the first k of a permutation, seed + 1).
    mesh: a 1-D mesh with a "data" axis to shard the points over; None = one device.
    tile_size: points per distance tile (memory: tile_size x k floats per device).
    initial_centroids: [k, d] to start from instead of the seeded choice.

  Returns:
    KMeansResult; ``objectives[-1]`` is the loss DeepCluster reports.
  """
  points = jnp.asarray(points, jnp.float32)
  if points.ndim != 2:
    raise ValueError(f"kmeans: points must be [N, d], got shape {points.shape}")
  num_points, dim = points.shape
  if not 1 <= k < num_points:
    raise ValueError(f"kmeans: k={k} must be in [1, N) for N={num_points} points")
  if initial_centroids is None:
    initial_centroids = points[initial_centroid_indices(num_points, k, seed)]
  initial_centroids = jnp.asarray(initial_centroids, jnp.float32)
  if initial_centroids.shape != (k, dim):
    raise ValueError(f"kmeans: initial_centroids shape {initial_centroids.shape} != {(k, dim)}")
  shards = _mesh_size(mesh)
  tile_size = max(1, min(tile_size, -(-num_points // shards)))
  padded = -(-num_points // (shards * tile_size)) * shards * tile_size
  weights = jnp.arange(padded) < num_points
  points = jnp.pad(points, ((0, padded - num_points), (0, 0)))
  if mesh is not None:
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    points, weights = jax.device_put((points, weights), sharding)
  result = _lloyd(points, weights.astype(jnp.float32), initial_centroids, num_iters=num_iters,
                  tile_size=tile_size, num_points=num_points, mesh=mesh)
  return result._replace(assignment=result.assignment[:num_points])
