"""k-means time per iteration: dti_jax's sharded k-means against faiss and scikit-learn.

  python scripts/benchmark_kmeans.py --n=100000 --d=256 --k=1000          # CPU
  python scripts/benchmark_kmeans.py --n=1000000 --d=256 --k=10000 --libs=jax,faiss
  python scripts/benchmark_kmeans.py --libs=profile    # where dti_jax's iteration goes

All libraries cluster the same points (L2-normalised Gaussian draws around k centres,
as DeepCluster's PCA-whitened, L2-normalised features) from the same initial centroids
for the same number of Lloyd iterations; each prints one JSON line with the time, the
time per iteration and the final objective (sum of squared distances of every point
to its nearest final centroid, recomputed the same way for every library), and its
relative difference to dti_jax's. faiss (`pip install faiss-cpu`) and scikit-learn
are only needed for their own lines. ``profile`` times the parts of one dti_jax
iteration on one device (the distance GEMM alone, the nearest-centroid pass, the
per-cluster sums) next to the same GEMM in numpy's BLAS.
"""

import json
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scripts import machine  # pylint: disable=wrong-import-position

_N = flags.DEFINE_integer("n", 100_000, "Number of points.")
_D = flags.DEFINE_integer("d", 256, "Dimension.")
_K = flags.DEFINE_integer("k", 1000, "Number of clusters.")
_ITERS = flags.DEFINE_integer("iters", 20, "Lloyd iterations (DeepCluster: 20).")
_SEED = flags.DEFINE_integer("seed", 0, "Data and initialisation seed.")
_DEVICES = flags.DEFINE_integer("devices", None, "Shard over the first N devices (default all).")
_TILE = flags.DEFINE_integer("tile_size", 4096, "dti_jax points per distance tile.")
_LIBS = flags.DEFINE_list("libs", ["jax", "faiss", "sklearn"], "Which to run.")
_THREADS = flags.DEFINE_integer("threads", os.cpu_count(), "CPU threads for faiss / sklearn.")


def _data(n, d, k, seed):
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(k, d))
  points = centres[rng.integers(0, k, n)] + rng.normal(scale=1.5, size=(n, d))
  points /= np.linalg.norm(points, axis=1, keepdims=True)
  return points.astype(np.float32), rng.permutation(n)[:k]


