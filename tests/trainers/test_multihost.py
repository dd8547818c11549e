"""Two processes on this machine, joined as the README's multi-host section says: the
coordinator on 127.0.0.1, each process with 2 CPU devices, equal one process with 4;
each reads its own slice of every batch; kills, signals and a lone death across them."""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

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


def start_pair(workdir, *flags):
  """Both processes of a 2-process run, started directly (not by the launcher)."""
  port = _free_port()
  return [subprocess.Popen(
      _command(workdir, "--multihost", *flags), cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      env=_environment(2, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                       JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(index)))
          for index in range(2)]


def wait_for_step(process, step: int) -> list[str]:
  """Reads process 0's console until it has logged ``step`` (or it ends); the lines."""
  lines = []
  for line in process.stdout:
    lines.append(line)
    if line.startswith("step ") and "/" in line.split()[1]:
      if int(line.split()[1].split("/")[0]) >= step:
        break
  return lines


def finish(processes, timeout=400):
  """(returncode, stdout, stderr) of each process once it has ended."""
  outputs = [p.communicate(timeout=timeout) for p in processes]
  return [(p.returncode, *output) for p, output in zip(processes, outputs)]


def launch_pair(workdir, *flags, timeout=400):
  """The README's one-machine command: scripts/launch.py with 2 processes x 2 devices."""
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, "scripts/launch.py", "--processes=2",
                         "--cpu_devices=2", "--", *_command(workdir, *flags)], cwd=REPO,
                        capture_output=True, text=True, env=env, timeout=timeout)


def train_losses(workdir) -> dict[int, float]:
  """train/loss of every logged step, from the run's TensorBoard event files."""
  import tensorflow as tf
  losses = {}  # a resumed run's later event file overrides the steps it repeats
  for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*")),
                     key=os.path.getmtime):
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
  # The console holds the project's lines only: no library INFO line (absl's format:
  # I + date), no TensorFlow start-up banner; every progress line has an ETA.
  noise = [line for line in result.stderr.splitlines()
           if re.match(r"I\d{4} ", line) or "oneDNN" in line or "InitializeLog" in line]
  assert not noise, noise[:3]
  progress = [line for line in result.stdout.splitlines() if re.match(r"step \d+/", line)]
  assert len(progress) == 28 and all(re.search(r"ETA \d+\.\d min$", line)
                                     for line in progress)
  return workdir


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  """The uninterrupted 2-process run, started by the launcher."""
  workdir = tmp_path_factory.mktemp("two_processes_2_devices")
  result = launch_pair(workdir)
  assert result.returncode == 0, result.stderr[-2000:]
  return workdir


def test_two_processes_equal_one_process_with_four_devices(single, pair):
  expected, got = train_losses(single), train_losses(pair)
  assert sorted(got) == sorted(expected) == list(range(1, 29))
  np.testing.assert_allclose([got[s] for s in sorted(got)],
                             [expected[s] for s in sorted(expected)], rtol=1e-5)
  scores = json.loads((pair / "final_scores.json").read_text())
  reference = json.loads((single / "final_scores.json").read_text())
  for name in ("acc", "nmi", "ari"):
    assert scores[name] == pytest.approx(reference[name], abs=1e-6)
  # Process 0 alone writes the event file, config.json and the scores; one checkpoint
  # directory per step, written together.
  assert len(glob.glob(str(pair / "events.out.tfevents.*"))) == 1
  assert sorted(os.listdir(pair / "checkpoints")) == ["20", "28"]
  assert not glob.glob(str(pair / "config.step*.json"))


def test_each_process_reads_only_its_slice_of_every_global_batch():
  import data_pipelines  # pylint: disable=import-outside-toplevel
  source = data_pipelines.load_source("digits_embedded")
  kwargs = dict(global_batch_size=64, seed=3, epoch=1)
  whole = list(data_pipelines.train_batches(source, **kwargs))
  halves = [list(data_pipelines.train_batches(source, process_index=index, process_count=2,
                                              **kwargs)) for index in range(2)]
  assert len(whole) == len(halves[0]) == len(halves[1]) == 28
  for batch, first, second in zip(whole, *halves):
    assert first["image"].shape[0] == second["image"].shape[0] == 32
    np.testing.assert_array_equal(np.concatenate([first["image"], second["image"]]),
                                  batch["image"])


