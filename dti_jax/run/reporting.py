"""TensorBoard writer (clu) and console progress with steps/s and ETA."""

import time
from typing import Hashable

import jax
from clu import metric_writers


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """Asynchronous TensorBoard writer on process 0; other processes write nothing.

  The console line of ``console`` already reports progress, so clu's logging writer
  (which would repeat every scalar on stderr) is left out.
  """
  if jax.process_index() != 0:
    return metric_writers.MultiWriter([])
  return metric_writers.AsyncWriter(metric_writers.SummaryWriter(workdir))


class Progress:
  """Steps/s over the last window and an ETA over the remaining stages, printed with
  the train scalars.

  Stages cost differently (a DTI curriculum's TPS stage is several times slower than
  its identity stage), so the ETA adds, per remaining stage, its steps times its time
  per step: measured live for the current stage, timed once at the start for the
  others (`set_stage_costs`).
  """

  def __init__(self, total_steps: int, first_step: int):
    self.total_steps = total_steps
    self._last_step, self._last_time = first_step, time.perf_counter()
    self._start_time = self._last_time
    self._paused = 0.0
    self._stage_steps: list[tuple[int, Hashable]] = []   # (first step, stage), sorted
    self._seconds_per_step: dict[Hashable, float] = {}

  def elapsed_minutes(self) -> float:
    """Wall time since this process started training (including evaluations)."""
    return (time.perf_counter() - self._start_time) / 60.0

  def pause(self, seconds: float) -> None:
    """Excludes evaluation and checkpoint time from the training speed."""
    self._paused += seconds

  def set_stage_costs(self, boundaries: list[tuple[int, Hashable]],
                      seconds_per_step: dict[Hashable, float]) -> None:
    """The first step of each stage and the seconds per step measured for stages."""
    self._stage_steps = sorted(boundaries, key=lambda item: item[0])
    self._seconds_per_step.update(seconds_per_step)

  def remaining_seconds(self, step: int, stage: Hashable, seconds_per_step: float) -> float:
    """Seconds left: each remaining stage's steps at its own speed (the current stage's
    live speed where a stage was not timed)."""
    self._seconds_per_step[stage] = seconds_per_step
    if not self._stage_steps:
      return (self.total_steps - step) * seconds_per_step
    total = 0.0
    ends = [first for first, _ in self._stage_steps[1:]] + [self.total_steps]
    for (first, name), end in zip(self._stage_steps, ends):
      steps = max(0, end - max(first, step))
      total += steps * self._seconds_per_step.get(name, seconds_per_step)
    return total

  def update(self, step: int, stage: Hashable = None) -> dict[str, float]:
    now = time.perf_counter()
    elapsed = max(now - self._last_time - self._paused, 1e-9)
    steps_per_sec = (step - self._last_step) / elapsed
    self._last_step, self._last_time, self._paused = step, now, 0.0
    eta = self.remaining_seconds(step, stage, 1.0 / max(steps_per_sec, 1e-9))
    return {"steps_per_sec": steps_per_sec, "eta_minutes": eta / 60.0}


def console(message: str) -> None:
  """One progress line on stdout (process 0 only), readable without absl log flags."""
  if jax.process_index() == 0:
    print(message, flush=True)