def _objective(points, centroids) -> float:
  """Sum over points of the squared distance to the nearest centroid (float64, chunked)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  centroids = centroids.astype(np.float64)
  norms = (centroids ** 2).sum(1)
  total = 0.0
  for start in range(0, len(points), 8192):
    chunk = points[start:start + 8192].astype(np.float64)
    distances = (chunk ** 2).sum(1, keepdims=True) - 2 * chunk @ centroids.T + norms
    total += float(np.maximum(distances.min(1), 0).sum())
  return total


def _run_jax(points, init, iters):
  import jax  # pylint: disable=import-outside-toplevel
  from dti_jax.ops import kmeans  # pylint: disable=import-outside-toplevel
  from dti_jax.run import partition  # pylint: disable=import-outside-toplevel
  mesh = partition.create_mesh(_DEVICES.value)
  mesh = mesh if mesh.size > 1 else None
  run = lambda: jax.block_until_ready(kmeans.kmeans(
      points, init.shape[0], num_iters=iters, initial_centroids=init, mesh=mesh,
      tile_size=_TILE.value))
  start = time.perf_counter()
  run()
  first = time.perf_counter() - start
  start = time.perf_counter()
  result = run()
  seconds = time.perf_counter() - start
  device = jax.devices()[0]
  return {"seconds": seconds, "compile_s": round(first - seconds, 2),
          "device": f"{device.platform}:{device.device_kind}",
          "devices": 1 if mesh is None else mesh.size, "jax": jax.__version__}, \
      jax.device_get(result.centroids)


def _run_faiss(points, init, iters):
  import faiss  # pylint: disable=import-outside-toplevel
  faiss.omp_set_num_threads(_THREADS.value)
  model = faiss.Kmeans(points.shape[1], init.shape[0], niter=iters, seed=_SEED.value,
                       max_points_per_centroid=10_000_000, verbose=False)
  start = time.perf_counter()
  model.train(points, init_centroids=init)
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "device": "cpu", "threads": _THREADS.value,
          "faiss": faiss.__version__}, model.centroids


def _run_sklearn(points, init, iters):
  import sklearn  # pylint: disable=import-outside-toplevel
  from sklearn import cluster  # pylint: disable=import-outside-toplevel
  from threadpoolctl import threadpool_limits  # pylint: disable=import-outside-toplevel
  with threadpool_limits(_THREADS.value):
    model = cluster.KMeans(init.shape[0], init=init, n_init=1, max_iter=iters, tol=0,
                           algorithm="lloyd")
    start = time.perf_counter()
    model.fit(points)
    seconds = time.perf_counter() - start
  return {"seconds": seconds, "device": "cpu", "threads": _THREADS.value,
          "sklearn": sklearn.__version__}, model.cluster_centers_


def _median_ms(function, *args, repeats=5) -> float:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  jax.block_until_ready(function(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def _profile(points, init):
  """Median time of each part of one dti_jax iteration (one device), and numpy's GEMM."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from jax import lax  # pylint: disable=import-outside-toplevel
  from dti_jax.ops import kmeans  # pylint: disable=import-outside-toplevel
  k = init.shape[0]
  tile = min(_TILE.value, len(points))
  usable = len(points) // tile * tile
  x, c = jnp.asarray(points[:usable]), jnp.asarray(init)
  index = jnp.asarray(np.random.default_rng(0).integers(0, k, usable).astype(np.int32))
  gemm = jax.jit(lambda a, b: jnp.matmul(a, b.T, precision=lax.Precision.HIGHEST))
  nearest = jax.jit(lambda a, b: kmeans.nearest_centroids(a, b, tile))
  sums = jax.jit(lambda a, i: jax.ops.segment_sum(a, i, num_segments=k))
  gflop = 2 * usable * k * points.shape[1] / 1e9
  record = {"points": usable, "gemm_gflop": round(gflop, 3),
            "jax_gemm_ms": _median_ms(gemm, x, c),
            "jax_nearest_centroids_ms": _median_ms(nearest, x, c),
            "jax_segment_sum_ms": _median_ms(sums, x, index),
            "numpy_gemm_ms": _median_ms(lambda a, b: a @ b.T, points[:usable], init),
            "numpy": np.__version__, "jax": jax.__version__}
  for lib in ("jax", "numpy"):
    record[f"{lib}_gemm_gflops"] = round(gflop / record[f"{lib}_gemm_ms"] * 1000, 1)
  return {name: round(value, 3) if name.endswith("_ms") else value
          for name, value in record.items()}


RUNNERS = {"jax": _run_jax, "faiss": _run_faiss, "sklearn": _run_sklearn}


def main(argv):
  del argv
  unknown = set(_LIBS.value) - set(RUNNERS) - {"profile"}
  if unknown:
    raise app.UsageError(f"--libs: unknown {sorted(unknown)}; choose from "
                         f"{sorted(RUNNERS) + ['profile']}")
  n, d, k, iters = _N.value, _D.value, _K.value, _ITERS.value
  points, init_index = _data(n, d, k, _SEED.value)
  init = points[init_index]
  reference = None
  if "profile" in _LIBS.value:
    print(json.dumps({"lib": "profile", "n": n, "d": d, "k": k, **_profile(points, init),
                      "host_cpu": machine.cpu_model()}), flush=True)
  for lib in [lib for lib in _LIBS.value if lib != "profile"]:
    record, centroids = RUNNERS[lib](points, init, iters)
    objective = _objective(points, centroids)
    reference = objective if reference is None else reference
    seconds = record.pop("seconds")
    print(json.dumps({"lib": lib, "n": n, "d": d, "k": k, "iters": iters,
                      "total_s": round(seconds, 3),
                      "per_iter_ms": round(1000 * seconds / max(iters, 1), 1),
                      "objective": round(objective, 3),
                      "objective_rel_diff": float(f"{objective / reference - 1:.2e}"),
                      **record, "host_cpu": machine.cpu_model()}),
          flush=True)


if __name__ == "__main__":
  app.run(main)
