"""DTI-Sprites evaluation: ARI / ARI-FG, semantic mIoU, clustering scores and pictures.

As the original, periodic and final scores use the first ``eval.num_images`` training
images (320). ARI is the mean of per-image scores; 'ari' compares all pixels with the
predicted labels as they are, 'ari_fg' only the ground-truth foreground, uncovered
pixels taking their closest layer (the original's ``eval_with_bkg`` True / False).
"""

import functools
import os
from typing import Any

import jax
import numpy as np
from PIL import Image

import data_pipelines
from data_pipelines import procedural
from dti_jax.metrics import clustering as clustering_metrics
from dti_jax.methods.dti_sprites import segmentation
from dti_jax.methods.dti_sprites import trainer as dti_sprites
from dti_jax.run import partition
from dti_jax.viz import grids
from dti_jax.run import scores as scores_lib, sources

# Instance colours (tab10) for labels 1..; label 0 (uncovered) is black.
TAB10 = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40],
                  [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127],
                  [188, 189, 34], [23, 190, 207]], np.float32) / 255.0


def hls_palette(count: int) -> np.ndarray:
  """``count`` evenly spaced hues (the original's semantic palette), [count, 3]."""
  hue = np.arange(count) / max(count, 1)
  return procedural.hsv_to_rgb(
      np.stack([hue, np.full(count, 0.65), np.full(count, 0.9)], -1)).astype(np.float32)


