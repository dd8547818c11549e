"""DeepCluster's training order: draws spread uniformly over the clusters.

Each epoch DeepCluster trains on N draws in which every non-empty cluster contributes
about N / n_ne images, so that a few huge clusters cannot dominate the pseudo-label
loss (the original's ``UnifLabelSampler``):

1. n_ne = number of non-empty clusters; m = N_draw // n_ne + 1;
2. for each non-empty cluster in index order, m members drawn with replacement when
   the cluster has *at most* m members and without replacement otherwise;
3. concatenated, shuffled, truncated to N_draw.

Labels are the cluster ids compacted to 0..n_ne-1 in increasing order.

The public code reads the drawn original indices as positions in a dataset ordered by
cluster, which pairs images and labels consistently but makes the label counts follow
the cluster sizes; ``compat_index_bug=True`` reproduces that for ablations. Default:
the rule as intended (drawn indices are images, labelled by their own cluster).
"""

import numpy as np


def uniform_over_clusters(assignment: np.ndarray, num_clusters: int, num_draws: int,
                          rng: np.random.Generator,
                          compat_index_bug: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """(image indices, labels), each int64 [num_draws], for one epoch.

  Args:
    assignment: int [N], the cluster of every image (values in [0, num_clusters)).
    num_clusters: k.
    num_draws: N_draw (DeepCluster: N).
    rng: the epoch's generator (seed it from (seed, epoch) for exact resumes).
    compat_index_bug: reproduce the public code's index mismatch (see module docstring).
  """
  assignment = np.asarray(assignment)
  if assignment.ndim != 1 or assignment.size == 0:
    raise ValueError(f"assignment must be a non-empty [N] array, got shape {assignment.shape}")
  if assignment.min() < 0 or assignment.max() >= num_clusters:
    raise ValueError(f"assignment values must lie in [0, {num_clusters}), got "
                     f"{assignment.min()}..{assignment.max()}")
  order = np.argsort(assignment, kind="stable")          # images grouped by cluster
  sizes = np.bincount(assignment, minlength=num_clusters)
  non_empty = np.flatnonzero(sizes)
  compact = np.full(num_clusters, -1, np.int64)
  compact[non_empty] = np.arange(len(non_empty))
  per_cluster = num_draws // len(non_empty) + 1
  starts = np.concatenate([[0], np.cumsum(sizes)])
  draws = [rng.choice(order[starts[c]:starts[c + 1]], per_cluster,
                      replace=bool(sizes[c] <= per_cluster)) for c in non_empty]
  drawn = np.concatenate(draws)
  rng.shuffle(drawn)
  drawn = drawn[:num_draws].astype(np.int64)
  if compat_index_bug:
    # The dataset's item p is image order[p] with the label of its cluster.
    return order[drawn].astype(np.int64), compact[assignment[order[drawn]]]
  return drawn, compact[assignment[drawn]]
