"""Part-discovery scores: pixel NMI / ARI from contingency tables, keypoint regression.

Unsupervised part segmentations are scored against ground-truth part labels with
NMI and ARI over the foreground pixels (spec section 9). Pixel counts reach 1e8 on
DeepFashion, so the scores come from a float64 contingency table accumulated batch
by batch, never from concatenated label arrays; NMI (arithmetic normalisation) and
ARI (pair counts) follow scikit-learn's definitions and degenerate cases exactly.
Scores are fractions: callers multiply by 100 to report them as the paper does.
Keypoint regression follows the SCOPS protocol of the unsup-parts trainer.
"""

import numpy as np
from sklearn import linear_model
from sklearn import preprocessing


def contingency(true_labels: np.ndarray, pred_labels: np.ndarray, num_true: int,
                num_pred: int) -> np.ndarray:
  """float64 [num_true, num_pred] counts of (true, predicted) label pairs.

  Args:
    true_labels, pred_labels: integer arrays of one shape, values in
      0..num_true-1 and 0..num_pred-1.
  """
  true_labels = np.asarray(true_labels).astype(np.int64).ravel()
  pred_labels = np.asarray(pred_labels).astype(np.int64).ravel()
  if true_labels.shape != pred_labels.shape:
    raise ValueError(f"contingency: {true_labels.size} true labels vs "
                     f"{pred_labels.size} predictions")
  if true_labels.size and (true_labels.min() < 0 or true_labels.max() >= num_true
                           or pred_labels.min() < 0 or pred_labels.max() >= num_pred):
    raise ValueError(f"contingency: labels outside 0..{num_true - 1} / 0..{num_pred - 1}")
  counts = np.bincount(true_labels * num_pred + pred_labels,
                       minlength=num_true * num_pred)
  return counts.reshape(num_true, num_pred).astype(np.float64)


class ContingencyAccumulator:
  """A contingency table summed over batches (optionally over masked pixels only).

  Example:
    acc = ContingencyAccumulator(6, 4)
    for labels, predictions in batches:
      acc.add(labels, predictions, mask=labels > 0)
    scores = nmi_ari(acc.table)
  """

  def __init__(self, num_true: int, num_pred: int):
    self.table = np.zeros((num_true, num_pred), np.float64)

  def add(self, true_labels: np.ndarray, pred_labels: np.ndarray,
          mask: np.ndarray | None = None) -> None:
    """Counts the pairs of one batch (where mask is true, if given)."""
    true_labels, pred_labels = np.asarray(true_labels), np.asarray(pred_labels)
    if mask is not None:
      mask = np.asarray(mask, bool)
      true_labels, pred_labels = true_labels[mask], pred_labels[mask]
    self.table += contingency(true_labels, pred_labels, *self.table.shape)


def _entropy(counts: np.ndarray, total: float) -> float:
  counts = counts[counts > 0]
  return float(-np.sum(counts / total * (np.log(counts) - np.log(total))))


def _mutual_information(table: np.ndarray, total: float) -> float:
  """sklearn's mutual_info_score from a contingency table (nats)."""
  rows, cols = np.nonzero(table)
  values = table[rows, cols]
  row_sums, col_sums = table.sum(axis=1), table.sum(axis=0)
  outer = row_sums[rows] * col_sums[cols]
  terms = values / total * (np.log(values) - np.log(total)
                            - np.log(outer) + 2 * np.log(total))
  terms = np.where(np.abs(terms) < np.finfo(np.float64).eps, 0.0, terms)
  return max(float(terms.sum()), 0.0)


def nmi_ari(table: np.ndarray) -> dict[str, float]:
  """NMI and ARI of a contingency table, as fractions (not x100).

  NMI = MI / mean(H_true, H_pred) (sklearn's default average_method="arithmetic");
  ARI from the pair counts sum C(n_ij, 2), sum C(a_i, 2), sum C(b_j, 2), C(n, 2) in
  float64. Degenerate cases as sklearn: NMI is 1 when both sides have a single
  label (or there are no samples) and 0 when the mutual information is 0; ARI is 1
  when the two partitions agree on every pair (e.g. one cluster on both sides).
  """
  table = np.asarray(table, np.float64)
  total = float(table.sum())
  row_sums, col_sums = table.sum(axis=1), table.sum(axis=0)
  num_classes, num_clusters = np.count_nonzero(row_sums), np.count_nonzero(col_sums)
  if num_classes == num_clusters and num_classes <= 1:
    nmi = 1.0
  else:
    mi = _mutual_information(table, total)
    if mi == 0:
      nmi = 0.0
    else:
      mean_entropy = (_entropy(row_sums, total) + _entropy(col_sums, total)) / 2
      nmi = mi / max(mean_entropy, np.finfo(np.float64).eps)
  return {"nmi": float(nmi), "ari": _ari(table, row_sums, col_sums, total)}


