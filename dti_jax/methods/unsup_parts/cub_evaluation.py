"""Part discovery scored on CUB-200-2011 keypoints, as the original's notebook (spec 9.2, 9.5).

* FG-NMI / FG-ARI: each official test image cropped to its box, shorter side 256,
  Caffe-normalised, borders cut to multiples of 16 (`data_pipelines.cub_parts`); the
  eval-mode logits upsampled to the input with align_corners=False; the argmax part read
  at every visible keypoint (grid_sample nearest); NMI / ARI x 100 between the part and
  the keypoint's index (15 classes) over all keypoints of all images, from one
  contingency table. No mask. The original notebook's stored FG-ARI (21.03) came from
  the with-background labels (fixed upstream later); this is the corrected one.
* NMI / ARI (with ``eval.masks_dir``): the same on the uncropped images, the
  prediction argmax over [1 - m, m softmax] (K + 1 labels) with m the original's
  supervised masks.
* Keypoint regression error (``eval.keypoint_regression``; SCOPS' protocol): part
  centres of softmax x mask on the 256 crops of the training loader (CMR splits),
  a linear regression per keypoint from the 2K centres, mean L2 error x 100 on the
  test crops.

Test images differ in size, so they run one at a time (one compilation per size).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import cub_eval, cub_parts
from dti_jax.methods.unsup_parts import part_metrics as parts
from dti_jax.methods.unsup_parts import model as model_lib
from dti_jax.methods.unsup_parts.part_sampling import upsample_logits
from dti_jax.methods.unsup_parts import trainer as unsup_parts
from dti_jax.methods.unsup_parts import part_maps
from dti_jax.viz import grids

PANEL_IMAGES = 8
PANEL_SIDE = 256


class CubEvaluator:
  """Keypoint-based part scores on CUB and the part pictures."""

  def __init__(self, config, mesh, source=None):
    del mesh, source  # one image at a time, on the default device
    self.config = config
    self.data_dir = config.data.data_dir or None
    model = model_lib.create_segmenter(config.model)

    @jax.jit
    def probabilities(state, image):
      """Softmax [h, w, K] of one Caffe-normalised image [h, w, 3] (logits resized with
      align_corners=False to the image)."""
      logits = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                           image[None], train=False)[0]
      return jax.nn.softmax(upsample_logits(logits, image.shape[:2]), axis=-1)

    self._probabilities = probabilities
    self._crop_probabilities = jax.jit(functools.partial(
        _crop_probabilities, config=config))

  def _limit(self) -> int | None:
    return self.config.eval.num_images or None

  def keypoint_scores(self, state) -> dict[str, float]:
    k = self.config.model.num_parts
    table = np.zeros((cub_parts.NUM_KEYPOINTS, k))
    for sample in cub_eval.keypoint_eval_samples(self.data_dir, "test", limit=self._limit()):
      labels = np.asarray(self._probabilities(state, sample["image"])).argmax(-1)
      visible = sample["visible"]
      parts_at = cub_eval.sample_nearest(labels, sample["keypoints"][visible])
      table += parts.contingency(np.flatnonzero(visible), parts_at,
                                 cub_parts.NUM_KEYPOINTS, k)
    return {f"fg_{name}": 100 * value for name, value in parts.nmi_ari(table).items()}

  def full_image_scores(self, state) -> dict[str, float]:
    masks_dir = self.config.eval.get("masks_dir", "")
    if not masks_dir:
      return {}
    k = self.config.model.num_parts
    table = np.zeros((cub_parts.NUM_KEYPOINTS, k + 1))
    for sample in cub_eval.full_image_eval_samples(self.data_dir, masks_dir, "test",
                                                    limit=self._limit()):
      probabilities = np.asarray(self._probabilities(state, sample["image"]))
      labels = part_maps.labels_with_background(probabilities[None], sample["mask"][None])[0]
      visible = sample["visible"]
      parts_at = cub_eval.sample_nearest(labels, sample["keypoints"][visible])
      table += parts.contingency(np.flatnonzero(visible), parts_at,
                                 cub_parts.NUM_KEYPOINTS, k + 1)
    return {f"{name}_full": 100 * value for name, value in parts.nmi_ari(table).items()}

  def _centres(self, state, crops) -> np.ndarray:
    centres = []
    for start in range(0, len(crops.images), self.config.eval.get("crop_batch_size", 16)):
      stop = start + self.config.eval.get("crop_batch_size", 16)
      images = jnp.asarray(crops.images[start:stop], jnp.float32) / 255.0
      masks = jnp.asarray(crops.masks[start:stop, ..., None], jnp.float32)
      centres.append(parts.part_centres(np.asarray(self._crop_probabilities(state, images,
                                                                            masks))))
    return np.concatenate(centres)

  def regression_scores(self, state) -> dict[str, float]:
    if not self.config.eval.get("keypoint_regression", False):
      return {}
    limit = self._limit()
    train = cub_parts.read_train(self.data_dir, "train", num_examples=limit)
    test = cub_parts.read_train(self.data_dir, "test", num_examples=limit)
    error = parts.keypoint_regression_error(
        self._centres(state, train), train.keypoints, train.visible,
        self._centres(state, test), test.keypoints, test.visible)
    return {"keypoint_error": error}

  def scores(self, state, stage=None) -> dict[str, Any]:
    del stage
    return {**self.keypoint_scores(state), **self.full_image_scores(state),
            **self.regression_scores(state)}

  def images(self, state, stage=None) -> dict[str, np.ndarray]:
    """``part_maps``: the first test crops (box crop, 256 px) and their argmax parts
    over the image (no mask at test time), with the visible keypoints as white dots."""
    del stage
    k = self.config.model.num_parts
    tiles = []
    for sample in cub_eval.keypoint_eval_samples(self.data_dir, "test",
                                                  limit=PANEL_IMAGES):
      image = np.clip((sample["image"] + cub_parts.CAFFE_MEAN) / 255.0, 0, 1)
      labels = np.asarray(self._probabilities(state, sample["image"])).argmax(-1) + 1
      painted = part_maps.overlay(image[None], labels[None], k + 1)[0]
      for x, y in sample["keypoints"][sample["visible"]].astype(int):
        painted[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2] = 1.0
      tiles += [_fit(image), _fit(painted)]
    return {"part_maps": grids.make_grid(np.stack(tiles), 2 * min(4, len(tiles) // 2 or 1))}


def _crop_probabilities(state, images, masks, *, config):
  """softmax x mask [B, S, S, K] of training-loader crops (align-corners upsampling)."""
  logits = unsup_parts.predict_logits(state, images, config=config)
  return jax.nn.softmax(logits, axis=-1) * masks


def _fit(image: np.ndarray, side: int = PANEL_SIDE) -> np.ndarray:
  """Centre crop / pad [h, w, 3] to side x side (white), for a grid of equal tiles."""
  out = np.ones((side, side, 3), np.float32)
  h, w = image.shape[:2]
  top, left = max((h - side) // 2, 0), max((w - side) // 2, 0)
  crop = image[top:top + side, left:left + side]
  oy, ox = (side - crop.shape[0]) // 2, (side - crop.shape[1]) // 2
  out[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
  return out
