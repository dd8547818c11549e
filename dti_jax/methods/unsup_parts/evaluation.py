"""Part discovery's scores and pictures on held-out images.

Protocol "pixels" (the toy benchmark, DeepFashion; spec 9.3, 12): the eval-mode logits
at the image side (aligned corners), argmax over the K parts, against the ground-truth
part labels on every ground-truth foreground pixel: FG-NMI and FG-ARI x 100 from one
contingency table accumulated over batches. The toy data adds the spec's baselines
(foreground-box grid and strips, colour k-means), computed once by the same metric
code and logged beside. Protocol "cub_keypoints" (spec 9.2) scores the part under each
visible keypoint of the official test split (`dti_jax.methods.unsup_parts.cub_evaluation`).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import data_pipelines
from dti_jax.methods.unsup_parts import baselines as part_baselines, part_metrics as parts
from dti_jax.methods.unsup_parts import model as model_lib
from dti_jax.methods.unsup_parts import trainer as unsup_parts
from dti_jax.run import partition
from dti_jax.methods.unsup_parts import equivariance
from dti_jax.methods.unsup_parts import part_maps
from dti_jax.viz import grids
from dti_jax.run import scores as scores_lib, sources

PANEL_IMAGES = 8
PAIR_IMAGES = 4


def heldout_source(config, source) -> data_pipelines.ArraySource:
  """The toy's held-out draw, else the first eval.num_images of split eval.split."""
  e = config.eval
  if config.data.name.endswith("_procedural"):
    return data_pipelines.load_source(config.data.name, num_examples=e.num_images,
                                      seed=e.heldout_seed)
  if e.split and e.split != config.data.split:
    source = data_pipelines.load_source(config.data.name, data_dir=config.data.data_dir or None,
                                        split=e.split)
  count = min(e.num_images, source.num_examples) if e.num_images > 0 else source.num_examples
  return sources.first_images(source, count)


