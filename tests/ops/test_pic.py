"""PIC against a NumPy/SciPy transcription of the original's algorithm (sparse graph,
200 power iterations, steepest-ascent pointers, singleton distribution)."""

import jax
import numpy as np
import pytest
from scipy import sparse
from sklearn import metrics

from dti_jax.ops import pic as pic_lib


def _reference(points, nnn, sigma, alpha, iterations, distribute):
  """The original's PIC step by step, on a brute-force neighbour search."""
  n = len(points)
  d2 = np.maximum((points ** 2).sum(1)[:, None] - 2 * points @ points.T
                  + (points ** 2).sum(1)[None], 0)
  np.fill_diagonal(d2, -1.0)                        # self first, as the faiss search
  order = np.argsort(d2, axis=1, kind="stable")[:, :nnn + 1]
  dist = np.take_along_axis(d2, order, axis=1)
  dist[:, 0] = 0.0
  data = np.exp(-dist[:, 1:] / sigma ** 2).astype(np.float32).reshape(-1)
  a = sparse.csr_matrix((data, order[:, 1:].reshape(-1), nnn * np.arange(n + 1)), shape=(n, n))
  w = (a + a.transpose()).tocsr()
  w.sort_indices()
  v = (np.ones(n) / n).astype(np.float32)
  for _ in range(iterations):
    v = alpha * w.transpose().dot(v) + (1 - alpha) / n
    v = (v / v.sum()).astype(np.float32)
  pointers = list(range(n))
  for i in range(n):
    best = 0
    for position in range(w.indptr[i], w.indptr[i + 1]):
      j = w.indices[position]
      gain = w.data[position] * (v[j] - v[i])
      if gain > best:
        best, pointers[i] = gain, j
  roots = []
  for i in range(n):
    node = i
    while pointers[node] != node:
      node = pointers[node]
    roots.append(node)
  clusters = np.unique(roots, return_inverse=True)[1]
  if distribute:
    sizes = np.bincount(clusters)
    moved = clusters.copy()
    for s in np.flatnonzero(sizes[clusters] == 1):
      for neighbour in order[s, 1:]:
        if sizes[clusters[neighbour]] != 1:
          moved[s] = clusters[neighbour]
          break
    clusters = np.unique(moved, return_inverse=True)[1]
  return clusters, order[:, 1:], v


def _blobs(seed, n=240, centers=6, dim=8):
  rng = np.random.default_rng(seed)
  means = rng.normal(size=(centers, dim)) * 1.5
  labels = rng.integers(0, centers, n)
  points = means[labels] + rng.normal(size=(n, dim)) * 0.6
  points /= np.linalg.norm(points, axis=1, keepdims=True)     # whitened + L2 in DeepCluster
  return points.astype(np.float32), labels


@pytest.mark.parametrize("distribute", [True, False])
def test_pic_equals_the_original_algorithm(distribute):
  points, _ = _blobs(0)
  expected, neighbours, v = _reference(points, 5, 0.2, 0.001, 200, distribute)
  result = pic_lib.pic(points, nnn=5, sigma=0.2, alpha=0.001, num_iters=200,
                       distribute_singletons=distribute, tile_size=64)
  np.testing.assert_array_equal(np.asarray(result.neighbours), neighbours)
  np.testing.assert_allclose(np.asarray(result.walk), v, rtol=2e-4)
  assert int(result.num_clusters) == expected.max() + 1 > 3
  assert metrics.adjusted_rand_score(expected, np.asarray(result.assignment)) == 1.0


def test_pic_sharded_over_four_devices_equals_one_device():
  points, _ = _blobs(1, n=250)
  mesh = jax.make_mesh((4,), ("data",), devices=jax.devices()[:4])
  one = pic_lib.pic(points, tile_size=32)
  four = pic_lib.pic(points, mesh=mesh, tile_size=32)
  np.testing.assert_array_equal(np.asarray(four.neighbours), np.asarray(one.neighbours))
  np.testing.assert_array_equal(np.asarray(four.assignment), np.asarray(one.assignment))


def test_pic_separates_well_separated_groups():
  points, truth = _blobs(2, n=300, centers=3, dim=16)
  result = pic_lib.pic(points)
  assignment = np.asarray(result.assignment)
  # Clusters are purer than chance: each found cluster lies mostly in one group.
  purity = sum(np.bincount(truth[assignment == c]).max() for c in np.unique(assignment))
  assert purity / len(points) > 0.8


def test_pic_rejects_too_many_neighbours():
  with pytest.raises(ValueError, match="nnn=10"):
    pic_lib.pic(np.zeros((10, 3), np.float32), nnn=10)
