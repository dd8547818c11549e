"""Instance-level retrieval mAP as the Oxford5k / Paris6k benchmarks define it.

The official ``compute_ap`` (Oxford Buildings' ``compute_ap.cpp``, which DeepCluster's
``eval_retrieval.py`` calls once per query) walks the ranked list, skips the junk
images, and adds the area of the precision-recall curve between consecutive recall
steps by the trapezoid rule: ``(r_i - r_{i-1}) * (p_{i-1} + p_i) / 2`` with
``p_0 = 1`` and ``r_0 = 0``, where i counts the non-junk images seen so far and the
recall divides by the number of positives (good + ok) the ground truth lists, found in
the ranking or not. The mean over the queries is the reported mAP. Computed here in
float64 (the binary uses float32).
"""

from collections.abc import Collection, Sequence

import numpy as np


def average_precision(ranking: Sequence[str], positives: Collection[str],
                      junk: Collection[str] = ()) -> float:
  """AP of one query: ``ranking`` (image names, best first), its good + ok ``positives``
  and ``junk`` names (removed from the ranking before counting ranks)."""
  positives, junk = set(positives), set(junk)
  if not positives:
    raise ValueError("average_precision: the query has no positive (good or ok) image")
  ap, old_recall, old_precision, found, rank = 0.0, 0.0, 1.0, 0, 0
  for name in ranking:
    if name in junk:
      continue
    found += name in positives
    rank += 1
    recall, precision = found / len(positives), found / rank
    ap += (recall - old_recall) * (old_precision + precision) / 2.0
    old_recall, old_precision = recall, precision
  return ap


def mean_average_precision(rankings: Sequence[Sequence[str]],
                           positives: Sequence[Collection[str]],
                           junk: Sequence[Collection[str]]) -> tuple[float, np.ndarray]:
  """(mAP, float64 [Q] per-query AP) over the queries' rankings and ground truth."""
  if not len(rankings) == len(positives) == len(junk) or not rankings:
    raise ValueError(f"mean_average_precision: {len(rankings)} rankings, {len(positives)} "
                     f"positive and {len(junk)} junk lists; expected the same number > 0")
  aps = np.array([average_precision(r, p, j) for r, p, j in zip(rankings, positives, junk)])
  return float(aps.mean()), aps
