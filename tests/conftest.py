"""Eight emulated CPU devices for every test (multi-device tests pick the ones they need),
and one persistent compilation cache for the session, shared with the subprocesses that
tests start, so that a computation compiled once (a resumed run, a rerun) loads instead
of compiling again."""

import atexit
import contextlib
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


@contextlib.contextmanager
def _most_optimizations_disabled():
  previous = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture
def fast_compile():
  """XLA without most optimisations: compiling a DLP step, which dominates those tests on
  a CPU, takes about half the time (the tiny computations run slower, which is cheap)."""
  with _most_optimizations_disabled():
    yield


@pytest.fixture(scope="module")
def fast_compile_module():
  """``fast_compile`` for the whole module: for a module-scoped fixture that trains once
  for several tests (request it first, so that it is on before that fixture compiles)."""
  with _most_optimizations_disabled():
    yield


# The longest test files (minutes each on a 2-core machine) go to the workers first, so
# that the two workers of `-n 2 --dist loadfile` (pytest.ini) do not end with one of them
# alone on a long file. Only the order changes: each file's tests keep theirs.
LONG_FILES = ("tests/trainers/test_reliability.py", "tests/trainers/test_end_to_end.py",
              "tests/trainers/test_multihost.py", "tests/trainers/test_deepcluster_resume.py",
              "tests/trainers/test_unsup_parts_configs.py", "tests/trainers/test_dlp.py",
              "tests/trainers/test_outputs.py", "tests/trainers/test_dlp_configs.py")


def pytest_collection_modifyitems(items):
  def rank(item):
    path = os.path.relpath(str(item.path), os.path.dirname(os.path.dirname(__file__)))
    return LONG_FILES.index(path) if path in LONG_FILES else len(LONG_FILES)

  items.sort(key=rank)  # stable: the other files keep the collection order
