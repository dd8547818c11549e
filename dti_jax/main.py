"""Command-line entry point.

  python -m dti_jax.main --config=configs/mnist.py:embedded --workdir=/tmp/run

``--config.a.b=value`` overrides a config key; a rerun with the same workdir resumes.
This file is intentionally short: the work happens in ``dti_jax.run.loop``
(the one training loop) and the method folders under ``dti_jax.methods``.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow serves tf.data only
# Without oneDNN's custom kernels (TensorFlow gathers, casts and resizes images here)
# TensorFlow prints no start-up banner before its logging is set up.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally with a variant: file.py:variant.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard "
                               "logs and images; an existing one is resumed.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() "
                               "(TPU pods, SLURM, or the JAX_COORDINATOR_* variables).")
_PEER_TIMEOUT = flags.DEFINE_integer(
    "peer_timeout_seconds", 20, "With --multihost: stop with an error when another process "
    "has given no sign of life for this long.")
_NUM_DEVICES = flags.DEFINE_integer("num_devices", None, "Use only the first N devices "
                                    "(default: all).")


def _one_line(error: Exception) -> str:
  """The useful line of a flag-parsing error (absl wraps reprs and tracebacks into it)."""
  raw = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  lines = [line.strip() for line in raw.replace("\\n", "\n").splitlines() if line.strip()]
  lines = [line.strip("'\"\\") if line[0] in "'\"" else line for line in lines]
  if not lines:
    return type(error).__name__
  if "Traceback" in raw or "[Errno" in raw:
    return lines[-1]
  if "Did you mean" in raw:
    return "unknown config key " + ". ".join(line.strip("'\"\\") for line in lines)
  return " ".join(lines)


def _describe(error: Exception) -> str:
  """One line for an expected failure; OSErrors name their file."""
  if isinstance(error, OSError) and error.filename and error.strerror:
    return f"{error.filename}: {error.strerror}"
  if isinstance(error, OSError) and error.strerror:
    return error.strerror
  return str(error).splitlines()[0] if str(error) else type(error).__name__


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with one-line errors (bad override key, bad value type, bad file)."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as error:
    sys.exit(f"error: {_one_line(error)}")


def quiet_libraries() -> None:
  """Library INFO lines (orbax's ~20 per checkpoint) stay off the terminal unless
  ``--verbosity`` asks for them; warnings and errors still show."""
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  quiet_libraries()
  if _WORKDIR.value is None:
    sys.exit("error: --workdir is required")
  try:
    config = _CONFIG.value
    config.method  # the config file is loaded lazily; fail here, in one line
  except OSError as error:
    sys.exit(f"error: --config: {_one_line(error)}")
  except AttributeError:
    sys.exit("error: --config is required, e.g. --config=configs/mnist.py:embedded")
  # Keep TensorFlow (tf.data only) off the accelerators JAX uses.
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  watch = None
  if _MULTIHOST.value:
    from dti_jax.run import distributed
    try:
      distributed.initialize()
    except ValueError as error:
      sys.exit(f"error: {error}")
    watch = distributed.PeerWatch(_PEER_TIMEOUT.value).start()
  from dti_jax import methods
  try:
    methods.train_and_evaluate(config, os.path.abspath(_WORKDIR.value),
                               num_devices=_NUM_DEVICES.value)
  except (ValueError, OSError, FloatingPointError) as error:
    sys.exit(f"error: {_describe(error)}")
  if watch is not None:
    watch.finish()


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
