"""The host's CPU model, for benchmark records (standard library only: both benchmark
scripts import it, the JAX one and the PyTorch originals' driver)."""

import os
import platform


def cpu_model() -> str:
  """e.g. 'AMD EPYC 9B14 (2 cores)', from /proc/cpuinfo where there is one."""
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
  except OSError:
    names = []
  return f"{names[0] if names else platform.processor() or platform.machine()} " \
         f"({os.cpu_count()} cores)"
