"""DeepCluster's cluster assignments: each clustering of a run saved in its workdir,
and the original's pickles read into the same form.

In a workdir, ``clusters/epoch_NNNN.npy`` (NNNN the 1-based epoch that clustered) holds
int32 [N]: the cluster of image i at row i (the original's ``arrange_clustering``).
The original writes instead ``${EXP}/clusters``, a pickle of every epoch's
``images_lists`` (for each cluster the list of its image indices), and releases the
last clustering of its AlexNet and VGG-16 as ``*_cluster_assignment.pickle``, a list
of (image path, cluster) tuples written by Python 2. Unpickling can run arbitrary code,
so those files are read by an unpickler that builds only containers, numbers, strings
and numpy arrays and refuses any other class by name before anything is called.

  python -m dti_jax.methods.deepcluster.assignments --pickle=alexnet_cluster_assignment.pickle \\
      --output=alexnet_clusters.npz
  python -m dti_jax.methods.deepcluster.assignments --nmi A B   # .npz/.npy files or workdirs
"""

import argparse
import glob
import io
import os
import pickle
import re
import sys
from typing import Any

import numpy as np
from sklearn import metrics as sk_metrics

FOLDER = "clusters"
_EPOCH_FILE = re.compile(r"epoch_(\d{4,})\.npy$")
def _reconstruct(cls, shape, dtype):
  """numpy's array constructor as its pickles call it (only for plain arrays)."""
  if cls is not np.ndarray:
    raise pickle.UnpicklingError(f"refused an array of class {cls!r}")
  return np.ndarray.__new__(np.ndarray, shape, dtype)


def _scalar(dtype, data=None):
  """numpy's scalar constructor from (dtype, raw bytes) as numpy pickles it."""
  if isinstance(data, str):  # bytes written by Python 2 and decoded as latin-1
    data = data.encode("latin-1")
  return np.frombuffer(data, dtype)[0]


def _frombuffer(buffer, dtype, shape, order):
  """numpy's array constructor of pickle protocol 5."""
  if not isinstance(dtype, np.dtype) or dtype.hasobject:
    raise pickle.UnpicklingError(f"refused an array of dtype {dtype!r}")
  return np.frombuffer(buffer, dtype).reshape(shape, order=order).copy()


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
  if encoding not in ("latin1", "latin-1"):
    raise pickle.UnpicklingError(f"refused bytes encoded as {encoding!r}")
  return text.encode("latin-1")


class _RestrictedUnpickler(pickle.Unpickler):
  """Builds lists, tuples, dicts, numbers, strings and numpy arrays, nothing else."""

  def find_class(self, module, name):
    if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
      if name == "_reconstruct":
        return _reconstruct
      if name == "scalar":
        return _scalar
    if module in ("numpy", "numpy.core.numeric", "numpy._core.numeric"):
      if name == "_frombuffer":  # arrays in protocol 5
        return _frombuffer
      if name == "ndarray":
        return np.ndarray
      if name == "dtype":
        return np.dtype
    if (module, name) == ("_codecs", "encode"):  # bytes in protocol 2 written by Python 3
      return _latin1_bytes
    raise pickle.UnpicklingError(f"refused {module}.{name}: only containers, numbers, "
                                 "strings and numpy arrays are read")


