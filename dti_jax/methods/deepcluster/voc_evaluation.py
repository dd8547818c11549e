"""VOC 2007 classification scores: ten-view test and mAP over the classes (the original's
``evaluate`` in ``eval_voc_classif.py``).

Each test image is seen through 10 views in eval mode (no dropout) and its score per
class is the sum of the 10 logits (the original's default ``--eval_random_crops 1``:
10 independent flip + RandomResizedCrop views; with ``voc.eval_random_crops`` False:
Resize(256) + TenCrop(224)). Per class, the images labelled difficult-only (VOC label
0) are left out and the average precision is scikit-learn's ``average_precision_score``
(the sum over score thresholds of recall increase x precision), computed here in NumPy
on the scores minus 1e-5 x the 0/1 label, as the original does to rank tied positives
last. mAP is the mean over the classes. The per-image scores are saved as
``voc_scores_<split>.npz`` (ids, classes, VOC labels, scores).
"""

import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from data_pipelines import voc
from dti_jax.methods.deepcluster import network as network_lib
from dti_jax.run import partition, reporting
from dti_jax.run import scores as scores_lib

TIE_EPSILON = 1e-5


def average_precision(positive: np.ndarray, scores: np.ndarray) -> float:
  """scikit-learn's binary average precision: sum over the distinct score thresholds, from
  the highest, of (recall increase) x precision; 0 without positives."""
  positive = np.asarray(positive, bool)
  total = int(positive.sum())
  if total == 0:
    return 0.0
  order = np.argsort(-np.asarray(scores, np.float64), kind="mergesort")
  ranked, hits = np.asarray(scores, np.float64)[order], positive[order]
  last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # end of each tie group
  true_positives = np.cumsum(hits)[last]
  precision = true_positives / (last + 1)
  recall_increase = np.diff(np.r_[0, true_positives]) / total
  return float(np.sum(recall_increase * precision))


def class_average_precisions(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """[C] APs from VOC labels [N, C] (1, -1, 0 = difficult, left out) and scores [N, C]."""
  aps = []
  for k in range(labels.shape[1]):
    kept = labels[:, k] != 0
    positive = labels[kept, k] == 1
    aps.append(average_precision(positive, scores[kept, k] - TIE_EPSILON * positive))
  return np.asarray(aps)


class Evaluator:
  """Scores of the state on the test split or another split; ``logits`` is a function
  of (params, batch_stats, normalised images) -> [B, C] in eval mode."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
               test: voc.VocSet, logits: Callable[..., jax.Array]):
    self.config, self.mesh, self.test = config, mesh, test

    def summed_logits(params, batch_stats, views):
      batch, count = views.shape[:2]
      images = network_lib.normalize(config, views.reshape((batch * count,) + views.shape[2:]))
      out = logits(params, batch_stats, images)
      return out.reshape(batch, count, -1).sum(axis=1)

    repl, data = partition.replicated(mesh), partition.data_sharding(mesh)
    self.summed_logits = jax.jit(summed_logits, in_shardings=(repl, repl, data),
                                 out_shardings=repl)

  def predict(self, state, source: voc.VocSet) -> np.ndarray:
    """float32 [N, C]: each image's logits summed over its 10 views."""
    c = self.config
    out = np.zeros((source.num_examples, source.num_classes), np.float32)
    batches = voc.eval_batches(
        source, global_batch_size=c.eval.batch_size, size=c.data.crop_size,
        resize=c.data.resize_size, random_crops=c.voc.eval_random_crops,
        scale=(c.voc.min_scale, c.voc.max_scale), seed=c.seed + 1, views=c.voc.eval_views,
        workers=c.data.workers, process_index=jax.process_index(),
        process_count=jax.process_count())
    for number, batch in enumerate(batches):
      views = partition.to_global({"image": batch["image"]}, self.mesh)["image"]
      summed = np.asarray(jax.device_get(self.summed_logits(state.params, state.batch_stats,
                                                            views)))
      rows = np.arange(number * c.eval.batch_size,
                       min((number + 1) * c.eval.batch_size, source.num_examples))
      out[rows] = summed[:len(rows)]
    return out

  def split_scores(self, state, source: voc.VocSet, prefix: str = ""
                   ) -> tuple[dict[str, float], np.ndarray]:
    """({prefix}map and {prefix}ap_<class>, the per-image scores)."""
    predicted = self.predict(state, source)
    aps = class_average_precisions(source.labels, predicted)
    scores = {f"{prefix}map": float(np.mean(aps))}
    scores.update({f"{prefix}ap_{name}": float(ap) for name, ap in zip(source.classes, aps)})
    return scores, predicted

  def scores(self, state, stage=None) -> dict[str, float]:
    del stage
    return self.split_scores(state, self.test)[0]

  def images(self, state, stage=None) -> dict[str, np.ndarray]:
    del state, stage
    return {}


def save_scores(workdir: str, source: voc.VocSet, predicted: np.ndarray) -> None:
  """``voc_scores_<split>.npz`` (process 0): ids, classes, VOC labels and scores."""
  if jax.process_index() != 0:
    return
  np.savez(os.path.join(workdir, f"voc_scores_{source.split}.npz"), ids=np.asarray(source.ids),
           classes=np.asarray(source.classes), labels=source.labels, scores=predicted)


def final_evaluation(evaluator: Evaluator, state, stage, source: voc.VocSet, writer,
                     workdir: str) -> dict[str, Any]:
  """Test mAP and per-class APs (and, with ``voc.score_train``, the training split's mAP,
  as the original prints both) to TensorBoard (eval/...), final_scores.json and the
  per-image scores to voc_scores_<split>.npz."""
  del stage
  final, predicted = evaluator.split_scores(state, evaluator.test)
  save_scores(workdir, evaluator.test, predicted)
  if evaluator.config.voc.score_train:
    train, predicted = evaluator.split_scores(state, source, prefix="train_")
    save_scores(workdir, source, predicted)
    final["train_map"] = train["train_map"]
  scores_lib.write_eval(writer, int(state.step), "eval", final)
  scores_lib.write_scores_json(workdir, final)
  reporting.console(f"VOC {evaluator.test.split} mAP {final['map']:.4f}"
                    + (f", {source.split} mAP {final['train_map']:.4f}"
                       if "train_map" in final else ""))
  return final
