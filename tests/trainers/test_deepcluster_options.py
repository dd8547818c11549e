"""DeepCluster's clustering options on scikit-learn's digits: power iteration clustering
in the loop, re-clustering every r epochs, and the saved assignments."""

import glob
import os

import jax
import numpy as np
import tensorflow as tf
from sklearn import metrics

from configs import deepcluster_mnist
import data_pipelines
from data_pipelines import cluster_sampler
from dti_jax import methods
from dti_jax.methods.deepcluster import assignments, trainer
from dti_jax.run import partition


def _smoke(epochs, variant="smoke", **cluster):
  config = deepcluster_mnist.get_config(variant)
  config.train.num_epochs = epochs
  config.eval.nmi_seeds = 1
  config.cluster.update(cluster)
  return config


def _scalars(workdir, tag):
  values = {}
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def test_pic_run_clusters_the_digits_and_saves_each_clustering(tmp_path):
  workdir = str(tmp_path / "pic")
  scores = methods.train_and_evaluate(_smoke(2, "pic,smoke", reassign_epochs=1), workdir,
                                      num_devices=1)
  assert np.isfinite(scores["knn_accuracy"])
  saved = assignments.read_workdir(workdir)
  assert sorted(saved) == [1, 2]
  counts = _scalars(workdir, "train/pic_clusters")
  assert [counts[step] for step in sorted(counts)] == [saved[1].max() + 1, saved[2].max() + 1]
  labels = data_pipelines.load_source("digits_embedded").labels
  for clusters in saved.values():
    # As many clusters as PIC found, every one used, and far from a random partition.
    assert 20 < clusters.max() + 1 <= 400
    assert np.all(np.bincount(clusters) > 0)
    shuffled = np.random.default_rng(0).permutation(clusters)
    nmi = metrics.normalized_mutual_info_score(labels, clusters, average_method="geometric")
    chance = metrics.normalized_mutual_info_score(labels, shuffled, average_method="geometric")
    assert nmi > chance + 0.2, (nmi, chance)
  losses = _scalars(workdir, "train/loss")
  assert all(np.isfinite(list(losses.values())))


def test_reassign_epochs_keeps_labels_sampler_and_top_layer_between_clusterings(tmp_path):
  config = _smoke(4, reassign_epochs=2)
  source = data_pipelines.load_source("digits_embedded")
  mesh = partition.create_mesh(1)
  state = jax.device_put(trainer.create_state(config, None, trainer.init_arrays(config, source)),
                         partition.replicated(mesh))
  epoch_start = trainer.epoch_start_function(config, mesh, source, str(tmp_path))
  state, first_batches, scalars, _ = epoch_start(state, 0, 0)
  assert "train/kmeans_loss" in scalars
  head = jax.device_get(state.head)
  state, second_batches, scalars, message = epoch_start(state, 1, 0)
  assert scalars == {} and message == ""
  np.testing.assert_array_equal(jax.device_get(state.head)["kernel"], head["kernel"])
  # The two epochs are the two halves of one draw of 2 N images from the one clustering.
  assignment = np.asarray(state.assignment)
  _, labels = cluster_sampler.uniform_over_clusters(
      assignment, config.cluster.k, 2 * source.num_examples,
      np.random.default_rng([config.seed, 0]), config.sampler.compat_index_bug)
  got = [np.concatenate([b["label"] for b in batches])
         for batches in (list(first_batches), list(second_batches))]
  n = source.num_examples
  for half, labels_half in zip(got, (labels[:n], labels[n:])):
    np.testing.assert_array_equal(half, labels_half[:len(half)])
  assert sorted(assignments.read_workdir(str(tmp_path))) == [1]
  state, _, scalars, _ = epoch_start(state, 2, 0)       # the next clustering
  assert "train/kmeans_loss" in scalars
  assert sorted(assignments.read_workdir(str(tmp_path))) == [1, 3]
  assert not np.array_equal(jax.device_get(state.head)["kernel"], head["kernel"])
