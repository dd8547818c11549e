"""The command line: one-line errors for bad overrides and missing data, nothing written."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
  result = subprocess.run([sys.executable, "-m", "dti_jax.main", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  return result.returncode, lines


@pytest.mark.parametrize("override,expected", [
    ("--config.train.batchsize=32", "batchsize"),
    ("--config.train.batch_size=many", "batch_size"),
    ("--config.model.transformation_sequence=identity_warp", "warp"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, override, expected):
  workdir = tmp_path / "run"
  code, lines = _run("--config=configs/mnist.py:embedded", f"--workdir={workdir}", override)
  assert code != 0
  assert lines[-1].startswith("error:") and expected in lines[-1], lines
  assert not any("Traceback" in line for line in lines)
  assert not workdir.exists()  # nothing written


def test_missing_tfds_dataset_says_how_to_fetch_it(tmp_path):
  empty = tmp_path / "tfds"
  empty.mkdir()
  code, lines = _run("--config=configs/mnist.py", f"--workdir={tmp_path / 'run'}",
                     f"--config.data.data_dir={empty}")
  assert code != 0
  assert lines[-1].startswith("error:"), lines
  assert "tfds build mnist" in lines[-1] and str(empty) in lines[-1]
  assert not any("Traceback" in line for line in lines)
  assert not (tmp_path / "run").exists()


def test_unwritable_workdir_is_one_line_and_exit_status_1(tmp_path):
  (tmp_path / "file").write_text("a file, not a folder")
  workdir = tmp_path / "file" / "run"
  code, lines = _run("--config=configs/digits.py", f"--workdir={workdir}")
  assert code == 1
  assert lines[-1] == f"error: --workdir={workdir} is not writable: Not a directory", lines
