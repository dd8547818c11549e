"""What a finished run leaves behind, evaluation of a checkpoint, inference, multi-seed tables."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
from scipy import optimize
from sklearn import metrics
import pytest
from PIL import Image

from dti_jax import methods
import data_pipelines
from configs import digits
from scripts import multi_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _short_digits_config():
  config = digits.get_config()
  config.train.num_epochs = 3
  config.train.curriculum_epochs = (1, 1, 2)   # colour+affine after 1 epoch, TPS after 2
  config.eval.every_steps = 28
  config.log.checkpoint_every_steps = 28
  return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("digits")
  final = methods.train_and_evaluate(_short_digits_config(), str(workdir), num_devices=1)
  return workdir, final


def test_run_writes_pictures_gifs_cluster_examples_and_sizes(trained):
  workdir, final = trained
  frames = sorted(p for p in os.listdir(workdir / "images") if p.startswith("prototypes_0"))
  assert len(frames) == 3  # evaluations at steps 28 and 56, plus the final one at 84
  with Image.open(workdir / "prototypes.gif") as gif:
    assert gif.n_frames == 3
  steps = np.asarray(Image.open(workdir / "images" / "transformation_steps_00000084.png"))
  # Rows: input, assigned prototype, then one column per active module after identity.
  assert steps.shape[1] == (5 * 8 + 6) * 8  # 5 columns of 8x8 with 1px gaps, upscaled x8
  sizes = np.loadtxt(workdir / "cluster_sizes.tsv", skiprows=1)
  np.testing.assert_allclose(sizes[:, 1].sum(), 1.0, atol=1e-5)
  np.testing.assert_allclose(sizes[:, 1], final["proportions"], atol=1e-6)
  filled = [k for k in range(10) if final["proportions"][k] > 0]
  for k in filled:
    names = os.listdir(workdir / "clusters" / f"cluster{k}")
    assert {"top0_raw.png", "top0_tsf.png", "random0_raw.png", "random0_tsf.png"} <= set(names)


def test_eval_only_scores_the_checkpoint_without_training(trained, tmp_path):
  workdir, final = trained
  config = _short_digits_config()
  config.eval_only = True
  again = methods.train_and_evaluate(config, str(workdir), num_devices=1)
  for name in ("acc", "nmi", "ari", "loss"):
    assert again[name] == pytest.approx(final[name], abs=1e-6)
  with pytest.raises(FileNotFoundError, match="config.eval_only=True"):
    methods.train_and_evaluate(config, str(tmp_path / "empty"), num_devices=1)


def test_infer_assigns_new_images_and_reports_unreadable_ones(trained, tmp_path):
  workdir, _ = trained
  source = data_pipelines.load_source("digits_embedded")
  folder = tmp_path / "new"
  folder.mkdir()
  for i in range(3):
    Image.fromarray(source.images[i, ..., 0]).save(folder / f"digit{i}.png")
  # A colour image of another size is converted and resized like the training data.
  big = np.repeat(np.repeat(source.images[3], 4, axis=0), 4, axis=1)
  Image.fromarray(np.repeat(big, 3, axis=-1)).save(folder / "digit3_rgb_32px.png")
  (folder / "broken.png").write_bytes(b"not an image")
  out = tmp_path / "results.csv"
  result = subprocess.run([sys.executable, "-m", "dti_jax.infer", f"--workdir={workdir}",
                           f"--images={folder}", f"--out={out}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "broken.png" in errors[0]
  with open(out) as f:
    rows = list(csv.DictReader(f))
  assert [os.path.basename(r["path"]) for r in rows] == [
      "digit0.png", "digit1.png", "digit2.png", "digit3_rgb_32px.png"]
  for row in rows:
    assert 0 <= int(row["cluster"]) < 10 and float(row["distance"]) >= 0
    assert os.path.exists(row["reconstruction"])
  scores = json.loads((workdir / "final_scores.json").read_text())
  assert scores["proportions"][int(rows[0]["cluster"])] > 0


def test_infer_scores_a_folder_sorted_into_class_subfolders(trained, tmp_path):
  workdir, _ = trained
  source = data_pipelines.load_source("digits_embedded")
  picked = np.arange(0, 300, 3)
  for i in picked:
    folder = tmp_path / "sorted" / f"class_{source.labels[i]}"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(source.images[i, ..., 0]).save(folder / f"{i:04d}.png")
  out = tmp_path / "results.csv"
  result = subprocess.run([sys.executable, "-m", "dti_jax.infer", f"--workdir={workdir}",
                           f"--images={tmp_path / 'sorted'}", f"--out={out}"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  with open(out) as f:
    rows = list(csv.DictReader(f))
  assert len(rows) == len(picked)
  labels = np.array([int(os.path.basename(os.path.dirname(r["path"]))[6:]) for r in rows])
  clusters = np.array([int(r["cluster"]) for r in rows])
  # The printed scores, recomputed from the CSV with scikit-learn and SciPy.
  confusion = np.zeros((10, 10))
  np.add.at(confusion, (labels, clusters), 1)
  rows_, cols = optimize.linear_sum_assignment(-confusion)
  expected = (f"against the 10 class subfolders (100 images): "
              f"acc {confusion[rows_, cols].sum() / len(labels):.4f} "
              f"nmi {metrics.normalized_mutual_info_score(labels, clusters):.4f} "
              f"ari {metrics.adjusted_rand_score(labels, clusters):.4f}")
  assert expected in result.stdout.splitlines(), result.stdout


def test_infer_names_a_workdir_it_cannot_serve_in_one_line(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"method": "linear_probe"}))
  result = subprocess.run([sys.executable, "-m", "dti_jax.infer", f"--workdir={tmp_path}",
                           f"--images={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 1 and "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert errors == [f"error: {tmp_path / 'config.json'} is a 'linear_probe' workdir; "
                    "dti_jax.infer serves dti_clustering, dti_sprites, deepcluster, dlp and "
                    "unsup_parts workdirs"]


def test_multi_run_table_has_mean_std_median_and_lowest_loss_rows():
  results = {1: {"acc": 0.9, "nmi": 0.8, "ari": 0.7, "loss": 0.02},
             2: {"acc": 0.7, "nmi": 0.6, "ari": 0.5, "loss": 0.01}}
  table = multi_run.markdown_table(results).splitlines()
  assert table[0] == "| run | acc | nmi | ari | loss |"
  assert table[4] == "| mean ± std | 80.0 ± 10.0 | 70.0 ± 10.0 | 60.0 ± 10.0 | 0.0150 ± 0.0050 |"
  assert table[5] == "| median | 80.0 | 70.0 | 60.0 | 0.0150 |"
  assert table[6].startswith("| lowest loss (seed 2) | 70.0 |")
  parts = {0: {"fg_nmi": 48.0, "fg_ari": 40.0}, 1: {"fg_nmi": 50.0, "fg_ari": 44.0},
           2: {"fg_nmi": 49.5, "fg_ari": 41.5}}
  table = multi_run.markdown_table(parts).splitlines()   # part scores are stored in %
  assert table[0] == "| run | fg_nmi | fg_ari |" and table[6] == "| median | 49.5 | 41.5 |"


def test_multi_run_trains_each_seed(tmp_path):
  args = ["--config=configs/digits.py", "--seeds=2", f"--workdir={tmp_path}",
          "--config.train.num_epochs=1", "--config.model.transformation_sequence=identity",
          "--config.train.curriculum_epochs=()"]
  result = subprocess.run([sys.executable, "scripts/multi_run.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
  assert "| seed 1 |" in result.stdout and "| seed 2 |" in result.stdout
  finals = [json.loads((tmp_path / f"seed_{s}" / "final_scores.json").read_text()) for s in (1, 2)]
  assert finals[0]["loss"] != finals[1]["loss"]  # different seeds, different runs


def test_gmm_run_learns_and_shows_its_variance_maps(tmp_path):
  config = _short_digits_config()
  config.model.name = "dtigmm"
  config.train.num_epochs = 2
  config.train.curriculum_epochs = (1, 1, 1)
  final = methods.train_and_evaluate(config, str(tmp_path), num_devices=1)
  variances = np.asarray(Image.open(tmp_path / "images" / "variances_00000056.png"), np.float32)
  assert variances.max() == 255 and variances.min() < variances.max()
  assert final["nmi"] > 0.3 and np.isfinite(final["loss"])
