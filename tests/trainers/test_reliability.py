"""Faults during training: SIGKILL/SIGTERM/SIGINT at any step, corrupt checkpoints, NaN.

Runs are the offline digits config shrunk to 2 epochs of 28 steps (identity, then
affine from epoch 1, cluster reassignment every 10 steps, a checkpoint every 5 steps),
so every fault lands in a different phase of the schedule.
"""

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from dti_jax import methods
import data_pipelines
from configs import digits
from dti_jax.methods.dti_clustering import trainer as dti_clustering
from dti_jax.run import checkpointing

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 56
OVERRIDES = {"model.transformation_sequence": "identity_affine", "train.curriculum_epochs": (1,),
             "train.num_epochs": 2, "train.check_cluster_every_steps": 10,
             "log.every_steps": 1, "log.checkpoint_every_steps": 5,
             "eval.every_steps": 10**6}


def _config(seed):
  config = digits.get_config()
  config.seed = seed
  for key, value in OVERRIDES.items():
    group, name = key.split(".")
    config[group][name] = value
  return config


def _command(workdir, seed):
  flags = [f"--config.{key}={value}" for key, value in OVERRIDES.items()]
  return [sys.executable, "-m", "dti_jax.main", "--config=configs/digits.py",
          f"--workdir={workdir}", "--num_devices=1", f"--config.seed={seed}", *flags]


@pytest.fixture(scope="module")
def env():
  """The subprocesses share the session's persistent compilation cache (conftest.py)."""
  assert "JAX_COMPILATION_CACHE_DIR" in os.environ
  return dict(os.environ)


def _run_until(command, env, step, sig):
  """Starts the command, sends ``sig`` once it logs training step >= ``step``.

  Returns (exit code, output). A run that finishes first fails the test.
  """
  process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  output = []
  try:
    deadline = time.time() + 240
    for line in process.stdout:
      output.append(line)
      if line.startswith("step ") and "/" in line.split()[1]:
        if int(line.split()[1].split("/")[0]) >= step:
          process.send_signal(sig)
          break
      assert time.time() < deadline, "".join(output[-20:])
    output.append(process.stdout.read())
    code = process.wait(timeout=120)
  finally:
    if process.poll() is None:
      process.kill()
  text = "".join(output)
  assert "final (" not in text, f"the run ended before step {step}:\n{text[-2000:]}"
  return code, text


def _final_params(workdir, config):
  source = data_pipelines.load_source(config.data.name)
  template = dti_clustering.create_state(
      config, jax.random.key(0),
      dti_clustering.initial_prototypes(source.images, config.model.n_prototypes, config.seed))
  manager = checkpointing.create_manager(str(workdir))
  state, meta = checkpointing.restore_latest(manager, template)
  manager.close()
  return jax.device_get(state), meta