def test_killed_pair_resumes_and_a_signal_to_one_process_stops_both(pair, tmp_path):
  """SIGKILL both mid-run; the rerun pair resumes, and a SIGTERM to process 1 alone
  makes both checkpoint the same step and exit 0; a third run ends as the
  uninterrupted pair."""
  processes = start_pair(tmp_path)
  wait_for_step(processes[0], 12)
  deadline = time.monotonic() + 60
  while not os.path.isdir(tmp_path / "checkpoints" / "10") and time.monotonic() < deadline:
    time.sleep(0.1)   # the step-10 checkpoint is committed in the background
  for process in processes:
    process.kill()
  finish(processes)

  processes = start_pair(tmp_path)
  resumed = wait_for_step(processes[0], 18)
  assert any(line.startswith("resumed from") and line.split()[-1] in ("10", "20")
             for line in resumed), resumed
  processes[1].send_signal(signal.SIGTERM)
  results = finish(processes)
  assert [code for code, _, _ in results] == [0, 0], results[0][2][-2000:]
  stopped = [line for line in results[0][1].splitlines() if line.startswith("stopped by")]
  assert len(stopped) == 1 and "a signal to another host" in stopped[0], results[0][1]
  step = int(stopped[0].split(" at step ")[1].split("/")[0])
  # (A ".orbax-checkpoint-tmp" folder the SIGKILL left behind is not a checkpoint.)
  written = [int(name) for name in os.listdir(tmp_path / "checkpoints") if name.isdigit()]
  assert 18 <= step < 28 and max(written) == step

  results = finish(start_pair(tmp_path))
  assert [code for code, _, _ in results] == [0, 0], results[0][2][-2000:]
  expected, got = train_losses(pair), train_losses(tmp_path)
  assert sorted(got) == sorted(expected)
  np.testing.assert_array_equal([got[s] for s in sorted(got)],
                                [expected[s] for s in sorted(expected)])
  assert (json.loads((tmp_path / "final_scores.json").read_text())
          == json.loads((pair / "final_scores.json").read_text()))


def _children(pid: int) -> list[int]:
  with open(f"/proc/{pid}/task/{pid}/children") as f:
    return [int(child) for child in f.read().split()]


def test_a_process_that_dies_alone_stops_its_peer_in_one_line(tmp_path):
  # Process 1 dies: process 0 notices the silence and stops with one error line.
  processes = start_pair(tmp_path / "peer", "--peer_timeout_seconds=5")
  wait_for_step(processes[0], 12)
  processes[1].kill()
  start = time.monotonic()
  code, _, stderr = finish(processes)[0]
  assert code == 1 and time.monotonic() - start < 25
  errors = [line for line in stderr.splitlines() if line.startswith("error:")]
  assert errors == ["error: process 1 of 2 has given no sign of life for 5 s (it died or "
                    "hangs); stopping this process (its last checkpoint is kept)"]
  # Process 0 (the coordinator) dies under the launcher: the launcher names it in one
  # line and the run stops within seconds.
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  launcher = subprocess.Popen([sys.executable, "scripts/launch.py", "--processes=2",
                               "--cpu_devices=2", "--", *_command(tmp_path / "coordinator")],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
  wait_for_step(launcher, 12)
  os.kill(_children(launcher.pid)[0], signal.SIGKILL)
  start = time.monotonic()
  _, stderr = launcher.communicate(timeout=60)
  assert launcher.returncode == 1 and time.monotonic() - start < 20
  errors = [line for line in stderr.splitlines() if line.startswith("error:")]
  # One line naming process 0, whether the launcher saw it die before its peer aborted
  # ("stopping the other processes") or after ("the other processes stopped too").
  assert len(errors) == 1 and errors[0].startswith(
      ("error: process 0 was killed by SIGKILL; stopping the other processes",
       "error: process 0 was killed by SIGKILL; the other processes stopped too")), errors


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
