"""Applies a trained workdir to new images: clusters (DTI-Clustering) or layered
decompositions and segmentations (DTI-Sprites).

  python -m dti_jax.infer --workdir=workdirs/mnist5k --images='photos/*.png' --out=results.csv

DTI-Clustering writes one CSV row per image (path, cluster, distance, reconstruction)
and, for each, the assigned prototype warped to it as PNG in
``<out stem>_reconstructions/``. DTI-Sprites writes one row per image (path, the sprite
of each layer, error) and, in ``<out stem>_segmentations/``, the input, the
reconstruction, the coloured instance segmentation and the raw label map (PNG, value
l = layer l, 0 = background) of every image. Images
are converted to the model's channel count and resized to its input size by the
config's preprocessing. An unreadable image gets a one-line error on stderr naming
the file; the others are still processed (exit status 1 if any failed).
"""

import csv
import functools
import glob
import json
import os
import sys

from absl import app
from absl import flags

from data_pipelines import files

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained workdir (config.json + checkpoints).")
_IMAGES = flags.DEFINE_string("images", None, "A folder of images or a glob pattern.")
_OUT = flags.DEFINE_string("out", "results.csv", "CSV file to write.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Images per forward pass.")

SERVED_METHODS = ("dti_clustering", "dti_sprites")

# The training folders' formats, plus TIFF.
IMAGE_EXTENSIONS = files.IMAGE_EXTENSIONS + (".tif", ".tiff")


def list_images(pattern: str) -> list[str]:
  """Image files of a folder (sorted) or of a glob pattern."""
  if os.path.isdir(pattern):
    paths = [os.path.join(pattern, n) for n in os.listdir(pattern)]
  else:
    paths = glob.glob(pattern)
  return sorted(p for p in paths if p.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(p))


def main(argv):
  del argv
  if not _WORKDIR.value or not _IMAGES.value:
    sys.exit("error: --workdir and --images are required")
  import jax
  import ml_collections
  import numpy as np

  from dti_jax.methods.dti_clustering import trainer as dti_clustering
  from dti_jax.run import checkpointing
  from dti_jax.viz import grids

  config_path = os.path.join(_WORKDIR.value, "config.json")
  if not os.path.exists(config_path):
    sys.exit(f"error: {config_path} not found: --workdir must be a trained workdir")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  if config.get("method") not in SERVED_METHODS:
    sys.exit(f"error: {config_path} is a {config.get('method')!r} workdir; dti_jax.infer "
             f"serves {' and '.join(SERVED_METHODS)} workdirs")
  manager = checkpointing.create_manager(_WORKDIR.value)
  meta = checkpointing.restore_meta(manager)
  if meta is None:
    sys.exit(f"error: no checkpoint in {os.path.join(_WORKDIR.value, 'checkpoints')}")
  shape = tuple(meta["image_shape"])
  if config.method == "dti_sprites":
    from dti_jax.methods.dti_sprites import trainer as dti_sprites, evaluation as sprites_evaluation
    inits = np.zeros((max(config.model.n_backgrounds, 1), 1) + shape, np.float32)
    template = dti_sprites.create_state(config, jax.random.key(0), inits)
    stage = dti_sprites.Stage(*meta["stage"])
    out_dir = os.path.splitext(_OUT.value)[0] + "_segmentations"
    eval_fn = jax.jit(functools.partial(dti_sprites.decomposition_outputs, config=config,
                                        stage=stage))
  else:
    template = dti_clustering.create_state(
        config, jax.random.key(0), np.zeros((config.model.n_prototypes,) + shape, np.float32))
    out_dir = os.path.splitext(_OUT.value)[0] + "_reconstructions"
    eval_fn = jax.jit(functools.partial(dti_clustering.assign, config=config,
                                        n_active=meta["n_active"]))
  state, _ = checkpointing.restore_latest(manager, template)
  manager.close()

  paths = list_images(_IMAGES.value)
  if not paths:
    sys.exit(f"error: no image files match --images={_IMAGES.value}")
  os.makedirs(out_dir, exist_ok=True)
  failures, rows = 0, []
  for start in range(0, len(paths), _BATCH.value):
    batch_paths, images = [], []
    for path in paths[start:start + _BATCH.value]:
      try:
        images.append(files.read_model_input(path, shape, config.data.image_size))
        batch_paths.append(path)
      except Exception as error:  # one unreadable file must not stop the others
        failures += 1
        print(f"error: cannot read image {path}: {' '.join(str(error).split())}", file=sys.stderr)
    if not images:
      continue
    images = np.stack(images)
    out = jax.device_get(eval_fn(state, images))
    names = [f"{start + i:06d}" for i in range(len(batch_paths))]
    if config.method == "dti_sprites":
      sprites_evaluation.write_segmentations(out_dir, images, out, names)
      for i, path in enumerate(batch_paths):
        rows.append((path, " ".join(str(int(k)) for k in out["choice"][i]),
                     float(out["errors"][i]),
                     os.path.join(out_dir, f"{names[i]}_labels.png")))
      continue
    for i, path in enumerate(batch_paths):
      cluster = int(out["cluster"][i])
      recon_path = os.path.join(out_dir, f"{names[i]}_cluster{cluster}.png")
      grids.save_png(recon_path, out["reconstruction"][i])
      rows.append((path, cluster, float(out["distance"][i]), recon_path))
  header = (["path", "sprites", "error", "segmentation"] if config.method == "dti_sprites"
            else ["path", "cluster", "distance", "reconstruction"])
  with open(_OUT.value, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  print(f"{len(rows)} image(s) processed -> {_OUT.value}; {failures} unreadable")
  if failures:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
