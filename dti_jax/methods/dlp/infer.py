"""Deep Latent Particles' part of `dti_jax.infer`: the particles of each new image.

Each image is resized to the model's S x S input and encoded deterministically (z = mu,
as `dti_jax.methods.dlp.edit`). BN runs in eval mode with the statistics stored in the
checkpoint: unlike the evaluator and the editor, inference does not re-estimate them on
training data, so it needs none (the stored statistics are the training EMAs, which lag
the weights a little).

Per image: the K foreground particle positions mu as ``x,y`` pixel pairs of the S x S
input, separated by ``;`` (x = column, y = row, pixel centres at integers, (0, 0) the
top-left pixel), their obj_on in [0, 1] likewise (object model; empty for the masked
model, which has none), and ``NAME_particles.png``: the S x S input with the particles
drawn as rings (faded by obj_on).
"""

import functools
import os

import jax
import ml_collections
import numpy as np

from data_pipelines import files
from dti_jax.methods.dlp import edit
from dti_jax.methods.dlp import keypoints
from dti_jax.methods.dlp import pictures
from dti_jax.run.inference import Predictor
from dti_jax.viz import grids

HEADER = ("particles", "obj_on", "picture")
FOLDER = "particles"


def load(workdir: str, config: ml_collections.ConfigDict) -> Predictor:
  """The latest checkpoint of a DLP workdir, with its stored BN statistics."""
  state, model = edit.restore_model(workdir, config)
  return Predictor(config, state, functools.partial(edit.encode, model))


def read(predictor: Predictor, path: str) -> np.ndarray:
  """[S, S, 3] in [0, 1]: RGB, resized to the model's input side (as the editor)."""
  side = predictor.config.model.image_size
  return files.read_model_input(path, (side, side, 3))


def format_pairs(values: np.ndarray) -> str:
  """[K, 2] -> 'a,b;a,b;...' with two decimals."""
  return ";".join(f"{a:.2f},{b:.2f}" for a, b in values)


def rows(predictor: Predictor, images: list[np.ndarray], names: list[str],
         out_dir: str) -> list[tuple]:
  """(particles, obj_on, picture PNG) per image; writes the pictures to ``out_dir``."""
  images = np.stack(images)
  particles = jax.device_get(predictor.apply(predictor.state, images))
  count, side = predictor.config.model.num_particles, predictor.config.model.image_size
  positions = keypoints.to_pixels(particles["mu"][:, :count], side)   # [B, K, (row, col)]
  on = edit.presence(particles, count)
  result = []
  for i, name in enumerate(names):
    picture = os.path.join(out_dir, f"{name}_particles.png")
    grids.save_png(picture, pictures.draw_circles(images[i], positions[i], strength=on[i]))
    obj_on = ";".join(f"{p:.3f}" for p in on[i]) if "obj_on" in particles else ""
    result.append((format_pairs(positions[i][:, ::-1]), obj_on, picture))
  return result
