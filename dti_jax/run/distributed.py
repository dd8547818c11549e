"""Start-up of a multi-process run (`--multihost`): one process per host or per GPU.

``jax.distributed.initialize()`` detects TPU pods, SLURM and Open MPI by itself, but from
the environment it reads only the coordinator's address: with the generic variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` the last two
must be passed explicitly.

A process whose peer dies would wait in a collective until JAX's heartbeat timeout and
then abort with a C++ log dump. `PeerWatch` instead keeps a sign of life of every
process in the coordinator's key-value store; a process that sees a peer silent for
``PEER_TIMEOUT_SECONDS`` prints one error line and exits 1. A process that ends its
run normally says so first, so its peers do not take its exit for a death. When the
coordinator itself (process 0) dies, JAX's client aborts the others within a second
with its own message ("... the JAX distributed service detected fatal errors ..."),
before any Python code can run; `scripts/launch.py` reports that case in one line.
"""

import os
import sys
import threading
import time

import jax
from jax._src import distributed as jax_distributed

_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
HEARTBEAT_TIMEOUT_SECONDS = 60
PEER_TIMEOUT_SECONDS = 20       # well inside the heartbeat timeout: the one-line error wins
BEAT_SECONDS = 1.0
_ALIVE, _DONE = "dti_jax/alive/", "dti_jax/done/"


def _integer(name: str) -> int:
  value = os.environ.get(name, "")
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def initialize() -> None:
  """Joins the processes of the run; call before any other JAX call.

  With ``JAX_COORDINATOR_ADDRESS`` set, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` are
  required (one-line error otherwise); without it, JAX detects the cluster.
  """
  given = [name for name in _VARIABLES if os.environ.get(name)]
  kwargs = {"heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT_SECONDS}
  if given:
    missing = [name for name in _VARIABLES if name not in given]
    if missing:
      raise ValueError(f"--multihost with {', '.join(given)} set also needs "
                       f"{', '.join(missing)}")
    num_processes, process_id = _integer("JAX_NUM_PROCESSES"), _integer("JAX_PROCESS_ID")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"JAX_PROCESS_ID={process_id} must be in [0, JAX_NUM_PROCESSES="
                       f"{num_processes})")
    kwargs.update(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                  num_processes=num_processes, process_id=process_id)
  jax.distributed.initialize(**kwargs)



class PeerWatch:
  """A daemon thread beating for this process and watching the others (see the module
  docstring); `finish` marks this process's run as ended normally."""

  def __init__(self, timeout_seconds: float = PEER_TIMEOUT_SECONDS):
    self.client = jax_distributed.global_state.client
    self.index, self.count = jax.process_index(), jax.process_count()
    self.timeout = timeout_seconds
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._watch, name="peer-watch", daemon=True)

  def start(self) -> "PeerWatch":
    if self.client is not None and self.count > 1:
      self._thread.start()
    return self

  def finish(self) -> None:
    """Tells the peers this process is done, then stops watching."""
    self._stop.set()
    if self.client is not None and self.count > 1:
      try:
        self.client.key_value_set(f"{_DONE}{self.index}", "1", allow_overwrite=True)
      except Exception:  # pylint: disable=broad-except
        pass  # the coordinator is gone already: nobody is left to tell

  def _fail(self, message: str) -> None:
    print(f"error: {message}; stopping this process (its last checkpoint is kept)",
          file=sys.stderr, flush=True)
    os._exit(1)  # pylint: disable=protected-access

  def _watch(self) -> None:
    beats, last_seen = 0, {}
    while not self._stop.is_set():
      now = time.monotonic()
      try:
        beats += 1
        self.client.key_value_set(f"{_ALIVE}{self.index}", str(beats), allow_overwrite=True)
        for peer in range(self.count):
          if peer == self.index:
            continue
          if self._peer_value(_DONE, peer) is not None:
            last_seen.pop(peer, None)
            continue
          beat = self._peer_value(_ALIVE, peer)
          previous = last_seen.get(peer)
          if previous is None or beat != previous[0]:
            last_seen[peer] = (beat, now)
          elif now - previous[1] > self.timeout and not self._stop.is_set():
            self._fail(f"process {peer} of {self.count} has given no sign of life for "
                       f"{self.timeout:.0f} s (it died or hangs)")
      except Exception as error:  # pylint: disable=broad-except
        if not self._stop.is_set():
          reason = " ".join(str(error).split())[:200] or type(error).__name__
          self._fail(f"lost the coordinator of the {self.count} processes ({reason})")
      self._stop.wait(BEAT_SECONDS)

  def _peer_value(self, prefix: str, peer: int) -> str | None:
    try:
      return self.client.key_value_try_get(f"{prefix}{peer}")
    except Exception as error:  # pylint: disable=broad-except
      if "NOT_FOUND" in str(error) or "not found" in str(error).lower():
        return None
      raise
