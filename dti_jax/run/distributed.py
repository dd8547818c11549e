"""Start-up of a multi-process run (`--multihost`): one process per host or per GPU.

``jax.distributed.initialize()`` detects TPU pods, SLURM and Open MPI by itself, but from
the environment it reads only the coordinator's address: with the generic variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` the last two
must be passed explicitly. A process whose peer dies stops with an error after
``heartbeat_timeout_seconds`` instead of waiting in a collective forever.
"""

import os

import jax

_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
HEARTBEAT_TIMEOUT_SECONDS = 60


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

