"""Power iteration clustering (PIC) on a k-nearest-neighbour graph, on device.

DeepCluster's alternative to k-means (``--clustering PIC``): the original builds the
graph of each point's ``nnn`` nearest neighbours (squared L2, faiss), weights an edge
by exp(-d / sigma^2), symmetrises it (W = A + A^T), runs 200 power iterations of the
personalised random walk v <- alpha W^T v + (1 - alpha) / N, L1-normalised, from the
uniform vector, and links every point to the neighbour that maximises
W_ij (v_j - v_i) when that is positive; the roots of the resulting forest (the local
maxima of v) are the clusters. Optionally each singleton joins the cluster of its
nearest neighbour that is not a singleton.

Here the neighbour search (the N^2 part) is sharded over the mesh's data axis like the
k-means (each device searches for its rows, tile by tile, against all points); the
graph phase works on N x nnn edge arrays, replicated. One deviation: a point's own
index is excluded from its neighbours explicitly, where the original drops the first
column of the search result, which differs only for exact duplicates.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec

DATA_AXIS = "data"


class PICResult(NamedTuple):
  assignment: jax.Array   # [N] int32 clusters 0..num_clusters-1
  num_clusters: jax.Array  # int32
  neighbours: jax.Array   # [N, nnn] int32, nearest first
  distances: jax.Array    # [N, nnn] squared L2
  walk: jax.Array         # [N] the power-iteration vector v


def nearest_neighbours(queries: jax.Array, points: jax.Array, query_offset: jax.Array,
                       num_points: int, nnn: int, tile_size: int
                       ) -> tuple[jax.Array, jax.Array]:
  """(indices, squared distances) [n, nnn] of each query row's nearest points, itself
  and the padding rows (index >= num_points) excluded; queries [n, d], n a multiple of
  ``tile_size``, are rows ``query_offset``.. of ``points``."""
  n, d = queries.shape
  point_norms = jnp.sum(points * points, axis=1)
  columns = jnp.arange(points.shape[0])

  def one_tile(args):
    start, tile = args
    dots = jnp.matmul(tile, points.T, precision=lax.Precision.HIGHEST)
    distances = jnp.maximum(
        jnp.sum(tile * tile, axis=1, keepdims=True) - 2.0 * dots + point_norms, 0.0)
    rows = start + jnp.arange(tile.shape[0])
    excluded = (columns[None, :] == rows[:, None]) | (columns[None, :] >= num_points)
    negative, index = lax.top_k(-jnp.where(excluded, jnp.inf, distances), nnn)
    return index.astype(jnp.int32), -negative

  starts = query_offset + jnp.arange(0, n, tile_size)
  index, distance = lax.map(one_tile, (starts, queries.reshape(n // tile_size, tile_size, d)))
  return index.reshape(n, nnn), distance.reshape(n, nnn)


def _edges(neighbours: jax.Array, weights: jax.Array):
  """Both directions of the symmetric graph W = A + A^T as (row, column, weight) arrays
  [2 N nnn]; a pair present in both kNN lists appears once per direction with the sum."""
  n, nnn = neighbours.shape
  rows = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32)[:, None], (n, nnn))
  # A[j, i] for each edge i -> j: i's position in j's own list, if there.
  back = neighbours[neighbours] == rows[:, :, None]              # [n, nnn, nnn]
  reverse_weight = jnp.sum(jnp.where(back, weights[neighbours], 0.0), axis=2)
  mutual = jnp.any(back, axis=2)
  forward = (rows, neighbours, weights + reverse_weight, jnp.ones_like(mutual))
  backward = (neighbours, rows, weights, ~mutual)                 # j -> i when i not in j's list
  return tuple(jnp.concatenate([f.reshape(-1), b.reshape(-1)])
               for f, b in zip(forward, backward))


def _walk(neighbours, weights, alpha, num_iters):
  """The power iterations v <- alpha W v + (1 - alpha) / N, L1-normalised (W symmetric)."""
  n = neighbours.shape[0]

  def iteration(_, v):
    out = (jnp.sum(weights * v[neighbours], axis=1)                               # A v
           + jax.ops.segment_sum((weights * v[:, None]).reshape(-1),
                                 neighbours.reshape(-1), num_segments=n))          # A^T v
    out = alpha * out + (1.0 - alpha) / n
    return out / jnp.sum(out)

  return lax.fori_loop(0, num_iters, iteration, jnp.full((n,), 1.0 / n, jnp.float32))


def _roots(neighbours, weights, v):
  """Each point's local maximum of v, following the steepest weighted ascent; ties to
  the lower neighbour index, as the original's scan of its CSR rows."""
  n = neighbours.shape[0]
  rows, columns, edge_weights, valid = _edges(neighbours, weights)
  gain = jnp.where(valid, edge_weights * (v[columns] - v[rows]), 0.0)
  best = jax.ops.segment_max(gain, rows, num_segments=n)
  winner = valid & (gain > 0) & (gain == best[rows])
  pointer = jax.ops.segment_min(jnp.where(winner, columns, n), rows, num_segments=n)
  pointer = jnp.where(pointer == n, jnp.arange(n, dtype=jnp.int32), pointer)

  def not_done(p):
    return jnp.any(p[p] != p)

  return lax.while_loop(not_done, lambda p: p[p], pointer)


