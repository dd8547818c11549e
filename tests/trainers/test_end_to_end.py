"""End-to-end run on the embedded MNIST sample: learning and the files a run leaves.

(Resuming after kills and signals is tested in test_reliability.py.)
"""

import json
import os

from sklearn import cluster as sk_cluster

from dti_jax import methods
import data_pipelines
from configs import mnist
from dti_jax.metrics import clustering


def _pixel_kmeans_accuracy(source) -> float:
  pixels = source.images.reshape(source.num_examples, -1) / 255.0
  clusters = sk_cluster.KMeans(10, n_init=1, random_state=0).fit_predict(pixels)
  return clustering.clustering_scores(source.labels, clusters, 10, 10)["acc"]


def test_short_mnist5k_run_beats_kmeans_on_pixels(tmp_path):
  """Identity (gradient k-means) then affine phase on the 5,000 real MNIST images."""
  config = mnist.get_config("embedded")
  config.model.transformation_sequence = "identity_affine"
  config.train.curriculum_epochs = (1,)
  config.train.num_epochs = 5
  config.optim.lr_decay_epochs = (4,)
  config.eval.every_steps = 10**6
  final = methods.train_and_evaluate(config, str(tmp_path), num_devices=1)
  baseline = _pixel_kmeans_accuracy(data_pipelines.load_source("mnist_embedded"))
  assert final["acc"] > baseline + 0.05, (final, baseline)
  assert final["nmi"] > 0.5
  # The run leaves what a user looks at: prototypes, scores, TensorBoard events, config.
  files = os.listdir(tmp_path)
  assert {"prototypes.png", "final_scores.json", "config.json"} <= set(files)
  assert any(name.startswith("events.out.tfevents") for name in files)
  assert len(os.listdir(tmp_path / "prototypes")) == 10
  with open(tmp_path / "final_scores.json") as f:
    assert json.load(f)["acc"] == final["acc"]
