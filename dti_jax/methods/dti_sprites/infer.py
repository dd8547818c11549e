"""DTI-Sprites' part of `dti_jax.infer`: the layered decomposition of each new image.

Per image: the sprite chosen for each layer and the reconstruction error, and in the
output folder the input, the reconstruction, the coloured instance segmentation and the
raw label map ``NAME_labels.png`` (value l = layer l, 0 = background).
"""

import functools
import os

import jax
import ml_collections
import numpy as np

from data_pipelines import files
from dti_jax.methods.dti_sprites import evaluation
from dti_jax.methods.dti_sprites import trainer
from dti_jax.run import workdir as workdir_lib
from dti_jax.run.inference import Predictor

HEADER = ("sprites", "error", "segmentation")
FOLDER = "segmentations"


def load(workdir: str, config: ml_collections.ConfigDict) -> Predictor:
  """The latest checkpoint of a DTI-Sprites workdir, at the curriculum stage it reached."""
  shape = tuple(workdir_lib.read_meta(workdir)["image_shape"])
  inits = np.zeros((max(config.model.n_backgrounds, 1), 1) + shape, np.float32)
  template = trainer.create_state(config, jax.random.key(0), inits)
  state, meta = workdir_lib.restore_trained(workdir, template)
  decompose = jax.jit(functools.partial(trainer.decomposition_outputs, config=config,
                                        stage=trainer.Stage(*meta["stage"])))
  return Predictor(config, state, decompose, shape)


def read(predictor: Predictor, path: str) -> np.ndarray:
  """[H, W, C] in [0, 1]: converted and resized as the config's training data."""
  return files.read_model_input(path, predictor.image_shape, predictor.config.data.image_size)


def rows(predictor: Predictor, images: list[np.ndarray], names: list[str],
         out_dir: str) -> list[tuple]:
  """(sprites per layer, error, label map PNG) per image; writes the PNGs to ``out_dir``."""
  images = np.stack(images)
  out = jax.device_get(predictor.apply(predictor.state, images))
  evaluation.write_segmentations(out_dir, images, out, names)
  return [(" ".join(str(int(k)) for k in out["choice"][i]), float(out["errors"][i]),
           os.path.join(out_dir, f"{name}_labels.png")) for i, name in enumerate(names)]
