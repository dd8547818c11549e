"""Scores and pictures of an evaluation, for every method: the console line, TensorBoard,
PNG frames in ``<workdir>/images/`` and the one writer of ``final_scores.json``."""

import json
import os
from typing import Any

import jax
import numpy as np

from dti_jax.viz import grids


def format_scores(scores: dict[str, Any]) -> str:
  names = [n for n in ("ari_fg", "ari", "miou", "acc", "nmi", "loss", "nmi_diff", "psnr",
                       "recall_4px", "random_recall_4px", "precision_active_4px", "elbo",
                       "fg_nmi", "fg_ari", "nmi_full", "ari_full", "keypoint_error",
                       "nmi_kmeans_labels", "knn_accuracy", "linear_probe_accuracy", "map")
           if n in scores]
  return " ".join(f"{n} {scores[n]:.4f}" for n in names)


def write_eval(writer, step, prefix, scores, images=None):
  scalars = {f"{prefix}/{n}": v for n, v in scores.items() if n != "proportions"}
  scalars.update({f"{prefix}/proportion_{k}": p
                  for k, p in enumerate(scores.get("proportions", ()))})
  writer.write_scalars(step, scalars)
  if images is not None:
    writer.write_images(step, {name: grids.to_uint8(img)[None] for name, img in images.items()})


def save_frame(workdir: str, step: int, images: dict[str, np.ndarray]) -> None:
  """Keeps each evaluation's image summaries as PNG frames in ``<workdir>/images/``."""
  if jax.process_index() != 0:
    return
  folder = os.path.join(workdir, "images")
  os.makedirs(folder, exist_ok=True)
  for name, image in images.items():
    grids.save_png(os.path.join(folder, f"{name}_{step:08d}.png"), image)


def write_final(evaluator, state, stage, writer, workdir: str) -> dict[str, Any]:
  """The held-out evaluation at the end of a run (DLP, part discovery): scores and
  pictures to TensorBoard, the pictures as PNG frames and in the workdir, and
  final_scores.json; returns the scores."""
  final = evaluator.scores(state, stage)
  images = evaluator.images(state, stage)
  step = int(state.step)
  write_eval(writer, step, "final", final, images)
  save_frame(workdir, step, images)
  if jax.process_index() == 0:
    for name, picture in images.items():
      grids.save_png(os.path.join(workdir, f"{name}.png"), picture)
  write_scores_json(workdir, final)
  return final


def evolution_gifs(workdir: str, names=("prototypes", "transformed_prototypes")) -> None:
  """<name>.gif from the saved frames of each picture name, in step order."""
  from PIL import Image
  folder = os.path.join(workdir, "images")
  if not os.path.isdir(folder):
    return
  for name in names:
    paths = sorted(p for p in os.listdir(folder) if p.startswith(name + "_0"))
    frames = [np.asarray(Image.open(os.path.join(folder, p)), np.float32) / 255.0 for p in paths]
    frames = [f[..., None] if f.ndim == 2 else f for f in frames]
    if frames:
      grids.save_gif(os.path.join(workdir, f"{name}.gif"), frames)


def write_scores_json(workdir: str, scores: dict[str, Any]) -> None:
  """``<workdir>/final_scores.json`` (process 0 only); arrays become lists."""
  if jax.process_index() != 0:
    return
  with open(os.path.join(workdir, "final_scores.json"), "w") as f:
    json.dump({name: (value.tolist() if isinstance(value, np.ndarray) else value)
               for name, value in scores.items()}, f, indent=1)