def colour_labels(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
  """int [..., H, W] labels -> [..., H, W, 3]; 0 is black, l > 0 is palette[l - 1]."""
  table = np.concatenate([np.zeros((1, 3), np.float32), palette])
  return table[np.clip(labels, 0, len(table) - 1)]


def checkerboard(height: int, width: int, cell: int = 4) -> np.ndarray:
  rows, cols = np.indices((height, width)) // cell
  return np.where(((rows + cols) % 2)[..., None] == 0, 0.8, 0.6).astype(np.float32) * np.ones(3)


class SpritesEvaluator:
  """Scores the decomposition of the first images and renders the summaries."""

  def __init__(self, config, mesh, source: data_pipelines.ArraySource):
    self.config, self.mesh, self.source = config, mesh, source
    self._fns = {}
    count = min(config.log.num_probe_images, source.num_examples)
    probes = source.images[:count].astype(np.float32) / 255.0
    self.probes = jax.make_array_from_process_local_data(partition.replicated(mesh), probes)

  def _fn(self, name, stage, num_true_ids=None):
    key = (name, stage, num_true_ids)
    if key not in self._fns:
      if name == "eval":
        fn = functools.partial(dti_sprites.eval_step, config=self.config, stage=stage,
                               num_true_ids=num_true_ids)
      else:
        fn = functools.partial(dti_sprites.decomposition_outputs, config=self.config,
                               stage=stage)
      self._fns[key] = jax.jit(fn)
    return self._fns[key]

  def outputs(self, state, stage, source=None) -> dict[str, np.ndarray]:
    """Per-image eval outputs over a source (the first images by default)."""
    source = source or self.source
    num_true_ids = int(source.masks.max()) + 1 if source.masks is not None else 1
    results = []
    for host_batch in data_pipelines.eval_batches(
        source, global_batch_size=self.config.eval.batch_size,
        process_index=jax.process_index(), process_count=jax.process_count()):
      batch = partition.to_global({k: v for k, v in host_batch.items() if k != "label"},
                                  self.mesh)
      results.append(self._fn("eval", stage, num_true_ids)(state, batch))
    results = partition.to_host(results)
    merged = {name: np.concatenate([r[name] for r in results]) for name in results[0]}
    valid = merged.pop("valid").astype(bool)
    return {name: value[valid] for name, value in merged.items()}

  def scores(self, state, stage, source=None) -> dict[str, Any]:
    """loss, ari, ari_fg (with masks), miou (with semantic labels), acc/nmi (with labels),
    coseg_* (one layer with foreground masks)."""
    source = source or self.source
    out = self.outputs(state, stage, source)
    k = self.config.model.n_sprites + int(self.config.model.add_empty_sprite)
    result = {"loss": float(np.mean(out["error"]))}
    if "ari" in out:
      result["ari"], result["ari_fg"] = float(np.mean(out["ari"])), float(np.mean(out["ari_fg"]))
    if source.semantic is not None and self.config.eval.semantic:
      classes = max(int(source.semantic.max()), k) + 1
      confusion = segmentation.segmentation_confusion(
          source.semantic[:len(out["semantic"])], out["semantic"], classes)
      semantic = segmentation.segmentation_scores(confusion)
      result["miou"], result["miou_nobkg"] = semantic["avg_iou"], semantic["avg_iou_nobkg"]
      result["semantic_acc"] = semantic["global_acc"]
    if source.masks is not None and self.config.model.n_layers == 1:
      # Cosegmentation (single-object data with foreground masks, e.g. Weizmann Horse):
      # foreground = the chosen sprite's mask > 0.5; fg/bg matched by Hungarian.
      truth = (source.masks[:len(out["instance"])] > 0).astype(np.int64)
      coseg = segmentation.segmentation_scores(segmentation.segmentation_confusion(
          truth, (out["instance"] > 0).astype(np.int64), 2))
      result.update(coseg_acc=coseg["global_acc"], coseg_miou=coseg["avg_iou"],
                    coseg_iou_fg=coseg["iou_cls1"])
    clusters = out["choice"][:, 0]
    if source.num_classes and self.config.model.n_layers == 1:
      result.update(clustering_metrics.clustering_scores(
          source.labels[:len(clusters)], clusters, source.num_classes, k))
    usage = np.mean(np.eye(k)[out["choice"]], axis=(0, 1))
    result["proportions"] = usage
    return result

  def decompositions(self, state, stage, images=None) -> dict[str, np.ndarray]:
    images = self.probes if images is None else images
    return partition.to_host(self._fn("pictures", stage)(state, images))

  def images(self, state, stage) -> dict[str, np.ndarray]:
    """'sprites' (prototypes, masks, masked sprites over a checkerboard, backgrounds) and
    'decomposition' (per probe: input, reconstruction, each layer, instance and semantic
    segmentation)."""
    out = self.decompositions(state, stage)
    probes = np.asarray(jax.device_get(self.probes))
    return {"sprites": sprite_grid(state), "decomposition": decomposition_grid(
        probes, out, self.config.model.n_sprites + int(self.config.model.add_empty_sprite))}


def rgb(images: np.ndarray) -> np.ndarray:
  """Grey images [..., 1] as RGB [..., 3], for pictures that mix them with colours."""
  return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def sprite_grid(state) -> np.ndarray:
  """Rows: prototypes, masks, prototype x mask over a checkerboard; then backgrounds."""
  sprites = jax.device_get(state.params["sprites"])
  protos = rgb(np.clip(np.asarray(sprites["prototypes"]), 0, 1))
  masks = np.clip(np.asarray(sprites["masks"]), 0, 1)
  board = checkerboard(*protos.shape[1:3])
  masked = masks * protos + (1 - masks) * board
  rows = [protos, np.repeat(masks, 3, axis=-1), masked]
  k = len(protos)
  tiles = np.concatenate(rows)
  grid = grids.make_grid(tiles, k)
  scale = max(1, 48 // protos.shape[1])
  grid = grids.upscale(grid, scale)
  if "backgrounds" in state.params:
    bkg = rgb(np.clip(np.asarray(jax.device_get(state.params["backgrounds"])), 0, 1))
    bkg_grid = grids.upscale(grids.make_grid(bkg, len(bkg)), max(1, 48 // bkg.shape[1]))
    width = max(grid.shape[1], bkg_grid.shape[1])
    pad = lambda g: np.pad(g, ((0, 0), (0, width - g.shape[1]), (0, 0)), constant_values=1)
    grid = np.concatenate([pad(grid), pad(bkg_grid)])
  return grid


def decomposition_grid(images: np.ndarray, out: dict[str, np.ndarray], k: int) -> np.ndarray:
  """One row per image: input, reconstruction, each layer over a checkerboard,
  instance segmentation (tab10 by layer) and semantic segmentation (hls by sprite)."""
  n, height, width = images.shape[:3]
  board = checkerboard(height, width)
  layers = out["alphas"] * out["colours"] + (1 - out["alphas"]) * board     # [n, L, H, W, 3]
  instance = colour_labels(out["instance"], TAB10)
  labels = np.where(out["instance"] > 0,
                    np.take_along_axis(out["choice"], np.clip(out["instance"] - 1, 0, None)
                                       .reshape(n, -1), axis=1).reshape(n, height, width) + 1, 0)
  semantic = colour_labels(labels, hls_palette(k))
  row = [rgb(images)[:, None], rgb(out["hard_reconstruction"])[:, None],
         np.broadcast_to(layers, layers.shape[:-1] + (3,)), instance[:, None],
         semantic[:, None]]
  tiles = np.concatenate(row, axis=1)
  columns = tiles.shape[1]
  grid = grids.make_grid(np.clip(tiles.reshape((-1, height, width, 3)), 0, 1), columns)
  return grids.upscale(grid, max(1, 64 // height))


def create_evaluator(config, mesh, source) -> SpritesEvaluator:
  return SpritesEvaluator(config, mesh, sources.first_images(source, config.eval.num_images))


def final_evaluation(evaluator: SpritesEvaluator, state, stage, source, writer,
                     workdir: str) -> dict[str, Any]:
  """Scores the first images of ``source``; writes summaries, PNGs, GIFs and scores."""
  source = sources.first_images(source, evaluator.config.eval.num_images)
  final = evaluator.scores(state, stage, source)
  images = evaluator.images(state, stage)
  step = int(state.step)
  scores_lib.write_eval(writer, step, "final", final, images)
  scores_lib.save_frame(workdir, step, images)
  if jax.process_index() == 0:
    save_final_outputs(workdir, evaluator, state, stage, source, final)
  return final


def save_final_outputs(workdir, evaluator, state, stage, source, scores,
                       num_images: int = 32) -> None:
  """sprites/ (PNG per sprite, mask, masked sprite, background), segmentations/ of the
  first images, sprites.gif from the frames, sprite_usage.tsv and final_scores.json."""
  sprites = jax.device_get(state.params["sprites"])
  folder = os.path.join(workdir, "sprites")
  os.makedirs(folder, exist_ok=True)
  protos = rgb(np.clip(np.asarray(sprites["prototypes"]), 0, 1))
  masks = np.clip(np.asarray(sprites["masks"]), 0, 1)
  for k, (proto, mask) in enumerate(zip(protos, masks)):
    grids.save_png(os.path.join(folder, f"prototype{k}.png"), proto)
    grids.save_png(os.path.join(folder, f"mask{k}.png"), mask)
    grids.save_png(os.path.join(folder, f"masked_prototype{k}.png"),
                   mask * proto + (1 - mask) * checkerboard(*proto.shape[:2]))
  if "backgrounds" in state.params:
    for m, bkg in enumerate(np.asarray(jax.device_get(state.params["backgrounds"]))):
      grids.save_png(os.path.join(folder, f"background{m}.png"), np.clip(bkg, 0, 1))
  grids.save_png(os.path.join(workdir, "sprites.png"), sprite_grid(state))
  count = min(num_images, source.num_examples)
  images = source.images[:count].astype(np.float32) / 255.0
  out = evaluator.decompositions(state, stage, images)
  k = len(protos) + int(evaluator.config.model.add_empty_sprite)
  grids.save_png(os.path.join(workdir, "segmentations.png"),
                 decomposition_grid(images, out, k))
  write_segmentations(os.path.join(workdir, "segmentations"), images, out)
  scores_lib.evolution_gifs(workdir, ("sprites", "decomposition"))
  with open(os.path.join(workdir, "sprite_usage.tsv"), "w") as f:
    f.write("sprite\tusage\n")
    f.writelines(f"{k}\t{p:.6f}\n" for k, p in enumerate(scores["proportions"]))
  scores_lib.write_scores_json(workdir, scores)


def write_segmentations(folder: str, images: np.ndarray, out: dict[str, np.ndarray],
                        names: list[str] | None = None) -> None:
  """Per image: input, reconstruction, coloured instance segmentation and raw label PNGs."""
  os.makedirs(folder, exist_ok=True)
  for i, image in enumerate(images):
    name = names[i] if names else f"img{i:04d}"
    grids.save_png(os.path.join(folder, f"{name}_input.png"), image)
    grids.save_png(os.path.join(folder, f"{name}_reconstruction.png"),
                   np.clip(out["hard_reconstruction"][i], 0, 1))
    grids.save_png(os.path.join(folder, f"{name}_instances.png"),
                   colour_labels(out["instance"][i], TAB10))
    Image.fromarray(out["instance"][i].astype(np.uint8)).save(
        os.path.join(folder, f"{name}_labels.png"))
