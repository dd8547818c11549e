"""Scores converted part-discovery weights (e.g. the original's released checkpoints).

  python -m scripts.convert_torch_weights --kind=unsup_parts \
      --input=model_60000.pth --output=cub_model_60000.npz
  python -m dti_jax.methods.unsup_parts.evaluate --config=configs/unsup_parts_cub.py \
      --weights=cub_model_60000.npz --out=results/cub_released \
      --config.data.data_dir=data/CUB_200_2011 --config.eval.masks_dir=data/cub_masks

Builds the config's segmenter, loads every tensor of ``--weights`` (keys and shapes
checked, one-line errors), runs the config's evaluation protocol (CUB: keypoint FG-NMI /
FG-ARI, with ``eval.masks_dir`` NMI / ARI, and the keypoint regression; DeepFashion
and the toy data: pixel FG-NMI / FG-ARI) and writes ``final_scores.json`` and the part
pictures to ``--out``. Nothing is trained; a trained workdir is scored instead with
``python -m dti_jax.main ... --config.eval_only=True``.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = {}  # defined when run as a program, so importing this module defines none


def evaluate(config, weights: str, out: str) -> dict:
  """Scores of ``weights`` under ``config``'s protocol; writes them and the pictures."""
  import jax  # pylint: disable=import-outside-toplevel
  import data_pipelines  # pylint: disable=import-outside-toplevel
  from dti_jax.methods.unsup_parts import evaluation as parts_evaluation
  from dti_jax.run import partition, scores as scores_lib
  from dti_jax.methods.unsup_parts import trainer as unsup_parts  # pylint: disable=import-outside-toplevel
  from dti_jax.viz import grids  # pylint: disable=import-outside-toplevel
  if config.get("method") != "unsup_parts":
    raise ValueError(f"--config is a {config.get('method')!r} config, not a part-discovery one")
  state = unsup_parts.segmenter_state(config, weights)
  mesh = partition.create_mesh(1)
  source = None
  if config.eval.protocol == "pixels" and not config.data.name.endswith("_procedural"):
    source = data_pipelines.load_source(config.data.name, data_dir=config.data.data_dir or None,
                                        split=config.eval.split or config.data.split)
  evaluator = parts_evaluation.create_evaluator(config, mesh, source)
  scores = evaluator.scores(state)
  images = evaluator.images(state)
  os.makedirs(out, exist_ok=True)
  scores_lib.write_scores_json(out, scores)
  if jax.process_index() == 0:
    for name, picture in images.items():
      grids.save_png(os.path.join(out, f"{name}.png"), picture)
  return scores


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  for name in ("config", "weights", "out"):
    if FLAGS[name].value is None:
      sys.exit(f"error: --{name} is required")
  try:
    scores = evaluate(FLAGS["config"].value, FLAGS["weights"].value, FLAGS["out"].value)
  except (ValueError, OSError) as error:
    sys.exit(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}")
  print(" ".join(f"{name} {value:.2f}" for name, value in scores.items()
                 if isinstance(value, float)))


def _define_flags() -> None:
  """The command-line flags (absl), registered once."""
  FLAGS["config"] = config_flags.DEFINE_config_file("config", None, "A part-discovery config.",
                                                    lock_config=True)
  FLAGS["weights"] = flags.DEFINE_string("weights", None,
                                         "Converted segmenter weights (.npz).")
  FLAGS["out"] = flags.DEFINE_string("out", None,
                                     "Folder for final_scores.json and the pictures.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
