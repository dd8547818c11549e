"""faiss-style k-means: Lloyd's iterations against scikit-learn, the split rule, sharding."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import cluster as sk_cluster

from dti_jax.ops import kmeans as kmeans_lib
from dti_jax.run import partition


def _blobs(n=600, d=8, k=6, seed=0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(0, 5, (k, d))
  labels = rng.integers(0, k, n)
  return (centres[labels] + rng.normal(0, 1, (n, d))).astype(np.float32)


def test_lloyd_iterations_match_scikit_learn_from_the_same_start():
  points = _blobs()
  start = points[kmeans_lib.initial_centroid_indices(len(points), 6, seed=3)]
  ours = kmeans_lib.kmeans(points, 6, num_iters=10, initial_centroids=start, tile_size=128)
  reference = sk_cluster.KMeans(6, init=start, n_init=1, max_iter=10, tol=0,
                                algorithm="lloyd").fit(points.astype(np.float64))
  np.testing.assert_array_equal(np.asarray(ours.assignment), reference.labels_)
  np.testing.assert_allclose(np.asarray(ours.centroids), reference.cluster_centers_,
                             rtol=1e-5, atol=1e-5)
  # The last objective is measured at the 10th assignment, before its update: with
  # converged blobs it equals the inertia of the final centroids.
  np.testing.assert_allclose(float(ours.objectives[-1]), reference.inertia_, rtol=1e-4)
  np.testing.assert_array_equal(np.asarray(ours.counts), np.bincount(reference.labels_,
                                                                     minlength=6))


def test_objective_never_increases_and_assignment_is_nearest_centroid():
  points = _blobs(n=500, d=5, k=12, seed=1)
  result = kmeans_lib.kmeans(points, 12, num_iters=15, seed=0, tile_size=64)
  objectives = np.asarray(result.objectives)
  assert np.all(np.diff(objectives) <= 1e-3 * objectives[0])
  distances = ((points[:, None, :] - np.asarray(result.centroids)[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(np.asarray(result.assignment), distances.argmin(1))


def test_initialisation_is_the_first_k_of_a_seeded_permutation():
  points = _blobs(n=50)
  result = kmeans_lib.kmeans(points, 4, num_iters=0, seed=9)
  expected = points[np.random.default_rng(10).permutation(50)[:4]]
  np.testing.assert_array_equal(np.asarray(result.centroids), expected)


def test_split_copies_a_populated_cluster_and_pushes_the_pair_apart():
  """N = 4, k = 3, counts [3, 0, 1]: cluster 0 is accepted with probability
  (3 - 1) / (4 - 3) >= 1 and cluster 2 ((1 - 1) / 1 = 0) never, so the result is fixed."""
  centroids = jnp.array([[1.0, 2.0, 3.0], [9.0, 9.0, 9.0], [5.0, 5.0, 5.0]])
  new, counts = kmeans_lib.split_empty_clusters(centroids, jnp.array([3, 0, 1]), num_points=4)
  eps = 1 / 1024
  np.testing.assert_allclose(np.asarray(new), [
      [1 * (1 - eps), 2 * (1 + eps), 3 * (1 - eps)],
      [1 * (1 + eps), 2 * (1 - eps), 3 * (1 + eps)],
      [5.0, 5.0, 5.0]], rtol=1e-7)
  np.testing.assert_array_equal(np.asarray(counts), [2, 1, 1])


def test_every_empty_cluster_is_split_from_a_cluster_of_two_or_more():
  centroids = jnp.arange(12.0).reshape(6, 2) + 1
  counts = jnp.array([0, 40, 0, 1, 0, 19])
  new, new_counts = kmeans_lib.split_empty_clusters(centroids, counts, num_points=60)
  new, new_counts = np.asarray(new), np.asarray(new_counts)
  assert new_counts.sum() == 60 and np.all(new_counts > 0)
  assert new_counts[3] == 1                                      # a singleton is never split
  np.testing.assert_array_equal(new[3], np.asarray(centroids)[3])
  populated = np.asarray(centroids)[[1, 5]]                     # the clusters of >= 2 points
  for i in (0, 2, 4):  # each former empty cluster is a slightly moved copy of one of them
    assert np.min(np.max(np.abs(new[i] / populated - 1), axis=1)) < 3 / 1024


def test_empty_clusters_are_refilled_during_the_iterations():
  """k-means from k copies of one point: every cluster but one starts empty."""
  points = _blobs(n=400, d=4, k=8, seed=2)
  start = np.repeat(points[:1], 8, axis=0)
  result = kmeans_lib.kmeans(points, 8, num_iters=20, initial_centroids=start)
  assert np.all(np.asarray(result.counts) > 0)
  assert float(result.objectives[-1]) < 0.5 * float(result.objectives[0])


@pytest.mark.parametrize("devices", [2, 8])
def test_sharded_equals_one_device_with_padding(devices):
  points = _blobs(n=1003, d=16, k=20, seed=4)          # 1003: no even split, no whole tiles
  single = kmeans_lib.kmeans(points, 20, num_iters=8, seed=1, tile_size=256)
  mesh = partition.create_mesh(devices)
  sharded = kmeans_lib.kmeans(points, 20, num_iters=8, seed=1, tile_size=32, mesh=mesh)
  np.testing.assert_array_equal(np.asarray(sharded.assignment), np.asarray(single.assignment))
  np.testing.assert_allclose(np.asarray(sharded.centroids), np.asarray(single.centroids),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(sharded.objectives), np.asarray(single.objectives),
                             rtol=1e-5)
  assert int(jnp.sum(sharded.counts)) == 1003


def test_bad_arguments_name_the_problem():
  with pytest.raises(ValueError, match=r"k=10 must be in \[1, N\) for N=10"):
    kmeans_lib.kmeans(np.zeros((10, 2)), 10)
  with pytest.raises(ValueError, match=r"points must be \[N, d\]"):
    kmeans_lib.kmeans(np.zeros((10,)), 2)
