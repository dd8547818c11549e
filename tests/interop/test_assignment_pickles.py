"""The original's cluster-assignment pickles read through the restricted unpickler, and
the NMI command that compares clusterings."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics

from dti_jax.methods.deepcluster import assignments

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Payload:
  """Unpickling this would create a file: the restricted reader must refuse it."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


def _write(path, obj, protocol):
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=protocol)
  return str(path)


@pytest.mark.parametrize("protocol", [0, 2])
def test_released_assignment_becomes_paths_and_clusters(tmp_path, protocol):
  rng = np.random.default_rng(0)
  clusters = rng.integers(0, 50, 300)
  paths = [f"train/n{i % 7:08d}/img_{i}.JPEG" for i in range(300)]
  # Cluster indices as Python ints and numpy integers, as the released files may hold.
  items = [(p, int(c) if i % 2 else np.int64(c)) for i, (p, c) in enumerate(zip(paths, clusters))]
  read = assignments.read_original(_write(tmp_path / "a.pickle", items, protocol))
  np.testing.assert_array_equal(read["cluster"], clusters)
  assert list(read["path"]) == paths and read["cluster"].dtype == np.int32


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_runs_cluster_log_becomes_one_row_per_epoch(tmp_path, protocol):
  rng = np.random.default_rng(1)
  epochs = [rng.integers(0, 6, 40) for _ in range(3)]
  log = [[np.flatnonzero(e == c) if c % 2 else list(map(int, np.flatnonzero(e == c)))
          for c in range(6)] for e in epochs]
  read = assignments.read_original(_write(tmp_path / "clusters", log, protocol))
  np.testing.assert_array_equal(read["epochs"], np.stack(epochs))
  np.testing.assert_array_equal(read["cluster"], epochs[-1])


def test_a_pickle_naming_another_class_is_refused_before_anything_runs(tmp_path):
  marker = tmp_path / "created_by_unpickling"
  path = _write(tmp_path / "evil.pickle", [("a.jpg", 1), _Payload(str(marker))], 2)
  with pytest.raises(ValueError, match=r"refused (builtins|io)\.open") as error:
    assignments.read_original(path)
  assert "\n" not in str(error.value)
  assert not marker.exists()


def test_an_index_list_that_is_no_partition_is_refused(tmp_path):
  path = _write(tmp_path / "clusters", [[[0, 1], [1, 2]]], 2)
  with pytest.raises(ValueError, match="not a partition"):
    assignments.read_original(path)


def test_nmi_command_matches_by_path_and_by_index(tmp_path, capsys):
  rng = np.random.default_rng(2)
  truth = rng.integers(0, 8, 200)
  noisy = np.where(rng.random(200) < 0.3, rng.integers(0, 8, 200), truth)
  paths = np.array([f"img_{i:03d}.jpg" for i in range(200)])
  order = rng.permutation(200)  # the released file lists the images in another order
  released = _write(tmp_path / "r.pickle", [(str(paths[i]), int(noisy[i])) for i in order], 2)
  assert assignments.main(["--pickle", released, "--output", str(tmp_path / "r.npz")]) == 0
  np.savez(tmp_path / "ours.npz", cluster=truth, path=paths)
  expected = metrics.normalized_mutual_info_score(truth, noisy, average_method="geometric")
  assert assignments.main(["--nmi", str(tmp_path / "ours.npz"), str(tmp_path / "r.npz")]) == 0
  assert f"NMI {expected:.4f} over 200 images" in capsys.readouterr().out
  workdir = tmp_path / "run"
  assignments.save_epoch(str(workdir), 0, truth)
  assignments.save_epoch(str(workdir), 4, noisy)        # the last clustering is compared
  np.save(tmp_path / "noisy.npy", noisy)
  assert assignments.main(["--nmi", str(workdir), str(tmp_path / "noisy.npy")]) == 0
  assert "NMI 1.0000 over 200 images" in capsys.readouterr().out
  assert assignments.main(["--pickle", released, "--output", str(tmp_path / "r.npz")]) == 2
  assert capsys.readouterr().err.strip().count("\n") == 0
  assert os.path.exists(tmp_path / "r.npz")


def test_the_command_prints_its_line_and_no_library_start_up_lines(tmp_path):
  """TensorFlow is imported on the way (the method registry); its start-up lines stay off
  the terminal without any setting in the environment."""
  np.save(tmp_path / "a.npy", np.arange(30) % 3)
  np.save(tmp_path / "b.npy", np.arange(30) % 3)
  env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
  done = subprocess.run([sys.executable, "-m", "dti_jax.methods.deepcluster.assignments",
                         "--nmi", str(tmp_path / "a.npy"), str(tmp_path / "b.npy")],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  assert (done.stdout + done.stderr).strip() == "NMI 1.0000 over 30 images"
