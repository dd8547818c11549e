"""Two processes on this machine, joined as the README's multi-host section says: the
coordinator on 127.0.0.1, each process with 2 CPU devices, equal one process with 4."""

import glob
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OVERRIDES = ("--config.model.transformation_sequence=identity_affine",
             "--config.train.curriculum_epochs=(1,)", "--config.train.num_epochs=1",
             "--config.log.every_steps=1", "--config.log.checkpoint_every_steps=10",
             "--config.eval.every_steps=1000000")


def _command(workdir, *flags):
  return [sys.executable, "-m", "dti_jax.main", "--config=configs/digits.py",
          f"--workdir={workdir}", *OVERRIDES, *flags]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _environment(devices, **variables):
  env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), **variables)
  env.pop("XLA_FLAGS", None)
  return env


def run_pair(workdir, *flags, timeout=400):
  """Both processes of a 2-process run; returns their CompletedProcess-like results."""
  port = _free_port()
  processes = [subprocess.Popen(
      _command(workdir, "--multihost", *flags), cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      env=_environment(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                       JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(index)))
               for index in range(2)]
  results = []
  for process in processes:
    stdout, stderr = process.communicate(timeout=timeout)
    results.append((process.returncode, stdout, stderr))
  return results


def train_losses(workdir) -> dict[int, float]:
  """train/loss of every logged step, from the run's TensorBoard event files."""
  import tensorflow as tf
  losses = {}
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == "train/loss":
          losses[event.step] = float(tf.make_ndarray(value.tensor))
  return losses


@pytest.fixture(scope="module")
def single(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("one_process_4_devices")
  result = subprocess.run(_command(workdir), cwd=REPO, capture_output=True, text=True,
                          env=_environment(4), timeout=400)
  assert result.returncode == 0, result.stderr[-2000:]
  return workdir


def test_two_processes_equal_one_process_with_four_devices(single, tmp_path):
  for code, stdout, stderr in run_pair(tmp_path):
    assert code == 0, stderr[-2000:]
  expected, got = train_losses(single), train_losses(tmp_path)
  assert sorted(got) == sorted(expected) == list(range(1, 29))
  np.testing.assert_allclose([got[s] for s in sorted(got)],
                             [expected[s] for s in sorted(expected)], rtol=1e-5)
  scores = json.loads((tmp_path / "final_scores.json").read_text())
  reference = json.loads((single / "final_scores.json").read_text())
  for name in ("acc", "nmi", "ari"):
    assert scores[name] == pytest.approx(reference[name], abs=1e-6)
  # Process 0 alone writes the event file, config.json and the scores.
  assert len(glob.glob(str(tmp_path / "events.out.tfevents.*"))) == 1
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["20", "28"]


def test_multihost_with_an_incomplete_environment_is_a_one_line_error(tmp_path):
  env = _environment(2, JAX_COORDINATOR_ADDRESS="127.0.0.1:1")
  env.pop("JAX_NUM_PROCESSES", None)
  env.pop("JAX_PROCESS_ID", None)
  result = subprocess.run(_command(tmp_path, "--multihost"), cwd=REPO, capture_output=True,
                          text=True, env=env, timeout=120)
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert errors == ["error: --multihost with JAX_COORDINATOR_ADDRESS set also needs "
                    "JAX_NUM_PROCESSES, JAX_PROCESS_ID"]
  assert not os.path.exists(tmp_path / "config.json")
