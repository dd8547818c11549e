"""Applies a trained workdir to new images: clusters (DTI-Clustering, DeepCluster), layered
decompositions and segmentations (DTI-Sprites), particles (Deep Latent Particles) or
part maps (unsupervised part discovery), dispatching on the workdir's ``config.method``.

  python -m dti_jax.infer --workdir=workdirs/mnist5k --images='photos/*.png' --out=results.csv

A folder sorted into one subfolder per class (the layout training reads labels from)
is read below its subfolders, and for the clustering methods the clusters are scored
against the classes (acc, NMI, ARI, printed). One CSV row per image, its path first; the pictures go to ``<out stem>_<folder>/``, named
by the image's position in the sorted list (``000000``, ...: unique for a glob spanning
folders):
- dti_clustering: path, cluster, distance, reconstruction (the assigned prototype warped
  to the image, in ``_reconstructions/``);
- dti_sprites: path, sprites (the sprite of each layer), error, segmentation (the raw
  label map: value l = layer l, 0 = background), with the input, reconstruction and
  coloured instance segmentation, in ``_segmentations/``;
- deepcluster: path, cluster (the last clustering's nearest centroid after its
  PCA-whitening), distance (squared, to that centroid);
- dlp: path, particles (``x,y;x,y;...``, the K foreground particles' deterministic
  positions in pixels of the model's input), obj_on (object model; empty for the masked
  model), picture (the particles drawn, in ``_particles/``); stored BN statistics;
- unsup_parts: path, parts (how many parts are present), labels (uint8 label map 1..K,
  beside the palette overlay ``NAME_parts.png``, in ``_parts/``).
Images are converted and resized as each method's tools do (DTI: the config's
preprocessing; DeepCluster: as its feature pass). Linear-probe workdirs are refused in
one line. An unreadable image gets a one-line error on stderr naming the file; the
others are still processed (exit status 1 if any failed).

Each served method has a module ``dti_jax.methods.<name>.infer`` with ``HEADER`` (the
columns after path), ``FOLDER``, ``load(workdir, config) -> predictor``,
``read(predictor, path) -> image`` and ``rows(predictor, images, names, out_dir)``.
"""

import csv
import glob
import importlib
import os
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

from data_pipelines import files, image_folder

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained workdir (config.json + checkpoints).")
_IMAGES = flags.DEFINE_string("images", None, "A folder of images or a glob pattern.")
_OUT = flags.DEFINE_string("out", "results.csv", "CSV file to write.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Images per forward pass.")

# config.method -> the module that applies its workdirs to new images.
SERVED_METHODS = {
    "dti_clustering": "dti_jax.methods.dti_clustering.infer",
    "dti_sprites": "dti_jax.methods.dti_sprites.infer",
    "deepcluster": "dti_jax.methods.deepcluster.infer",
    "dlp": "dti_jax.methods.dlp.infer",
    "unsup_parts": "dti_jax.methods.unsup_parts.infer",
}

# The training folders' formats, plus TIFF.
IMAGE_EXTENSIONS = files.IMAGE_EXTENSIONS + (".tif", ".tiff")


def list_images(pattern: str) -> tuple[list[str], list[int] | None, tuple[str, ...]]:
  """(paths, labels, class names): the image files of a folder (sorted) or of a glob
  pattern; a folder sorted into one subfolder per class (torchvision's ImageFolder
  layout, read as for training) also gives each image its class, else labels is None."""
  if os.path.isdir(pattern):
    paths = [os.path.join(pattern, n) for n in os.listdir(pattern)]
    flat = sorted(p for p in paths if p.lower().endswith(IMAGE_EXTENSIONS)
                  and os.path.isfile(p))
    if flat or not any(os.path.isdir(p) for p in paths):
      return flat, None, ()
    try:
      paths, labels, classes = image_folder.layout(pattern)
    except ValueError:
      return [], None, ()
    return paths, labels, classes
  paths = glob.glob(pattern)
  return sorted(p for p in paths if p.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(p)), None, ()


def print_class_scores(rows: list[tuple], labels: dict[str, int],
                       classes: tuple[str, ...]) -> None:
  """acc / NMI / ARI of the clusters (second column) against the class subfolders."""
  from dti_jax.metrics import clustering  # pylint: disable=import-outside-toplevel
  truth = np.asarray([labels[row[0]] for row in rows])
  clusters = np.asarray([int(row[1]) for row in rows])
  scores = clustering.clustering_scores(truth, clusters, len(classes),
                                        max(int(clusters.max()) + 1, len(classes)))
  print(f"against the {len(classes)} class subfolders ({len(rows)} images): "
        f"acc {scores['acc']:.4f} nmi {scores['nmi']:.4f} ari {scores['ari']:.4f}")


def _first_line(error: Exception) -> str:
  return " ".join(str(error).split()) or type(error).__name__


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:  # library INFO lines only on request
    logging.set_verbosity(logging.WARNING)
  if not _WORKDIR.value or not _IMAGES.value:
    sys.exit("error: --workdir and --images are required")
  from dti_jax.run import workdir as workdir_lib  # pylint: disable=import-outside-toplevel

  try:
    config = workdir_lib.read_config(_WORKDIR.value)
  except ValueError as error:
    sys.exit(f"error: {error}")
  method = config.get("method")
  if method not in SERVED_METHODS:
    served = list(SERVED_METHODS)
    sys.exit(f"error: {os.path.join(_WORKDIR.value, workdir_lib.CONFIG_FILE)} is a {method!r} "
             f"workdir; dti_jax.infer serves {', '.join(served[:-1])} and {served[-1]} workdirs")
  served = importlib.import_module(SERVED_METHODS[method])
  try:
    predictor = served.load(_WORKDIR.value, config)
  except (ValueError, OSError) as error:
    sys.exit(f"error: {_first_line(error)}")

  paths, labels, classes = list_images(_IMAGES.value)
  if not paths:
    sys.exit(f"error: no image files match --images={_IMAGES.value}")
  out_dir = f"{os.path.splitext(_OUT.value)[0]}_{served.FOLDER}"
  os.makedirs(out_dir, exist_ok=True)
  failures, rows = 0, []
  for start in range(0, len(paths), _BATCH.value):
    batch_paths, images, names = [], [], []
    for index, path in enumerate(paths[start:start + _BATCH.value], start):
      try:
        images.append(served.read(predictor, path))
        batch_paths.append(path)
        names.append(f"{index:06d}")
      except Exception as error:  # pylint: disable=broad-except
        # Whatever the reader raises, one unreadable file must not stop the others.
        failures += 1
        print(f"error: cannot read image {path}: {_first_line(error)}", file=sys.stderr)
    if not images:
      continue
    batch_rows = served.rows(predictor, images, names, out_dir)
    rows.extend((path, *row) for path, row in zip(batch_paths, batch_rows))
  with open(_OUT.value, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(("path",) + served.HEADER)
    writer.writerows(rows)
  print(f"{len(rows)} image(s) processed -> {_OUT.value}; {failures} unreadable")
  if labels is not None and rows and served.HEADER[0] == "cluster":
    print_class_scores(rows, dict(zip(paths, labels)), classes)
  if failures:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
