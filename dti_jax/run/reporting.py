"""TensorBoard writer (clu) and console progress with steps/s and ETA."""

import time

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
  """Steps/s over the last window and an ETA, printed with the train scalars."""

  def __init__(self, total_steps: int, first_step: int):
    self.total_steps = total_steps
    self._last_step, self._last_time = first_step, time.perf_counter()
    self._start_time = self._last_time
    self._paused = 0.0

  def elapsed_minutes(self) -> float:
    """Wall time since this process started training (including evaluations)."""
    return (time.perf_counter() - self._start_time) / 60.0

  def pause(self, seconds: float) -> None:
    """Excludes evaluation and checkpoint time from the training speed."""
    self._paused += seconds

  def update(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    elapsed = max(now - self._last_time - self._paused, 1e-9)
    steps_per_sec = (step - self._last_step) / elapsed
    self._last_step, self._last_time, self._paused = step, now, 0.0
    eta = (self.total_steps - step) / max(steps_per_sec, 1e-9)
    return {"steps_per_sec": steps_per_sec, "eta_minutes": eta / 60.0}


def console(message: str) -> None:
  """One progress line on stdout (process 0 only), readable without absl log flags."""
  if jax.process_index() == 0:
    print(message, flush=True)
