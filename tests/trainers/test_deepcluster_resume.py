"""DeepCluster on the shared loop: SIGTERM mid-epoch checkpoints and exits 0; the rerun
resumes inside the epoch (same clustering, same sampler order) and ends bit-identical
to an uninterrupted run, final scores included."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

import data_pipelines
from configs import deepcluster_mnist
from dti_jax import methods
from dti_jax.methods.deepcluster import trainer
from dti_jax.run import workdir as workdir_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# 1,797 digits in batches of 64: 28 steps per epoch; checkpoints every 10 steps.
OVERRIDES = {"train.num_epochs": 2, "eval.nmi_seeds": 1, "log.every_steps": 1,
             "log.checkpoint_every_steps": 10}


def _config():
  config = deepcluster_mnist.get_config("smoke")
  for key, value in OVERRIDES.items():
    group, name = key.split(".")
    config[group][name] = value
  return config


def _command(workdir):
  return [sys.executable, "-m", "dti_jax.main", "--config=configs/deepcluster_mnist.py:smoke",
          f"--workdir={workdir}", "--num_devices=1",
          *(f"--config.{key}={value}" for key, value in OVERRIDES.items())]


def _state(workdir):
  config = _config()
  template = trainer.create_state(config, None, trainer.init_arrays(
      config, data_pipelines.load_source("digits_embedded")))
  return jax.device_get(workdir_lib.restore_trained(str(workdir), template))


def _sigterm_after(command, step):
  """Starts the command and sends SIGTERM once it logs training step >= ``step``."""
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  output, deadline = [], time.time() + 300
  try:
    for line in process.stdout:
      output.append(line)
      if line.startswith("step ") and "/" in line.split()[1]:
        if int(line.split()[1].split("/")[0]) >= step:
          process.send_signal(signal.SIGTERM)
          break
      assert time.time() < deadline, "".join(output[-20:])
    output.append(process.stdout.read())
    return process.wait(timeout=120), "".join(output)
  finally:
    if process.poll() is None:
      process.kill()


def test_sigterm_mid_epoch_then_rerun_equals_an_uninterrupted_run(tmp_path):
  straight = methods.train_and_evaluate(_config(), str(tmp_path / "straight"), num_devices=1)
  # Past the first checkpoint (step 10), inside the first epoch.
  code, output = _sigterm_after(_command(tmp_path / "stopped"), 11)
  assert code == 0, output[-2000:]
  stopped = next(line for line in output.splitlines() if line.startswith("stopped by SIGTERM"))
  step = int(stopped.split(" at step ")[1].split("/")[0])
  assert 11 <= step < 28 and str(step) in os.listdir(tmp_path / "stopped" / "checkpoints")
  assert not (tmp_path / "stopped" / "final_scores.json").exists()
  rerun = subprocess.run(_command(tmp_path / "stopped"), cwd=REPO, capture_output=True,
                         text=True, timeout=400)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert f"resumed from {tmp_path / 'stopped'} at step {step}" in rerun.stdout
  # The resumed epoch is not clustered again; the second one is.
  assert rerun.stdout.count("epoch 2/2 ") == 1 and "epoch 1/2 " not in rerun.stdout
  resumed = json.loads((tmp_path / "stopped" / "final_scores.json").read_text())
  assert resumed == straight
  (state_a, meta_a), (state_b, meta_b) = _state(tmp_path / "straight"), _state(
      tmp_path / "stopped")
  assert meta_a["step"] == meta_b["step"] == 56
  # The two runs ran in different processes (this one and the rerun), whose XLA CPU
  # executables may split their reductions differently: the step, clustering and final
  # scores are identical (above), the weights equal to float32 rounding. The whitening's
  # mean and eigenvalues likewise; its eigenvectors (and the centroids in its space) are
  # ill-conditioned where eigenvalues nearly tie.
  for field in ("step", "assignment"):
    np.testing.assert_array_equal(np.asarray(getattr(state_a, field)),
                                  np.asarray(getattr(state_b, field)), err_msg=field)
  for field in ("params", "batch_stats", "opt_state", "head"):
    for x, y in zip(jax.tree.leaves(getattr(state_a, field)),
                    jax.tree.leaves(getattr(state_b, field)), strict=True):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-8,
                                 err_msg=field)
  for name in ("mean", "eigenvalues"):
    np.testing.assert_allclose(np.asarray(getattr(state_a.whitening, name)),
                               np.asarray(getattr(state_b.whitening, name)),
                               rtol=1e-3, atol=1e-8, err_msg=name)
