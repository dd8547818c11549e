"""Clustering scores of the DTI papers: Hungarian accuracy, NMI, ARI (host-side numpy).

Matching is delegated to scipy and NMI/ARI to scikit-learn, the libraries the original
code uses, so the numbers are comparable with the published ones.
"""

import numpy as np
from scipy import optimize
from sklearn import metrics as sk_metrics


def confusion_matrix(labels: np.ndarray, clusters: np.ndarray, num_classes: int,
                     num_clusters: int) -> np.ndarray:
  """[num_classes, num_clusters] counts; rows are true classes, columns clusters."""
  flat = labels.astype(np.int64) * num_clusters + clusters.astype(np.int64)
  counts = np.bincount(flat, minlength=num_classes * num_clusters)
  return counts[: num_classes * num_clusters].reshape(num_classes, num_clusters)


def matched_confusion(labels: np.ndarray, clusters: np.ndarray, num_classes: int,
                      num_clusters: int) -> np.ndarray:
  """Confusion matrix with clusters mapped to classes, [num_classes, num_classes].

  With as many clusters as classes the mapping is the Hungarian one-to-one matching;
  otherwise each cluster goes to its majority class (many-to-one), as the original.
  """
  conf = confusion_matrix(labels, clusters, num_classes, num_clusters)
  if num_clusters == num_classes:
    rows, cols = optimize.linear_sum_assignment(-conf)
    return conf[:, cols[np.argsort(rows)]]
  mapped = np.zeros((num_classes, num_classes), conf.dtype)
  for cluster in range(num_clusters):
    mapped[:, np.argmax(conf[:, cluster])] += conf[:, cluster]
  return mapped


def clustering_scores(labels: np.ndarray, clusters: np.ndarray, num_classes: int,
                      num_clusters: int) -> dict[str, float]:
  """acc (global, the paper's ACC), avg_acc (mean per-class recall), nmi, ari."""
  labels = np.asarray(labels)
  clusters = np.asarray(clusters)
  mapped = matched_confusion(labels, clusters, num_classes, num_clusters)
  support = mapped.sum(axis=1)
  recall = np.divide(np.diag(mapped), support, out=np.zeros(num_classes), where=support > 0)
  return {
      "acc": float(np.trace(mapped) / max(mapped.sum(), 1)),
      "avg_acc": float(recall.mean()),
      "nmi": normalized_mutual_info(labels, clusters),
      "ari": float(sk_metrics.adjusted_rand_score(labels, clusters)),
  }


def cluster_proportions(clusters: np.ndarray, num_clusters: int) -> np.ndarray:
  """Fraction of examples assigned to each cluster, [num_clusters]."""
  return np.bincount(clusters, minlength=num_clusters) / max(len(clusters), 1)


def normalized_mutual_info(a: np.ndarray, b: np.ndarray) -> float:
  """NMI (arithmetic mean normalisation) between two labellings, e.g. consecutive evals."""
  return float(sk_metrics.normalized_mutual_info_score(a, b, average_method="arithmetic"))
