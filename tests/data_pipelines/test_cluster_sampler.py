"""DeepCluster's uniform-over-clusters sampler: the <= rule, counts, labels, the compat mode."""

import numpy as np
import pytest

from data_pipelines import cluster_sampler


def _assignment():
  # Sizes: cluster 0 -> 1 image, 1 -> 50, 2 -> empty, 3 -> 9; N = 60.
  return np.array([0] + [1] * 50 + [3] * 9)[np.random.default_rng(0).permutation(60)]


def test_each_non_empty_cluster_gets_m_draws_before_truncation():
  assignment = _assignment()
  images, labels = cluster_sampler.uniform_over_clusters(
      assignment, 4, 60, np.random.default_rng(1))
  assert images.shape == labels.shape == (60,)
  # n_ne = 3, m = 60 // 3 + 1 = 21: 63 draws truncated to 60.
  counts = np.bincount(labels, minlength=3)
  assert counts.sum() == 60 and np.all(counts <= 21) and np.all(counts >= 18)
  np.testing.assert_array_equal(labels, np.array([0, 1, -1, 2])[assignment[images]])


def test_small_clusters_are_drawn_with_replacement_large_ones_without():
  assignment = _assignment()
  images, labels = cluster_sampler.uniform_over_clusters(
      assignment, 4, 60, np.random.default_rng(2))
  singleton = np.flatnonzero(assignment == 0)[0]
  assert np.all(images[labels == 0] == singleton)            # 1 <= 21: with replacement
  large = images[labels == 1]
  assert len(np.unique(large)) == len(large)                 # 50 > 21: without
  # The rule is <=: a cluster of exactly m members is drawn with replacement.
  exact = np.repeat([0, 1], [21, 39])                          # m = 40 // 2 + 1 = 21
  repeats = []
  for seed in range(20):
    drawn, drawn_labels = cluster_sampler.uniform_over_clusters(
        exact, 2, 40, np.random.default_rng(seed))
    chosen = drawn[drawn_labels == 0]
    repeats.append(len(np.unique(chosen)) < len(chosen))
  assert any(repeats)


def test_same_seed_same_order():
  a = cluster_sampler.uniform_over_clusters(_assignment(), 4, 60, np.random.default_rng(5))
  b = cluster_sampler.uniform_over_clusters(_assignment(), 4, 60, np.random.default_rng(5))
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])


def test_compat_mode_pairs_images_with_their_own_cluster_but_skews_the_labels():
  rng = np.random.default_rng(3)
  sizes = np.array([2000, 500, 100, 20])
  assignment = rng.permutation(np.repeat(np.arange(4), sizes))
  images, labels = cluster_sampler.uniform_over_clusters(
      assignment, 4, len(assignment), np.random.default_rng(4), compat_index_bug=True)
  np.testing.assert_array_equal(labels, assignment[images])  # still consistent pairs
  counts = np.bincount(labels, minlength=4)
  assert np.corrcoef(counts, sizes)[0, 1] > 0.9               # ... but proportional to size
  _, fair = cluster_sampler.uniform_over_clusters(assignment, 4, len(assignment),
                                                  np.random.default_rng(4))
  fair_counts = np.bincount(fair, minlength=4)
  assert fair_counts.max() - fair_counts.min() <= 4


def test_bad_assignment_is_refused():
  with pytest.raises(ValueError, match=r"values must lie in \[0, 3\)"):
    cluster_sampler.uniform_over_clusters(np.array([0, 3]), 3, 2, np.random.default_rng(0))
