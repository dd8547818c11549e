"""DeepCluster's scores of a representation (the offline benchmark's measures), at the
end of a run and for the same network at its random initialisation."""

from typing import Any

import jax
import ml_collections
import numpy as np
from sklearn import linear_model, preprocessing

from dti_jax.methods.deepcluster import clustering, trainer
from dti_jax.methods.deepcluster import data as deepcluster_data
from dti_jax.methods.deepcluster.clustering import cluster, nmi
from dti_jax.run import partition
from dti_jax.run import scores as scores_lib


def representation_scores(config: ml_collections.ConfigDict,
                          run: clustering.FeatureExtractor,
                          features: clustering.FeaturePass) -> dict[str, float]:
  """The offline benchmark's measures of a representation (spec section 10).

  NMI of k-means (k = eval.nmi_k, or config.cluster.k when 0, on PCA-whitened + L2
  features) with the labels, averaged over seeds; kNN (cosine, k = eval.knn_k) and logistic-regression accuracy on
  standardised features, trained on eval.probe_train_size images of a fixed random
  split and scored on the others. Holds the features on the host: small data only.
  """
  e = config.eval
  labels = features.labels
  kmeans_config = config
  if e.get("nmi_k", 0):  # a PIC run's cluster.k is its top layer's width, not a k
    kmeans_config = ml_collections.ConfigDict(config.to_dict())
    kmeans_config.cluster.k = e.nmi_k
  nmis = [nmi(cluster(kmeans_config, run, features, seed)[0], labels)
          for seed in range(e.nmi_seeds)]
  host = features.to_host()
  # A fixed random split (the embedded MNIST sample is sorted by class).
  order = np.random.default_rng(0).permutation(len(labels))
  train, test = order[:e.probe_train_size], order[e.probe_train_size:]
  unit = host / np.linalg.norm(host, axis=1, keepdims=True)
  neighbours = np.argsort(-(unit[test] @ unit[train].T), axis=1)[:, :e.knn_k]
  votes = labels[train][neighbours]
  knn = np.mean([np.bincount(row).argmax() == truth for row, truth in zip(votes, labels[test])])
  scaler = preprocessing.StandardScaler().fit(host[train])
  probe = linear_model.LogisticRegression(max_iter=1000).fit(
      scaler.transform(host[train]), labels[train])
  linear = probe.score(scaler.transform(host[test]), labels[test])
  return {"nmi_kmeans_labels": float(np.mean(nmis)), "knn_accuracy": float(knn),
          "linear_probe_accuracy": float(linear)}


class Evaluator:
  """Representation scores of a state; only for small labelled in-memory data
  (``eval.representation_scores``: the kNN and logistic probes hold the features on
  the host), otherwise no scores."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, source):
    self.config, self.mesh, self.source = config, mesh, source
    self.scored = (config.eval.representation_scores and source.num_classes is not None
                   and hasattr(source, "images"))
    self.extractor = clustering.FeatureExtractor(config, mesh)

  def scores(self, state, stage=None) -> dict[str, float]:
    """kNN, logistic probe and k-means NMI of the network of ``state`` ({} if unscored)."""
    del stage
    if not self.scored:
      return {}
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    features = self.extractor.feature_pass(
        variables, deepcluster_data.ordered_image_batches(self.config, self.source),
        self.source.num_examples)
    return representation_scores(self.config, self.extractor, features)

  def images(self, state, stage=None) -> dict[str, np.ndarray]:
    del state, stage
    return {}


def create_evaluator(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                     source) -> Evaluator:
  return Evaluator(config, mesh, source)


def final_evaluation(evaluator: Evaluator, state, stage, source, writer,
                     workdir: str) -> dict[str, Any]:
  """The scores of the trained network beside those of its random initialisation
  (rebuilt from config.seed), to TensorBoard and final_scores.json."""
  del stage, source
  final = evaluator.scores(state)
  if not final:
    return final
  initial = jax.device_put(
      trainer.create_state(evaluator.config, None,
                           trainer.init_arrays(evaluator.config, evaluator.source)),
      partition.replicated(evaluator.mesh))
  random_init = evaluator.scores(initial)
  final.update({f"random_init_{name}": value for name, value in random_init.items()})
  writer.write_scalars(int(state.step), {f"final/{n}": v for n, v in final.items()})
  scores_lib.write_scores_json(workdir, final)
  return final
