"""End-to-end runs on the embedded data: learning, resume after a kill, final outputs."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
from sklearn import cluster as sk_cluster

import data_pipelines
from configs import digits, mnist
from dti_jax.metrics import clustering
from dti_jax.trainers import checkpointing, dti_clustering, loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pixel_kmeans_accuracy(source) -> float:
  pixels = source.images.reshape(source.num_examples, -1) / 255.0
  clusters = sk_cluster.KMeans(10, n_init=1, random_state=0).fit_predict(pixels)
  return clustering.clustering_scores(source.labels, clusters, 10, 10)["acc"]


def test_short_mnist5k_run_beats_kmeans_on_pixels(tmp_path):
  """Identity (gradient k-means) then affine phase on the 5,000 real MNIST images."""
  config = mnist.get_config("embedded")
  config.model.transformation_sequence = "identity_affine"
  config.train.curriculum_epochs = (1,)
  config.train.num_epochs = 8
  config.optim.lr_decay_epochs = (7,)
  config.eval.every_steps = 10**6
  final = loop.train_and_evaluate(config, str(tmp_path), num_devices=1)
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


def _digits_config(num_epochs=2):
  config = digits.get_config()
  config.model.transformation_sequence = "identity_affine"
  config.train.curriculum_epochs = (1,)
  config.train.num_epochs = num_epochs
  config.train.check_cluster_every_steps = 10
  config.log.every_steps = 7
  config.log.checkpoint_every_steps = 5
  config.eval.every_steps = 10**6
  return config


def _final_params(workdir, config):
  source = data_pipelines.load_source(config.data.name)
  template = dti_clustering.create_state(
      config, jax.random.key(0),
      dti_clustering.initial_prototypes(source.images, config.model.n_prototypes, config.seed))
  manager = checkpointing.create_manager(str(workdir))
  state, meta = checkpointing.restore_latest(manager, template)
  manager.close()
  return jax.device_get(state.params), meta


def test_killed_run_resumes_from_its_checkpoint_and_matches_uninterrupted(tmp_path):
  config = _digits_config()
  overrides = ["--config.model.transformation_sequence=identity_affine",
               "--config.train.curriculum_epochs=(1,)", "--config.train.num_epochs=2",
               "--config.train.check_cluster_every_steps=10", "--config.log.every_steps=7",
               "--config.log.checkpoint_every_steps=5", "--config.eval.every_steps=1000000"]
  killed = tmp_path / "killed"
  command = [sys.executable, "-m", "dti_jax.main", "--config=configs/digits.py",
             f"--workdir={killed}", "--num_devices=1"] + overrides
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.time() + 240
  checkpoints = killed / "checkpoints"
  while time.time() < deadline and process.poll() is None:
    done = [d for d in (os.listdir(checkpoints) if checkpoints.exists() else []) if d.isdigit()]
    if any(10 <= int(d) < 40 for d in done):
      break
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)
  process.wait()
  saved = sorted(int(d) for d in os.listdir(checkpoints) if d.isdigit())
  assert saved and saved[-1] < 56, f"the run was not interrupted mid-way: {saved}"

  # Rerunning the same command resumes from the checkpoint and finishes the schedule.
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert "resumed from" in result.stdout and "at step " in result.stdout
  resumed_at = int(result.stdout.split("at step ")[1].split()[0])
  assert resumed_at in saved

  loop.train_and_evaluate(config, str(tmp_path / "straight"), num_devices=1)
  params_resumed, meta_resumed = _final_params(killed, config)
  params_straight, meta_straight = _final_params(tmp_path / "straight", config)
  assert meta_resumed["step"] == meta_straight["step"] == 2 * 28
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               params_resumed, params_straight)