def _compact(labels: jax.Array, present: jax.Array) -> jax.Array:
  """Labels renumbered 0.. in increasing order of the ``present`` ones."""
  return (jnp.cumsum(present) - 1).astype(jnp.int32)[labels]


def _distribute_singletons(assignment, neighbours, num_points):
  """Each singleton joins the cluster of its nearest neighbour that is not a singleton
  (the clusters as PIC left them); one with no such neighbour stays alone."""
  sizes = jax.ops.segment_sum(jnp.ones_like(assignment), assignment, num_segments=num_points)
  singleton = sizes[assignment] == 1
  candidate = sizes[assignment[neighbours]] != 1                  # [N, nnn]
  first = jnp.argmax(candidate, axis=1)
  target = assignment[jnp.take_along_axis(neighbours, first[:, None], axis=1)[:, 0]]
  moved = singleton & jnp.any(candidate, axis=1)
  return jnp.where(moved, target, assignment)


@functools.partial(jax.jit, static_argnames=("num_points", "nnn", "num_iters",
                                             "distribute_singletons"))
def _graph_clustering(neighbours, distances, *, sigma, alpha, num_points, nnn, num_iters,
                      distribute_singletons):
  del nnn
  weights = jnp.exp(-distances / (sigma * sigma))
  v = _walk(neighbours, weights, alpha, num_iters)
  roots = _roots(neighbours, weights, v)
  is_root = roots == jnp.arange(num_points)
  assignment = _compact(roots, is_root)
  if distribute_singletons:
    assignment = _distribute_singletons(assignment, neighbours, num_points)
    present = jax.ops.segment_sum(jnp.ones_like(assignment), assignment,
                                  num_segments=num_points) > 0
    assignment = _compact(assignment, present)
  return assignment, jnp.max(assignment) + 1, v


def pic(points: jax.Array, *, nnn: int = 5, sigma: float = 0.2, alpha: float = 0.001,
        num_iters: int = 200, distribute_singletons: bool = True,
        mesh: jax.sharding.Mesh | None = None, tile_size: int = 1024) -> PICResult:
  """Power iteration clustering of ``points`` [N, d] (DeepCluster's defaults).

  Args:
    points: [N, d] float32, N > nnn.
    nnn: neighbours per point in the graph.
    sigma: bandwidth of the Gaussian edge weight exp(-d^2 / sigma^2).
    alpha: weight of the graph in each power iteration.
    num_iters: power iterations (the original: 200).
    distribute_singletons: move each singleton to its nearest non-singleton's cluster.
    mesh: a 1-D mesh with a "data" axis to shard the neighbour search; None: one device.
    tile_size: query rows per distance tile (memory: tile_size x N floats per device).
  """
  points = jnp.asarray(points, jnp.float32)
  if points.ndim != 2:
    raise ValueError(f"pic: points must be [N, d], got shape {points.shape}")
  num_points = points.shape[0]
  if not 1 <= nnn < num_points:
    raise ValueError(f"pic: nnn={nnn} neighbours must be in [1, N) for N={num_points}")
  shards = 1 if mesh is None else mesh.shape[DATA_AXIS]
  tile_size = max(1, min(tile_size, -(-num_points // shards)))
  padded = -(-num_points // (shards * tile_size)) * shards * tile_size
  points = jnp.pad(points, ((0, padded - num_points), (0, 0)))
  search = functools.partial(nearest_neighbours, num_points=num_points, nnn=nnn,
                             tile_size=tile_size)
  if mesh is None:
    neighbours, distances = jax.jit(search)(points, points, jnp.int32(0))
  else:
    data, replicated = PartitionSpec(DATA_AXIS), PartitionSpec()

    def local(queries):
      offset = lax.axis_index(DATA_AXIS) * queries.shape[0]
      return search(queries, lax.all_gather(queries, DATA_AXIS, tiled=True), offset)

    points = jax.device_put(points, NamedSharding(mesh, data))
    neighbours, distances = jax.jit(jax.shard_map(
        local, mesh=mesh, in_specs=data, out_specs=(data, data)),
        out_shardings=NamedSharding(mesh, replicated))(points)
  neighbours, distances = neighbours[:num_points], distances[:num_points]
  assignment, count, walk = _graph_clustering(
      neighbours, distances, sigma=sigma, alpha=alpha, num_points=num_points, nnn=nnn,
      num_iters=num_iters, distribute_singletons=distribute_singletons)
  return PICResult(assignment, count, neighbours, distances, walk)