def load_pickle(path: str) -> Any:
  """The object in the pickle at ``path``, through the restricted unpickler (Python 2
  strings as latin-1); a one-line ValueError naming the file otherwise."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such assignment file")
  with open(path, "rb") as f:
    data = f.read()
  try:
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
  except pickle.UnpicklingError as error:
    raise ValueError(f"{path}: {error}") from None
  except Exception as error:  # a truncated or foreign file: name it, don't dump a trace
    raise ValueError(f"{path}: not a readable pickle ({type(error).__name__}: {error})"
                     ) from None


def from_images_lists(images_lists: Any, where: str = "images_lists") -> np.ndarray:
  """int32 [N] cluster of each image from the original's list of per-cluster index
  lists (every image in exactly one cluster)."""
  sizes = [len(images) for images in images_lists]
  indices = np.concatenate([np.asarray(images, np.int64).reshape(-1)
                            for images in images_lists]) if sizes else np.zeros(0, np.int64)
  clusters = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
  count = len(indices)
  if count == 0 or indices.min() < 0 or indices.max() >= count or len(
      np.unique(indices)) != count:
    raise ValueError(f"{where}: the clusters' image indices are not a partition of "
                     f"0..N-1 ({count} indices)")
  assignment = np.empty(count, np.int32)
  assignment[indices] = clusters
  return assignment


def read_original(path: str) -> dict[str, np.ndarray]:
  """The clusterings in one of the original's pickles, as arrays.

  Returns {"cluster": int32 [N] (the last epoch), "path": str [N]} for a released
  assignment (list of (image path, cluster)), or {"cluster": [N],
  "epochs": int32 [E, N]} for a run's ``clusters`` log (list of images_lists).
  """
  data = load_pickle(path)
  if not isinstance(data, (list, tuple)) or not data:
    raise ValueError(f"{path}: expected a non-empty list, got {type(data).__name__}")
  first = data[0]
  if isinstance(first, tuple) and len(first) == 2 and isinstance(first[0], (str, bytes)):
    if not all(isinstance(item, tuple) and len(item) == 2 for item in data):
      raise ValueError(f"{path}: expected (image path, cluster) tuples throughout")
    paths = np.asarray([p.decode("latin-1") if isinstance(p, bytes) else p for p, _ in data])
    clusters = np.asarray([int(c) for _, c in data], np.int64)
    if clusters.min() < 0:
      raise ValueError(f"{path}: negative cluster {clusters.min()}")
    return {"cluster": clusters.astype(np.int32), "path": paths}
  if isinstance(first, (list, tuple)):
    epochs = np.stack([from_images_lists(lists, f"{path} epoch {e + 1}")
                       for e, lists in enumerate(data)])
    return {"cluster": epochs[-1], "epochs": epochs}
  raise ValueError(f"{path}: neither (image path, cluster) tuples nor per-epoch cluster "
                   f"lists (first item: {type(first).__name__})")


def save_epoch(workdir: str, epoch: int, assignment: np.ndarray) -> str:
  """Writes the clustering made at the start of ``epoch`` (0-based); returns the path.
  The file is written whole under a temporary name first."""
  folder = os.path.join(workdir, FOLDER)
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f"epoch_{epoch + 1:04d}.npy")
  with open(path + ".tmp", "wb") as f:
    np.save(f, np.asarray(assignment, np.int32))
  os.replace(path + ".tmp", path)
  return path


def read_workdir(workdir: str) -> dict[int, np.ndarray]:
  """{1-based epoch: int32 [N]} of every clustering saved in ``workdir``."""
  files = sorted(glob.glob(os.path.join(workdir, FOLDER, "epoch_*.npy")))
  epochs = {int(_EPOCH_FILE.search(f).group(1)): np.load(f) for f in files
            if _EPOCH_FILE.search(f)}
  if not epochs:
    raise FileNotFoundError(f"{os.path.join(workdir, FOLDER)}: no saved clusterings")
  return epochs


def read_any(path: str) -> dict[str, np.ndarray]:
  """{"cluster": [N][, "path": [N]]} of a workdir (its last clustering), a .npy, a
  .npz written by this module, or one of the original's pickles."""
  if os.path.isdir(path):
    epochs = read_workdir(path)
    return {"cluster": epochs[max(epochs)]}
  if path.endswith(".npy"):
    return {"cluster": np.load(path)}
  if path.endswith(".npz"):
    with np.load(path) as data:
      return {key: data[key] for key in data.files}
  return read_original(path)


def nmi_between(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[float, int]:
  """(NMI with geometric normalisation, images compared) of two clusterings, matched by
  image path when both name their images, else by index (then of equal length)."""
  if "path" in a and "path" in b:
    common, first, second = np.intersect1d(a["path"], b["path"], return_indices=True)
    if not len(common):
      raise ValueError("the two clusterings share no image path")
    x, y = a["cluster"][first], b["cluster"][second]
  else:
    if len(a["cluster"]) != len(b["cluster"]):
      raise ValueError(f"clusterings of {len(a['cluster'])} and {len(b['cluster'])} images "
                       "and no image paths to match them by")
    x, y = a["cluster"], b["cluster"]
  return float(sk_metrics.normalized_mutual_info_score(x, y, average_method="geometric")), len(x)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pickle", help="one of the original's assignment pickles")
  parser.add_argument("--output", help="the .npz to write (cluster[, path, epochs])")
  parser.add_argument("--nmi", nargs=2, metavar=("A", "B"),
                      help="print the NMI of two clusterings (workdir, .npy, .npz or pickle)")
  args = parser.parse_args(argv)
  try:
    if args.nmi:
      value, count = nmi_between(read_any(args.nmi[0]), read_any(args.nmi[1]))
      print(f"NMI {value:.4f} over {count:,} images")
    elif args.pickle and args.output:
      if os.path.exists(args.output):
        raise ValueError(f"{args.output} exists; choose another --output")
      arrays = read_original(args.pickle)
      np.savez(args.output, **arrays)
      print(f"{len(arrays['cluster']):,} images in {int(arrays['cluster'].max()) + 1:,} "
            f"clusters -> {args.output}")
    else:
      parser.error("give --pickle and --output, or --nmi A B")
  except (ValueError, FileNotFoundError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
