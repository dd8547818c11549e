"""DTI-Clustering's part of `dti_jax.infer`: the cluster of each new image.

Per image: the cluster, the transformation-invariant distance to its prototype, and the
prototype warped to the image, written as ``NAME_cluster<k>.png``.
"""

import functools
import os

import jax
import ml_collections
import numpy as np

from data_pipelines import files
from dti_jax.methods.dti_clustering import trainer
from dti_jax.run import workdir as workdir_lib
from dti_jax.run.inference import Predictor
from dti_jax.viz import grids

HEADER = ("cluster", "distance", "reconstruction")
FOLDER = "reconstructions"


def load(workdir: str, config: ml_collections.ConfigDict) -> Predictor:
  """The latest checkpoint of a DTI-Clustering workdir, with its active prototypes."""
  shape = tuple(workdir_lib.read_meta(workdir)["image_shape"])
  template = trainer.create_state(
      config, jax.random.key(0), np.zeros((config.model.n_prototypes,) + shape, np.float32))
  state, meta = workdir_lib.restore_trained(workdir, template)
  assign = jax.jit(functools.partial(trainer.assign, config=config, n_active=meta["n_active"]))
  return Predictor(config, state, assign, shape)


def read(predictor: Predictor, path: str) -> np.ndarray:
  """[H, W, C] in [0, 1]: converted and resized as the config's training data."""
  return files.read_model_input(path, predictor.image_shape, predictor.config.data.image_size)


def rows(predictor: Predictor, images: list[np.ndarray], names: list[str],
         out_dir: str) -> list[tuple]:
  """(cluster, distance, reconstruction PNG) per image; writes the PNGs to ``out_dir``."""
  out = jax.device_get(predictor.apply(predictor.state, np.stack(images)))
  result = []
  for i, name in enumerate(names):
    cluster = int(out["cluster"][i])
    path = os.path.join(out_dir, f"{name}_cluster{cluster}.png")
    grids.save_png(path, out["reconstruction"][i])
    result.append((cluster, float(out["distance"][i]), path))
  return result
