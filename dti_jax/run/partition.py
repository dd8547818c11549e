"""Device mesh and the host <-> global array doors for data-parallel training.

One ``data`` axis over every device of every process: batches are sharded along it,
the train state is replicated. A mean over the global batch inside a jitted step then
becomes the all-reduce, so no step function ever names a device.
"""

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

DATA_AXIS = "data"


def create_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (all by default).

  Axis type Auto: the default Explicit axes of jax.make_mesh reject reshapes that
  split the sharded batch axis.
  """
  devices = jax.devices()
  if num_devices is not None:
    if num_devices > len(devices):
      raise ValueError(f"asked for {num_devices} devices but only {len(devices)} exist")
    devices = devices[:num_devices]
  return jax.make_mesh((len(devices),), (DATA_AXIS,), devices=devices,
                       axis_types=(jax.sharding.AxisType.Auto,))


def data_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def check_batch_size(global_batch_size: int, mesh: jax.sharding.Mesh, key: str) -> None:
  """One-line error when the global batch does not split evenly over the devices."""
  if global_batch_size % mesh.size:
    raise ValueError(f"{key}={global_batch_size} is not divisible by the number of "
                     f"devices ({mesh.size})")


def to_global(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Host-local batch shards -> global arrays sharded over the data axis."""
  sharding = data_sharding(mesh)
  return {name: jax.make_array_from_process_local_data(sharding, value)
          for name, value in batch.items()}


def to_host(tree):
  """Global arrays -> full numpy arrays on every host (one all-gather when multi-host)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  return multihost_utils.process_allgather(tree, tiled=True)