def _ari(table, row_sums, col_sums, total) -> float:
  def pairs(x):
    return float(np.sum(x * (x - 1) / 2))

  together = pairs(table)  # Pairs in the same class and the same cluster.
  same_class, same_cluster = pairs(row_sums), pairs(col_sums)
  if same_class == together and same_cluster == together:
    return 1.0  # sklearn: no pair split by one partition only.
  expected = same_class * same_cluster / (total * (total - 1) / 2)
  return float((together - expected) / ((same_class + same_cluster) / 2 - expected))


def foreground_scores(part_labels: np.ndarray, predictions: np.ndarray,
                      num_parts: int) -> dict[str, float]:
  """FG-NMI / FG-ARI (fractions) over the pixels with a ground-truth part (label > 0).

  Args:
    part_labels: int [N, H, W], 0 = background, 1..P the parts.
    predictions: int [N, H, W] in 0..num_parts-1 (e.g. argmax over K parts).
  """
  part_labels, predictions = np.asarray(part_labels), np.asarray(predictions)
  if part_labels.shape != predictions.shape:
    raise ValueError(f"foreground_scores: labels {part_labels.shape} vs predictions "
                     f"{predictions.shape}")
  accumulator = ContingencyAccumulator(int(part_labels.max(initial=0)) + 1, num_parts)
  for start in range(0, len(part_labels), 256):  # Bounds the masked copies.
    labels = part_labels[start:start + 256]
    accumulator.add(labels, predictions[start:start + 256], mask=labels > 0)
  return nmi_ari(accumulator.table)


def part_centres(probabilities: np.ndarray) -> np.ndarray:
  """Centres of mass of soft part maps, float64 [N, K, 2] as (x, y) / side.

  Args:
    probabilities: [N, H, W, K] mask-gated assignments M = softmax * mask.

  Returns:
    sum_u M_ku (x, y) / max(sum_u M_ku, 1), x and y the column and row indices
    divided by W and H (SCOPS and unsup-parts; a part of mass below 1 is pulled
    towards the origin, as there).
  """
  probabilities = np.asarray(probabilities, np.float64)
  _, height, width, _ = probabilities.shape
  mass = np.maximum(probabilities.sum(axis=(1, 2)), 1.0)  # [N, K]
  x = np.einsum("nhwk,w->nk", probabilities, np.arange(width, dtype=np.float64))
  y = np.einsum("nhwk,h->nk", probabilities, np.arange(height, dtype=np.float64))
  return np.stack([x / mass / width, y / mass / height], axis=-1)


def keypoint_regression_error(train_centres: np.ndarray, train_kps: np.ndarray,
                              train_visible: np.ndarray, test_centres: np.ndarray,
                              test_kps: np.ndarray, test_visible: np.ndarray,
                              test_subset: np.ndarray | None = None) -> float:
  """Mean L2 error (x100) of keypoints regressed linearly from part centres (spec 9.5).

  For each keypoint p separately, over the training images where p is visible:
  StandardScaler on the flattened 2K centres and on the keypoint,
  LinearRegression(fit_intercept=False) between the standardised values; the
  visible test keypoints are predicted and inverse-transformed. The error is
  the sum of L2 distances over all visible test keypoints divided by their
  number, times 100.

  Args:
    train_centres, test_centres: [N, K, 2] part centres (e.g. `part_centres`).
    train_kps, test_kps: [N, P, 2] keypoints in the same normalised units.
    train_visible, test_visible: [N, P], visible where > 0.5 (or True).
    test_subset: optional bool [N_test]: score these test images only (e.g.
      one CUB species); the regressions still use every training image.
  """
  train_flat = np.asarray(train_centres, np.float64).reshape(len(train_centres), -1)
  test_flat = np.asarray(test_centres, np.float64).reshape(len(test_centres), -1)
  train_kps, test_kps = np.asarray(train_kps, np.float64), np.asarray(test_kps, np.float64)
  train_visible = np.asarray(train_visible, np.float64) > 0.5
  test_visible = np.asarray(test_visible, np.float64) > 0.5
  fitted = np.zeros_like(test_kps)
  for p in range(train_kps.shape[1]):
    train_rows, test_rows = train_visible[:, p], test_visible[:, p]
    scale_centres = preprocessing.StandardScaler().fit(train_flat[train_rows])
    scale_kps = preprocessing.StandardScaler().fit(train_kps[train_rows, p])
    model = linear_model.LinearRegression(fit_intercept=False).fit(
        scale_centres.transform(train_flat[train_rows]),
        scale_kps.transform(train_kps[train_rows, p]))
    if test_rows.any():
      fitted[test_rows, p] = scale_kps.inverse_transform(
          model.predict(scale_centres.transform(test_flat[test_rows])))
  errors = np.linalg.norm(fitted - test_kps, axis=-1) * test_visible
  if test_subset is not None:
    subset = np.asarray(test_subset, bool)
    errors, test_visible = errors[subset], test_visible[subset]
  return float(100 * errors.sum() / max(test_visible.sum(), 1))
