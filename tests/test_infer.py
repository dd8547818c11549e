"""`python -m dti_jax.infer` on DeepCluster, DLP and part-discovery workdirs (short runs):
one CSV row per readable image with its cluster, particles or part map, a one-line error
naming the unreadable file, and a one-line refusal of linear-probe workdirs."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import data_pipelines
from configs import deepcluster_mnist, dlp_shapes, unsup_parts_toy
from dti_jax import methods
from dti_jax.methods.deepcluster import network as deepcluster_network
from dti_jax.methods.deepcluster import trainer as deepcluster_trainer
from dti_jax.run import checkpointing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# XLA with most optimisations off: the short runs compile in about half the time.
pytestmark = pytest.mark.usefixtures("fast_compile_module")


def _infer(workdir, images, out):
  """(exit status, the stderr lines that start with 'error:') of the command line."""
  result = subprocess.run([sys.executable, "-m", "dti_jax.infer", f"--workdir={workdir}",
                           f"--images={images}", f"--out={out}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  return result.returncode, [line for line in result.stderr.splitlines()
                             if line.startswith("error:")]


def _image_folder(folder, images):
  """PNGs a.png, b.png, ... of uint8 ``images``, and broken.png, which is not an image."""
  folder.mkdir()
  names = []
  for name, image in zip("abcdefgh", images):
    Image.fromarray(image).save(folder / f"{name}.png")
    names.append(f"{name}.png")
  (folder / "broken.png").write_bytes(b"not an image")
  return names


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def dlp_workdir(fast_compile_module, tmp_path_factory):
  """The tiny object model after one training step (stored BN statistics)."""
  del fast_compile_module  # on before the run compiles
  config = dlp_shapes.get_config("cpu")
  config.data.num_examples = 8
  config.model.enc_channels = (8, 16, 32)
  config.model.prior_channels = (4, 8, 16)
  config.model.num_particles = 4
  config.model.num_prior = 6
  config.train.batch_size = 8
  config.train.num_epochs = 1
  config.eval.num_images = 8
  config.eval.batch_size = 8
  config.eval.bn_recalibration_batches = 0
  workdir = tmp_path_factory.mktemp("dlp")
  methods.train_and_evaluate(config, str(workdir), num_devices=1)
  return workdir, config


def test_dlp_workdir_gives_particles_in_the_image(dlp_workdir, tmp_path):
  workdir, config = dlp_workdir
  scenes = data_pipelines.load_source("dlp_shapes_procedural", num_examples=2, seed=5).images
  wide = np.asarray(Image.fromarray(scenes[1]).resize((96, 48)))   # resized to 64 x 64
  names = _image_folder(tmp_path / "new", [scenes[0], wide])
  out = tmp_path / "particles.csv"
  status, errors = _infer(workdir, tmp_path / "new", out)
  assert status == 1
  assert len(errors) == 1 and "broken.png" in errors[0], errors
  rows = _rows(out)
  assert list(rows[0]) == ["path", "particles", "obj_on", "picture"]
  assert [os.path.basename(row["path"]) for row in rows] == names
  side = config.model.image_size
  for row in rows:
    pairs = np.array([[float(v) for v in pair.split(",")]
                      for pair in row["particles"].split(";")])
    assert pairs.shape == (config.model.num_particles, 2)
    assert np.all((pairs >= 0) & (pairs <= side - 1))
    obj_on = [float(v) for v in row["obj_on"].split(";")]
    assert len(obj_on) == config.model.num_particles
    assert all(0 <= v <= 1 for v in obj_on)
    assert np.asarray(Image.open(row["picture"])).shape == (side, side, 3)


@pytest.fixture(scope="module")
def parts_workdir(fast_compile_module, tmp_path_factory):
  """The toy part segmenter after one training step."""
  del fast_compile_module  # on before the run compiles
  config = unsup_parts_toy.get_config("smoke")
  config.data.num_examples = 32
  config.train.num_steps = 1
  config.eval.num_images = 16
  config.eval.batch_size = 16
  workdir = tmp_path_factory.mktemp("parts")
  methods.train_and_evaluate(config, str(workdir), num_devices=1)
  return workdir, config


def test_parts_workdir_gives_label_maps(parts_workdir, tmp_path):
  workdir, config = parts_workdir
  birds = data_pipelines.load_source("parts_toy_procedural", num_examples=2, seed=5).images
  # 128 x 96: the shorter side becomes 64, the longer 85, cut to 80.
  tall = np.asarray(Image.fromarray(birds[1]).resize((96, 128)))
  names = _image_folder(tmp_path / "new", [birds[0], tall])
  out = tmp_path / "parts.csv"
  status, errors = _infer(workdir, tmp_path / "new", out)
  assert status == 1
  assert len(errors) == 1 and "broken.png" in errors[0], errors
  rows = _rows(out)
  assert list(rows[0]) == ["path", "parts", "labels"]
  assert [os.path.basename(row["path"]) for row in rows] == names
  for row, shape in zip(rows, [(64, 64), (80, 64)]):
    labels = np.asarray(Image.open(row["labels"]))
    assert labels.shape == shape and labels.dtype == np.uint8
    assert 1 <= labels.min() and labels.max() <= config.model.num_parts
    assert int(row["parts"]) == len(np.unique(labels))
    overlay = row["labels"].replace("_labels.png", "_parts.png")
    assert np.asarray(Image.open(overlay)).shape == shape + (3,)


@pytest.fixture(scope="module")
def deepcluster_workdir(tmp_path_factory):
  """DeepCluster on scikit-learn's digits after two epochs (k = 20)."""
  config = deepcluster_mnist.get_config("smoke")
  config.train.num_epochs = 2
  config.eval.nmi_seeds = 1
  workdir = tmp_path_factory.mktemp("deepcluster")
  methods.train_and_evaluate(config, str(workdir), num_devices=1)
  return workdir, config


