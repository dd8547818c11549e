"""Eight emulated CPU devices for every test (multi-device tests pick the ones they need),
and one persistent compilation cache for the session, shared with the subprocesses that
tests start, so that a computation compiled once (a resumed run, a rerun) loads instead
of compiling again."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_CACHE = tempfile.mkdtemp(prefix="dti_jax_test_cache_")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.update({"JAX_COMPILATION_CACHE_DIR": _CACHE,
                   "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                   "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"})

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.fixture
def fast_compile():
  """XLA without most optimisations: compiling a DLP step, which dominates those tests on
  a CPU, takes about half the time (the tiny computations run slower, which is cheap)."""
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", False)