def _assert_bit_identical(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


_UNINTERRUPTED = {}


def _uninterrupted(tmp_path_factory, seed):
  if seed not in _UNINTERRUPTED:
    workdir = tmp_path_factory.mktemp(f"straight{seed}")
    methods.train_and_evaluate(_config(seed), str(workdir), num_devices=1)
    _UNINTERRUPTED[seed] = _final_params(workdir, _config(seed))
  return _UNINTERRUPTED[seed]


# Seed 0 moves a cluster at the checks of steps 20 and 40. SIGKILL: in the identity phase
# before the first checkpoint (the rerun starts over in a used workdir); just after the
# reassignment of step 20 (resumed from its checkpoint); at the curriculum switch (resumed
# in the identity phase, switching on the way); on the checkpoint of step 45, after the
# second reassignment (killed while it is written or just after).
KILL_STEPS = (4, 21, 28, 45)


def _killed_repeatedly(workdir, seed, env):
  """Kills the run at each of ``KILL_STEPS``, then lets a rerun finish."""
  for kill_step in KILL_STEPS:
    code, _ = _run_until(_command(workdir, seed), env, kill_step, signal.SIGKILL)
    assert code == -signal.SIGKILL
  return subprocess.run(_command(workdir, seed), cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)


def _stopped_by_signals(workdir, env):
  """SIGTERM at step 9, SIGINT at step 23: each must checkpoint and exit 0."""
  stops = []
  for stop_step, sig in ((9, signal.SIGTERM), (23, signal.SIGINT)):
    code, output = _run_until(_command(workdir, 0), env, stop_step, sig)
    line = next((line for line in output.splitlines() if line.startswith("stopped by")), "")
    events = [name for name in os.listdir(workdir) if name.startswith("events.out")]
    stops.append((sig, stop_step, code, line, os.listdir(workdir / "checkpoints"),
                  sum(os.path.getsize(workdir / name) for name in events), output))
  final = subprocess.run(_command(workdir, 0), cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
  return stops, final


def test_killed_and_signalled_runs_resume_bit_identical(tmp_path, tmp_path_factory, env):
  """A run SIGKILLed at four steps and one stopped by SIGTERM then SIGINT, each rerun to
  the end, end bit-identical to an uninterrupted run of the same seed."""
  # The two runs overlap: one waits on imports while the other computes.
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    signalled = pool.submit(_stopped_by_signals, tmp_path / "signalled", env)
    killed = pool.submit(_killed_repeatedly, tmp_path / "killed", 0, env)
    result = killed.result()
    stops, final = signalled.result()
  straight_state, straight_meta = _uninterrupted(tmp_path_factory, 0)
  # SIGKILL at every kill step, then a rerun to the end: bit-identical.
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert "resumed from" in result.stdout
  state, meta = _final_params(tmp_path / "killed", _config(0))
  assert meta["step"] == straight_meta["step"] == STEPS
  _assert_bit_identical(state, straight_state)
  # SIGTERM / SIGINT: exit 0, a checkpoint of the step reached, TensorBoard flushed.
  for sig, stop_step, code, line, checkpoints, event_bytes, output in stops:
    assert code == 0, output[-2000:]
    assert sig.name in line and "rerun the same command" in line, output[-2000:]
    stopped_at = int(line.split(" at step ")[1].split("/")[0])
    assert stopped_at >= stop_step and str(stopped_at) in checkpoints
    assert event_bytes > 0
  assert final.returncode == 0, final.stderr[-2000:]
  assert f"at step {stopped_at}" in final.stdout
  state, _ = _final_params(tmp_path / "signalled", _config(0))
  _assert_bit_identical(state, straight_state)


def _corrupt(directory):
  """Overwrites every file of a checkpoint's state with garbage of half its size."""
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      with open(path, "wb") as f:
        f.write(b"\x13" * max(size // 2, 1))


def _small_state(value):
  return {"w": np.full((3, 4), value, np.float32), "step": np.array(value, np.int32)}


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path, capsys):
  manager = checkpointing.create_manager(str(tmp_path))
  for step in (5, 10):
    checkpointing.save(manager, step, _small_state(step), {"step": step})
  manager.wait_until_finished()
  _corrupt(tmp_path / "checkpoints" / "10" / "state")
  state, meta = checkpointing.restore_latest(manager, _small_state(0))
  assert meta["step"] == 5 and float(state["w"][0, 0]) == 5.0
  warning = capsys.readouterr().out
  assert "warning:" in warning and str(tmp_path / "checkpoints" / "10") in warning
  assert "resumed from step 5" in warning
  moved = [name for name in os.listdir(tmp_path / "checkpoints") if name.startswith("10.")]
  assert len(moved) == 1 and moved[0].startswith("10.unreadable-")  # kept, not deleted
  assert manager.latest_step() == 5
  checkpointing.save(manager, 10, _small_state(11), {"step": 10})  # the step can be rewritten
  manager.wait_until_finished()
  assert checkpointing.restore_latest(manager, _small_state(0))[1]["step"] == 10
  manager.close()


@pytest.mark.parametrize("error", [OSError(5, "Input/output error"), MemoryError(),
                                   ValueError("UNAVAILABLE: connection reset")])
def test_a_read_failure_that_is_not_corruption_stops_and_moves_nothing(tmp_path, error):
  manager = checkpointing.create_manager(str(tmp_path))
  for step in (5, 10):
    checkpointing.save(manager, step, _small_state(step), {"step": step})
  manager.wait_until_finished()

  def failing_restore(step, args=None):
    raise error

  manager.restore = failing_restore
  with pytest.raises(OSError, match=r"cannot read checkpoint .*checkpoints/10 \(.*\); nothing "
                     r"was moved") as info:
    checkpointing.restore_latest(manager, _small_state(0))
  assert "\n" not in str(info.value)
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "5"]
  manager.close()


def test_only_decode_failures_count_as_corrupt():
  assert checkpointing.fails_to_decode(json.JSONDecodeError("Expecting value", "", 0))
  assert checkpointing.fails_to_decode(ValueError("DATA_LOSS: Error decoding manifest"))
  assert checkpointing.fails_to_decode(ValueError("OUT_OF_RANGE: Requested byte range"))
  assert not checkpointing.fails_to_decode(OSError(116, "Stale file handle"))
  assert not checkpointing.fails_to_decode(MemoryError())
  assert not checkpointing.fails_to_decode(ValueError("RESOURCE_EXHAUSTED: out of memory"))


def test_checkpoint_killed_mid_write_is_ignored(tmp_path):
  """Orbax writes into a temporary folder renamed when complete; a kill leaves only that."""
  manager = checkpointing.create_manager(str(tmp_path))
  checkpointing.save(manager, 5, _small_state(5), {"step": 5})
  manager.wait_until_finished()
  manager.close()
  partial = tmp_path / "checkpoints" / "10.orbax-checkpoint-tmp-1795770000000000"
  shutil.copytree(tmp_path / "checkpoints" / "5", partial)
  _corrupt(partial / "state")
  manager = checkpointing.create_manager(str(tmp_path))
  assert manager.all_steps() == [5]
  state, meta = checkpointing.restore_latest(manager, _small_state(0))
  assert meta["step"] == 5 and float(state["w"][0, 0]) == 5.0
  manager.close()


def test_checkpoints_that_no_longer_match_the_model_are_not_moved(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path))
  checkpointing.save(manager, 5, _small_state(5), {"step": 5})
  manager.wait_until_finished()
  other_model = {"w": np.zeros((7, 4), np.float32), "step": np.array(0, np.int32)}
  with pytest.raises(ValueError, match=r"checkpoints/5 does not match the model \(\['w'\] is "
                     r"float32\[3, 4\], the model needs float32\[7, 4\]\)"):
    checkpointing.restore_latest(manager, other_model)
  assert os.listdir(tmp_path / "checkpoints") == ["5"]
  manager.close()


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                           monkeypatch):
  bad_batch = 13  # the 14th batch, read by step 14; checkpoints every 5 -> step 10
  real_batches = data_pipelines.train_batches

  def poisoned(*args, **kwargs):
    start = kwargs.get("start_batch", 0)
    for offset, batch in enumerate(real_batches(*args, **kwargs)):
      if start + offset == bad_batch:
        batch = {**batch, "image": np.full_like(batch["image"], np.nan)}
      yield batch

  monkeypatch.setattr(data_pipelines, "train_batches", poisoned)
  config = _config(0)
  config.log.every_steps = 7
  with pytest.raises(FloatingPointError) as info:
    methods.train_and_evaluate(config, str(tmp_path), num_devices=1)
  message = str(info.value)
  assert f"loss is NaN or Inf at step {bad_batch + 1}" in message
  assert f"{tmp_path / 'checkpoints' / '10'} (step 10), is intact" in message
  assert "\n" not in message
  assert sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())[-1] == 10
  state, meta = _final_params(tmp_path, config)
  assert meta["step"] == 10
  assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(state.params))
