"""Segmentation scores of DTI-Sprites: ARI, ARI-FG (instance) and mIoU (semantic).

ARI is computed per image and averaged over images (not pooled over pixels), as the
original does. Two implementations share one definition: a host reference built on
scikit-learn, and a batched jax version (contingency table from a one-hot einsum) that
can run inside an eval step. Both score an image 1.0 when neither labelling puts two
pixels together that the other separates (no pixel, one pixel, one cluster in both);
the original does the same, and raises on the one remaining zero-denominator case (every
pixel its own cluster in both labellings), which scikit-learn and we score 1.0.

Semantic scores pool one confusion matrix over all pixels, match predicted labels to
classes with the Hungarian algorithm and report accuracy and IoU with and without the
background (label 0) row and column, matched separately, as the original does.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize
from sklearn import metrics as sk_metrics

from dti_jax.metrics import clustering

# C(n, 2) stays below 2**31 up to n = 65536 pixels (256 x 256), so pair counts are exact
# in int32 without enabling x64.
MAX_PIXELS = 65536


def ari_per_image(true_masks: np.ndarray, pred_masks: np.ndarray,
                  background_id: int | None = None) -> np.ndarray:
  """Host reference: scikit-learn ARI of each image, [N] float64.

  Args:
    true_masks: int [N, H, W], ground-truth instance ids.
    pred_masks: int [N, H, W], predicted ids (any labelling; only the partition counts).
    background_id: pixels whose TRUE id equals it are dropped before scoring; None keeps
      every pixel.

  Returns:
    [N] ARI values; an image with no pixel left scores 1.0.
  """
  true_masks, pred_masks = np.asarray(true_masks), np.asarray(pred_masks)
  if true_masks.shape != pred_masks.shape or true_masks.ndim < 2:
    raise ValueError(f"masks must be [N, ...] of one shape, got true {true_masks.shape} "
                     f"and pred {pred_masks.shape}")
  scores = np.empty(len(true_masks))
  for i, (true, pred) in enumerate(zip(true_masks, pred_masks)):
    true, pred = true.ravel(), pred.ravel()
    if background_id is not None:
      keep = true != background_id
      true, pred = true[keep], pred[keep]
    scores[i] = sk_metrics.adjusted_rand_score(true, pred) if true.size else 1.0
  return scores


def ari(true_masks: np.ndarray, pred_masks: np.ndarray) -> float:
  """Mean over images of the ARI over all pixels (the original's `eval_with_bkg: True`).

  Args:
    true_masks: int [N, H, W]; pred_masks: int [N, H, W].
  """
  return _mean(ari_per_image(true_masks, pred_masks, None))


def ari_fg(true_masks: np.ndarray, pred_masks: np.ndarray, background_id: int = 0) -> float:
  """Mean over images of the ARI over foreground pixels (ARI-FG, `eval_with_bkg: False`).

  Pixels whose ground-truth id is `background_id` are excluded, whatever is predicted
  there. Images with fewer than two foreground pixels score 1.0 and count in the mean.

  Args:
    true_masks: int [N, H, W], 0 = background in the datasets of the paper.
    pred_masks: int [N, H, W].
    background_id: ground-truth id of the background.
  """
  return _mean(ari_per_image(true_masks, pred_masks, background_id))


def _mean(scores: np.ndarray) -> float:
  if not scores.size:
    raise ValueError("cannot average the ARI over zero images")
  return float(scores.mean())


def _pairs(counts: jax.Array) -> jax.Array:
  """C(n, 2) for int32 counts without the n * (n - 1) overflow (n <= 65536)."""
  return jnp.where(counts % 2 == 0, (counts // 2) * (counts - 1), counts * ((counts - 1) // 2))


def adjusted_rand_index(true_ids: jax.Array, pred_ids: jax.Array, num_true_ids: int,
                        num_pred_ids: int, background_id: int | None = None) -> jax.Array:
  """Batched on-device ARI of each image, [B] float32; traceable under jit.

  The contingency table is an einsum of one-hot encodings; pair counts are exact int32
  and the score uses the pair-confusion form 2(tp·tn − fn·fp) / ((tp+fn)(fn+tn) +
  (tp+fp)(fp+tn)), whose denominator is a sum of non-negative terms, so float32 loses
  only ~1e-6 (the textbook form cancels badly on 128 x 128 images).

  Args:
    true_ids: int [B, H, W] (or [B, P]), ids in [0, num_true_ids); ids outside that
      range get an all-zero one-hot and are silently dropped.
    pred_ids: int, same shape, ids in [0, num_pred_ids).
    num_true_ids: static number of ground-truth ids (background included).
    num_pred_ids: static number of predicted ids, e.g. L + 1 layers labels.
    background_id: static; pixels whose TRUE id equals it are excluded (ARI-FG); None
      scores all pixels.

  Returns:
    [B] ARI; 1.0 where no pair of pixels is together in one labelling and apart in the
    other (fn = fp = 0), which covers every zero denominator.
  """
  if true_ids.shape != pred_ids.shape:
    raise ValueError(f"true_ids {true_ids.shape} and pred_ids {pred_ids.shape} differ")
  batch = true_ids.shape[0]
  true_ids, pred_ids = true_ids.reshape(batch, -1), pred_ids.reshape(batch, -1)
  if true_ids.shape[1] > MAX_PIXELS:
    raise ValueError(f"{true_ids.shape[1]} pixels per image exceed {MAX_PIXELS} (int32 pairs)")
  true_onehot = jax.nn.one_hot(true_ids, num_true_ids, dtype=jnp.float32)
  if background_id is not None:
    true_onehot = true_onehot * (true_ids != background_id)[..., None]
  pred_onehot = jax.nn.one_hot(pred_ids, num_pred_ids, dtype=jnp.float32)
  # HIGHEST keeps the 0/1 products exact on GPUs that default to TF32 matmuls.
  counts = jnp.einsum("bpi,bpj->bij", true_onehot, pred_onehot,
                      precision=jax.lax.Precision.HIGHEST)
  counts = jnp.round(counts).astype(jnp.int32)                  # [B, I, J]
  true_sizes, pred_sizes = counts.sum(axis=2), counts.sum(axis=1)
  tp = _pairs(counts).sum(axis=(1, 2))                          # together in both
  same_true = _pairs(true_sizes).sum(axis=1)
  same_pred = _pairs(pred_sizes).sum(axis=1)
  fn, fp = same_true - tp, same_pred - tp
  tn = _pairs(true_sizes.sum(axis=1)) - same_true - same_pred + tp
  tp, tn, fn, fp = (x.astype(jnp.float32) for x in (tp, tn, fn, fp))
  numerator = 2.0 * (tp * tn - fn * fp)
  denominator = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
  perfect = (fn == 0) & (fp == 0)
  return jnp.where(perfect, 1.0, numerator / jnp.where(perfect, 1.0, denominator))


def segmentation_confusion(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
  """[num_classes, num_classes] pixel counts pooled over images; rows true, columns pred.

  Sum the matrices of several batches to pool over a whole evaluation set.

  Args:
    true: int [N, H, W], semantic class per pixel, 0 = background.
    pred: int [N, H, W], predicted label per pixel (1 + sprite index, 0 = none).
    num_classes: number of labels, background included; both arrays must lie in
      [0, num_classes).
  """
  true, pred = np.asarray(true).ravel(), np.asarray(pred).ravel()
  for name, values in (("true", true), ("pred", pred)):
    if values.size and (values.min() < 0 or values.max() >= num_classes):
      raise ValueError(f"{name} labels span [{values.min()}, {values.max()}], outside "
                       f"[0, num_classes={num_classes})")
  return clustering.confusion_matrix(true, pred, num_classes, num_classes)


def segmentation_scores(confusion: np.ndarray) -> dict[str, float]:
  """Scores of the original's semantic and cosegmentation evaluation.

  For the full matrix and for the one without the background row and column (each
  matched on its own with the Hungarian algorithm): global accuracy, mean per-class
  accuracy and mean IoU. A class absent from both the truth and its matched prediction
  has IoU (and accuracy) 0 and still counts in the mean, as in the original.

  Args:
    confusion: [C, C] counts from `segmentation_confusion`, C >= 2.

  Returns:
    global_acc, avg_acc, avg_iou, their `_nobkg` variants and iou_cls{k} for k < C
    (with background; iou_cls1 is the foreground IoU of a cosegmentation).
  """
  confusion = np.asarray(confusion)
  scores = {}
  for suffix, matrix in (("_nobkg", confusion[1:, 1:]), ("", confusion)):
    rows, cols = optimize.linear_sum_assignment(-matrix)
    matrix = matrix[:, cols[np.argsort(rows)]]
    hits = np.diag(matrix).astype(np.float64)
    support, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    union = support + predicted - hits
    acc = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    iou = np.divide(hits, union, out=np.zeros_like(hits), where=union > 0)
    scores[f"global_acc{suffix}"] = float(hits.sum() / max(matrix.sum(), 1))
    scores[f"avg_acc{suffix}"] = float(acc.mean())
    scores[f"avg_iou{suffix}"] = float(iou.mean())
  scores.update({f"iou_cls{k}": float(value) for k, value in enumerate(iou)})
  return scores


def miou(true: np.ndarray, pred: np.ndarray, num_classes: int,
         with_background: bool = True) -> float:
  """Mean IoU after Hungarian matching, pooled over all pixels of all images.

  Args:
    true: int [N, H, W]; pred: int [N, H, W]; labels in [0, num_classes), 0 = background.
    num_classes: number of labels, background included.
    with_background: False drops the background row and column before matching.
  """
  scores = segmentation_scores(segmentation_confusion(true, pred, num_classes))
  return scores["avg_iou" if with_background else "avg_iou_nobkg"]