class PartsEvaluator:
  """FG-NMI / FG-ARI on a held-out set with part labels, and the part pictures."""

  def __init__(self, config, mesh, source: data_pipelines.ArraySource,
               training_source: data_pipelines.ArraySource | None = None):
    self.config, self.mesh, self.source = config, mesh, source
    if source.masks is None:
      raise ValueError(f"{source.name}: the held-out images have no part labels to score")
    repl, data = partition.replicated(mesh), partition.data_sharding(mesh)
    self._logits = jax.jit(functools.partial(unsup_parts.predict_logits, config=config),
                           in_shardings=(repl, data), out_shardings=data)
    self.baselines = {}
    if config.eval.get("baselines", False) and training_source is not None:
      self.baselines = part_baselines.all_baselines(
          training_source.images, training_source.masks, source.images, source.masks)

    def pairs(state, images, masks, key):
      w = config.warp
      grid = equivariance.random_grids(key, images.shape[0], *images.shape[1:3],
                                       sigma=w.sigma, max_rotation_degrees=w.max_rotation_degrees,
                                       scale_range=tuple(w.scale_range),
                                       max_translation=w.max_translation)
      warped = equivariance.warp(images, grid)
      logits = unsup_parts.predict_logits(state, images, config=config)
      return {"warped_image": warped, "warped_mask": equivariance.warp(masks, grid),
              "warped_prediction": equivariance.warp(logits, grid),
              "prediction_of_warped": unsup_parts.predict_logits(state, warped, config=config)}

    self._pairs = jax.jit(pairs)
    model = model_lib.create_segmenter(config.model)

    @jax.jit
    def one_image(state, image):
      """Argmax parts [h, w] of one Caffe-normalised image (aligned-corners upsampling)."""
      logits, _ = model_lib.part_logits(
          model, {"params": state.params, "batch_stats": state.batch_stats}, image[None],
          train=False)
      return jnp.argmax(logits[0], axis=-1)

    self._one_image = one_image

  def probabilities(self, state, source: data_pipelines.ArraySource):
    """Yields (the whole global batch's images and masks, softmax [b, H, W, K]) over
    ``source``, padding rows dropped; every process reads its rows and gets them all."""
    for host_batch in data_pipelines.eval_batches(
        source, global_batch_size=self.config.eval.batch_size,
        process_index=jax.process_index(), process_count=jax.process_count()):
      batch = partition.to_global({name: host_batch[name] for name in ("image", "mask",
                                                                       "_mask")}, self.mesh)
      batch["logits"] = self._logits(state, batch["image"])
      batch = partition.to_host(batch)
      valid = batch.pop("_mask")
      logits = batch.pop("logits")
      yield ({name: value[valid] for name, value in batch.items()},
             jax.nn.softmax(logits[valid], axis=-1))

  def scores(self, state, stage=None) -> dict[str, Any]:
    del stage
    num_parts = self.config.model.num_parts
    num_labels = int(self.source.masks.max()) + 1
    table = np.zeros((num_labels, num_parts), np.float64)
    for host_batch, probabilities in self.probabilities(state, self.source):
      labels = host_batch["mask"]
      foreground = labels > 0
      predicted = np.asarray(probabilities).argmax(axis=-1)
      table += parts.contingency(labels[foreground], predicted[foreground], num_labels,
                                 num_parts)
    result = {f"fg_{name}": 100.0 * value for name, value in parts.nmi_ari(table).items()}
    result["proportions"] = (table.sum(axis=0) / max(table.sum(), 1.0)).tolist()
    result.update(self.full_image_scores(state))
    for baseline, values in self.baselines.items():
      result.update({f"baseline_{baseline}_{name}": value for name, value in values.items()})
    return result

  def full_image_scores(self, state) -> dict[str, float]:
    """DeepFashion's NMI / ARI over every pixel (spec 9.3) with ``eval.masks_dir``: images
    with the shorter side 256, prediction m (argmax_k + 1) with m the supervised mask,
    against the label map with background (nearest resize, or the original notebook's
    bilinear one with ``eval.legacy_label_resize``)."""
    masks_dir = self.config.eval.get("masks_dir", "")
    if not masks_dir:
      return {}
    from data_pipelines import deepfashion_parts  # pylint: disable=import-outside-toplevel
    k = self.config.model.num_parts
    table = np.zeros((deepfashion_parts.NUM_LABELS, k + 1))
    for sample in deepfashion_parts.full_eval_samples(
        self.config.data.data_dir or None, masks_dir, "test",
        legacy_label_resize=self.config.eval.get("legacy_label_resize", False),
        limit=self.config.eval.num_images or None):
      predicted = np.where(sample["mask"] > 0,
                           np.asarray(self._one_image(state, sample["image"])) + 1, 0)
      table += parts.contingency(sample["labels"].ravel(), predicted.ravel(),
                                 deepfashion_parts.NUM_LABELS, k + 1)
    return {f"{name}_full": 100 * value for name, value in parts.nmi_ari(table).items()}

  def images(self, state, stage=None) -> dict[str, np.ndarray]:
    """``part_maps``: rows input, ground truth, predicted parts (overlays, background
    from the ground-truth mask), mean-colour render of the predicted parts; ``part_heat_maps``:
    per image its K normalised part maps; ``equivariance``: per image the input, its
    prediction, the warped input, the prediction of the warped input and the warped
    prediction (the loss asks the last two to agree)."""
    del stage
    k = self.config.model.num_parts
    count = min(PANEL_IMAGES, self.source.num_examples)
    first = sources.first_images(self.source, count)
    host_batch, probabilities = next(self.probabilities(state, first))
    probabilities = np.asarray(probabilities)[:count]
    images = host_batch["image"][:count]
    truth = host_batch["mask"][:count]
    masks = truth > 0
    predicted = part_maps.labels_with_background(probabilities, masks)
    num_truth = max(int(self.source.masks.max()) + 1, k + 1)
    scale = max(1, 128 // images.shape[1])
    rows = [images, part_maps.overlay(images, truth, num_truth),
            part_maps.overlay(images, predicted, k + 1),
            part_maps.mean_colour_render(images, predicted, k + 1)]
    pictures = {"part_maps": grids.upscale(grids.make_grid(np.concatenate(rows), count),
                                           scale)}
    heat = part_maps.part_heat_maps(probabilities, masks)[:PAIR_IMAGES]
    heat = np.repeat(heat[..., None], 3, axis=-1).reshape((-1,) + heat.shape[2:] + (3,))
    pictures["part_heat_maps"] = grids.upscale(grids.make_grid(heat, k), scale)
    shown = images[:PAIR_IMAGES]
    pairs = jax.device_get(self._pairs(state, shown,
                                       masks[:PAIR_IMAGES, ..., None].astype(np.float32),
                                       jax.random.key(self.config.seed)))
    warped_fg = pairs["warped_mask"][..., 0] > 0.5

    def painted(base, logits, valid):
      labels = np.where(valid, np.asarray(logits).argmax(-1) + 1, 0)
      return part_maps.overlay(np.clip(base, 0, 1), labels, k + 1)

    columns = [shown, painted(shown, probabilities[:PAIR_IMAGES], masks[:PAIR_IMAGES]),
               np.clip(pairs["warped_image"], 0, 1),
               painted(pairs["warped_image"], pairs["prediction_of_warped"], warped_fg),
               painted(pairs["warped_image"], pairs["warped_prediction"], warped_fg)]
    pictures["equivariance"] = grids.upscale(grids.make_grid(
        np.stack(columns, axis=1).reshape((-1,) + shown.shape[1:]), len(columns)), scale)
    return pictures


def create_evaluator(config, mesh, source):
  if config.eval.protocol == "cub_keypoints":
    from dti_jax.methods.unsup_parts import cub_evaluation as parts_cub
    return parts_cub.CubEvaluator(config, mesh, source)
  if config.eval.protocol != "pixels":
    raise ValueError(f"config.eval.protocol={config.eval.protocol!r} is not 'pixels' or "
                     "'cub_keypoints'")
  return PartsEvaluator(config, mesh, heldout_source(config, source), training_source=source)


def final_evaluation(evaluator, state, stage, source, writer,
                     workdir: str) -> dict[str, Any]:
  """Scores the held-out images; writes summaries, the pictures and final_scores.json."""
  del source
  return scores_lib.write_final(evaluator, state, stage, writer, workdir)
