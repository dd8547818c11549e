"""Unsupervised part discovery's part of `dti_jax.infer`: the part map of each new image.

As `dti_jax.methods.unsup_parts.segment` without masks: each image is resized so that its
shorter side is the training side (64 for the toy segmenter, 256 for DeepLab),
centre-cropped to multiples of 16 and segmented in eval mode (stored BN statistics);
every pixel gets its argmax part. Per image: the number of parts present (labels 1..K
with at least one pixel) and ``NAME_labels.png`` (uint8, 1..K), next to
``NAME_parts.png`` (the image overlaid with the part colours).
"""


import ml_collections
import numpy as np

from dti_jax.methods.unsup_parts import segment
from dti_jax.run.inference import Predictor

HEADER = ("parts", "labels")
FOLDER = "parts"


def load(workdir: str, config: ml_collections.ConfigDict) -> Predictor:
  """The latest checkpoint of a part-discovery workdir."""
  return Predictor(config, segment.restore_state(workdir, config),
                   segment.create_predictor(config))


def read(predictor: Predictor, path: str) -> np.ndarray:
  """[h, w, 3] in [0, 1], shorter side the training side, both sides multiples of 16."""
  return segment.read_image(path, segment.default_side(predictor.config))


def rows(predictor: Predictor, images: list[np.ndarray], names: list[str],
         out_dir: str) -> list[tuple]:
  """(parts present, label map PNG) per image; writes the PNGs to ``out_dir``.

  One image at a time: images of other aspect ratios have other shapes.
  """
  result = []
  for image, name in zip(images, names):
    labels = segment.label_image(predictor.apply, predictor.state, image)
    path = segment.write_part_maps(out_dir, name, image, labels,
                                   predictor.config.model.num_parts)
    result.append((len(np.unique(labels[labels > 0])), path))
  return result
