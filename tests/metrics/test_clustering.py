import itertools

import numpy as np
from sklearn import metrics as sk_metrics

from dti_jax.metrics import clustering


def test_permuted_labelling_scores_one():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 10, size=500)
  permutation = rng.permutation(10)
  scores = clustering.clustering_scores(labels, permutation[labels], 10, 10)
  assert scores["acc"] == 1.0
  assert scores["avg_acc"] == 1.0
  np.testing.assert_allclose(scores["nmi"], 1.0)
  np.testing.assert_allclose(scores["ari"], 1.0)


def test_hungarian_accuracy_is_best_permutation():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 4, size=200)
  clusters = np.where(rng.random(200) < 0.6, (labels + 1) % 4, rng.integers(0, 4, size=200))
  best = max(np.mean(np.asarray(perm)[clusters] == labels)
             for perm in itertools.permutations(range(4)))
  assert np.isclose(clustering.clustering_scores(labels, clusters, 4, 4)["acc"], best)


def test_more_clusters_than_classes_maps_to_majority():
  labels = np.array([0, 0, 0, 1, 1, 1])
  clusters = np.array([0, 1, 1, 2, 2, 0])  # cluster 0 tie -> class 0 (first max)
  scores = clustering.clustering_scores(labels, clusters, 2, 3)
  assert np.isclose(scores["acc"], 5 / 6)


def test_nmi_and_ari_match_sklearn():
  rng = np.random.default_rng(2)
  labels = rng.integers(0, 5, size=300)
  clusters = rng.integers(0, 5, size=300)
  scores = clustering.clustering_scores(labels, clusters, 5, 5)
  assert np.isclose(scores["nmi"], sk_metrics.normalized_mutual_info_score(labels, clusters))
  assert np.isclose(scores["ari"], sk_metrics.adjusted_rand_score(labels, clusters))


def test_proportions_sum_to_one_and_count_empty_clusters():
  props = clustering.cluster_proportions(np.array([0, 0, 2, 2, 2, 2]), 4)
  np.testing.assert_allclose(props, [2 / 6, 0, 4 / 6, 0])