def test_deepcluster_workdir_puts_training_images_in_their_clusters(deepcluster_workdir,
                                                                    tmp_path):
  """Each image gets the nearest centroid of the last clustering after its whitening
  (a NumPy reference on the final network's features), and most training images keep
  the cluster that clustering gave them (the network has trained an epoch since;
  chance is 1 in k)."""
  workdir, config = deepcluster_workdir
  digits = data_pipelines.load_source("digits_embedded")
  picked = np.arange(0, 1797, 9)[:200]
  folder = tmp_path / "digits"
  folder.mkdir()
  for i in picked:
    Image.fromarray(digits.images[i][..., 0]).save(folder / f"{i:04d}.png")
  (folder / "zz_broken.png").write_bytes(b"not an image")
  out = tmp_path / "clusters.csv"
  status, errors = _infer(workdir, folder, out)
  assert status == 1 and len(errors) == 1 and "zz_broken.png" in errors[0], errors
  rows = _rows(out)
  assert list(rows[0]) == ["path", "cluster", "distance"]
  assert [int(os.path.basename(row["path"])[:4]) for row in rows] == list(picked)
  manager = checkpointing.create_manager(str(workdir))
  state, _ = checkpointing.restore_latest(manager, deepcluster_trainer.create_state(
      config, None, deepcluster_trainer.init_arrays(config, digits)))
  manager.close()
  assignment = np.asarray(state.assignment)
  clusters = np.array([int(row["cluster"]) for row in rows])
  distances = np.array([float(row["distance"]) for row in rows])
  assert np.all((clusters >= 0) & (clusters < config.cluster.k))
  assert np.all((distances >= -1e-5) & (distances <= 4))   # unit vectors
  network = deepcluster_network.create_network(config)
  features = np.asarray(network.apply(
      {"params": state.params, "batch_stats": state.batch_stats},
      deepcluster_network.normalize(config, digits.images[picked]), False), np.float64)
  points = (features - state.whitening.mean) @ np.asarray(state.whitening.projection,
                                                          np.float64)
  points /= np.linalg.norm(points, axis=1, keepdims=True)
  reference = ((points[:, None] - np.asarray(state.centroids)[None]) ** 2).sum(-1)
  np.testing.assert_array_equal(clusters, reference.argmin(1))
  np.testing.assert_allclose(distances, reference.min(1), atol=1e-4)
  assert np.mean(clusters == assignment[picked]) > 0.4


def test_linear_probe_workdirs_are_refused_in_one_line(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"method": "linear_probe"}))
  status, errors = _infer(tmp_path, tmp_path, tmp_path / "out.csv")
  assert status == 1
  assert errors == [f"error: {tmp_path / 'config.json'} is a 'linear_probe' workdir; "
                    "dti_jax.infer serves dti_clustering, dti_sprites, deepcluster, dlp and "
                    "unsup_parts workdirs"]
  assert not (tmp_path / "out.csv").exists()
