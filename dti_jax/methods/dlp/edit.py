"""Edits the particles of an image under a trained Deep Latent Particles model and decodes.

  python -m dti_jax.methods.dlp.edit --workdir=workdirs/dlp_shapes --image=scene.png \
      --move=3:10,-5 --out=edited.png
  python -m dti_jax.methods.dlp.edit --workdir=workdirs/dlp_shapes --image=scene.png \
      --other_image=other.png --swap=2:7 --out=edited.png
  python -m dti_jax.methods.dlp.edit --weights=dlp_clevrer.msgpack --image=frame.png \
      --move=3:10,-5 --out=edited.png

``--weights=FILE`` instead of ``--workdir`` edits with a converted checkpoint of the
original (scripts/convert_dlp_weights.py; its own BN statistics unless
``--bn_recalibration_batches`` is given, with ``--data_dir``).

The offline counterpart of the original's interactive demo: the image is encoded
deterministically (z = mu, z_f = mu_f, eval-mode BN), the particle set is edited and
decoded again. As the evaluator, it first re-estimates the BN running statistics at the
checkpoint's weights on ``eval.bn_recalibration_batches`` training batches (the training
EMAs lag the weights), loading the training data as the training loop does:
``--data_dir`` where it has moved, ``--bn_recalibration_batches=0`` to keep the stored
statistics. ``--move=INDEX:DX,DY`` (repeatable) moves foreground particle INDEX by DX
pixels to the right and DY pixels down (the particle drawings' pixel convention:
position (mu + 1) / 2 (S - 1)); ``--swap=INDEX:OTHER`` (repeatable) gives particle INDEX
the appearance features of particle OTHER of ``--other_image``. The PNG shows, left to
right, the input with its particles, their reconstruction, and the edited reconstruction
with the edited particles; the particle table (index, row, col, obj_on) is printed.
"""

import functools
import sys

from absl import app
from absl import flags
import jax

FLAGS = {}  # defined when run as a program, so importing this module defines none


def parse_move(text: str) -> tuple[int, float, float]:
  """'INDEX:DX,DY' -> (index, dx, dy); a one-line ValueError naming the flag otherwise."""
  try:
    index, offsets = text.split(":")
    dx, dy = offsets.split(",")
    return int(index), float(dx), float(dy)
  except ValueError:
    raise ValueError(f"--move={text!r} is not INDEX:DX,DY (e.g. 3:10,-5)") from None


def parse_swap(text: str) -> tuple[int, int]:
  """'INDEX:OTHER' -> (index, other)."""
  try:
    index, other = text.split(":")
    return int(index), int(other)
  except ValueError:
    raise ValueError(f"--swap={text!r} is not INDEX:OTHER (e.g. 2:7)") from None


def move_particles(particles: dict, moves: list[tuple[int, float, float]], side: int) -> dict:
  """Particles with foreground particle i shifted by (dx, dy) pixels in the first image.

  A pixel is 2 / (side - 1) in [-1, 1] (align-corners, as drawn); z is (y, x).
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  z = np.array(particles["z"], copy=True)
  for index, dx, dy in moves:
    z[0, index] += np.array([dy, dx]) * 2.0 / (side - 1)
  return {**particles, "z": z}


def swap_features(particles: dict, other: dict, swaps: list[tuple[int, int]]) -> dict:
  """Particles whose particle i carries ``other``'s particle j appearance (first image)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  features = np.array(particles["z_features"], copy=True)
  for index, source in swaps:
    features[0, index] = np.asarray(other["z_features"])[0, source]
  return {**particles, "z_features": features}


def _check_indices(moves, swaps, count: int) -> None:
  for index, *_ in moves:
    if not 0 <= index < count:
      raise ValueError(f"--move index {index} is not a foreground particle (0..{count - 1})")
  for index, other in swaps:
    for value in (index, other):
      if not 0 <= value < count:
        raise ValueError(f"--swap index {value} is not a foreground particle "
                         f"(0..{count - 1})")


def restore_model(workdir: str, config):
  """(state, model) of the latest checkpoint of the DLP workdir whose config is ``config``."""
  from dti_jax.methods.dlp import trainer as dlp  # pylint: disable=import-outside-toplevel
  from dti_jax.run import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  template = jax.eval_shape(lambda: dlp.create_state(config, jax.random.key(0),
                                                     dlp.init_arrays(config, None)))
  state, _ = workdir_lib.restore_trained(workdir, template)
  return state, dlp.create_model(config)


def load_model(workdir: str):
  """(config, state, model) of the latest checkpoint of a DLP workdir."""
  from dti_jax.run import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  config = workdir_lib.read_config(workdir, "dlp")
  return (config, *restore_model(workdir, config))


def load_weights(path: str):
  """(config, state, model) of a converted checkpoint of the original
  (scripts/convert_dlp_weights.py): the file's own config, weights and BN statistics."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from dti_jax.methods.dlp import trainer as dlp  # pylint: disable=import-outside-toplevel
  from dti_jax.methods.dlp import weights as dlp_weights  # pylint: disable=import-outside-toplevel
  variables, config = dlp_weights.load_variables(path, flag="--weights")
  variables = jax.tree.map(jnp.asarray, variables)
  state = dlp.TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                         batch_stats=variables["batch_stats"], opt_states={},
                         key=jax.random.key(0))
  return config, state, dlp.create_model(config)


def check_model_source(workdir: str, weights: str) -> None:
  """One-line ValueError unless exactly one of ``workdir`` and ``weights`` is given."""
  if bool(workdir) == bool(weights):
    raise ValueError("pass exactly one of --workdir (a trained DLP workdir) and --weights "
                     "(a file of scripts/convert_dlp_weights.py)")


def load_any(workdir: str = "", weights: str = ""):
  """(config, state, model) of a trained workdir or of a converted file: exactly one of
  ``workdir`` and ``weights`` (one-line ValueError otherwise)."""
  check_model_source(workdir, weights)
  return load_weights(weights) if weights else load_model(workdir)


def presence(particles: dict, count: int):
  """[B, K] how present each foreground particle is, for drawing: obj_on for the object
  model; ones for the masked model, which has no presence and draws every particle."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  if "obj_on" in particles:
    return np.asarray(particles["obj_on"])
  return np.ones((len(particles["mu"]), count), np.float32)


def recalibration_source(config, count: int, data_dir: str = ""):
  """The training images the BN statistics are re-estimated on, None for 0 batches.

  Rebuilt as the loop loads its training data (`sources.load_source`), only the first
  ``count`` x batch images (image i does not depend on how many are loaded): the
  evaluator's ``count`` batches. A one-line ValueError naming the flags to pass if they
  cannot be read, before any model work.
  """
  # pylint: disable=import-outside-toplevel
  import data_pipelines
  from dti_jax.methods.dlp import trainer as dlp
  from dti_jax.run import sources
  if count < 0:
    raise ValueError(f"--bn_recalibration_batches={count} must be >= 0")
  if count == 0:
    return None
  batch_size = config.train.batch_size
  needed = count * batch_size
  limited = config.copy_and_resolve_references()
  limited.data.num_examples = min(config.data.get("num_examples") or needed, needed)
  if data_dir:
    limited.data.data_dir = data_dir
  side = dlp.input_side(config)
  try:
    source = sources.load_source(limited, config.data.split)
    if source.image_shape != (side, side, 3):
      raise ValueError(f"its images are {source.image_shape}, the model's {(side, side, 3)}")
    if data_pipelines.num_train_batches(source, batch_size) == 0:
      raise ValueError(f"{source.num_examples} images, fewer than config.train.batch_size="
                       f"{batch_size}")
  except (ValueError, OSError) as error:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise ValueError(
        f"cannot re-estimate the BN statistics on the training data "
        f"({config.data.name}, data_dir={limited.data.data_dir!r}): {reason}; pass "
        "--data_dir=<the training data>, or --bn_recalibration_batches=0 to decode with "
        "the stored training statistics") from None
  return source


def recalibrated_state(config, state, source, count: int):
  """``state`` with the BN running statistics the evaluator scores it with: re-estimated
  (`dlp.recalibrate_batch_stats`) on ``count`` batches of ``source``
  (`recalibration_source`; None: ``state`` as stored)."""
  from dti_jax.methods.dlp import trainer as dlp, evaluation as dlp_evaluation  # pylint: disable=import-outside-toplevel
  if source is None:
    return state
  batches = dlp_evaluation.recalibration_batches(source, config.train.batch_size, count)
  return dlp.recalibrate_batch_stats(state, batches, config=config)


@functools.partial(jax.jit, static_argnums=0)
def encode(model, state, images):
  """Deterministic particles of [B, S, S, 3] images (eval-mode BN)."""
  return model.apply({"params": state.params, "batch_stats": state.batch_stats}, images,
                     train=False, deterministic=True, method=model.encode)


@functools.partial(jax.jit, static_argnums=0)
def decode(model, state, particles):
  return model.apply({"params": state.params, "batch_stats": state.batch_stats}, particles,
                     train=False, method=model.decode)


def edit(workdir: str, image_path: str, out_path: str, moves, swaps,
         other_image_path: str = "", bn_recalibration_batches: int | None = None,
         data_dir: str = "", weights: str = "") -> dict:
  """Encodes, edits, decodes and writes the picture; returns the decoded outputs
  ('original' and 'edited') and the particles, as numpy. The model is the workdir's
  latest checkpoint or, with ``weights`` instead (``workdir`` ""), a converted checkpoint
  of the original. The BN statistics are re-estimated on ``bn_recalibration_batches``
  training batches (`recalibrated_state`; None: the workdir's
  eval.bn_recalibration_batches, 0 for converted weights: their own statistics, as the
  original's demo), read from ``data_dir`` if given."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from data_pipelines import files  # pylint: disable=import-outside-toplevel
  from dti_jax.methods.dlp import keypoints  # pylint: disable=import-outside-toplevel
  from dti_jax.methods.dlp import pictures as particle_viz  # pylint: disable=import-outside-toplevel
  from dti_jax.run import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  from dti_jax.viz import grids
  if bool(workdir) == bool(weights):
    load_any(workdir, weights)  # the one-line error
  if weights:
    config, state, model = load_weights(weights)
  else:
    config = workdir_lib.read_config(workdir, "dlp")
  _check_indices(moves, swaps, config.model.num_particles)
  if swaps and not other_image_path:
    raise ValueError("--swap needs --other_image")
  if bn_recalibration_batches is None:
    bn_recalibration_batches = 0 if weights else config.eval.get("bn_recalibration_batches", 0)
  source = recalibration_source(config, bn_recalibration_batches, data_dir)
  if not weights:
    config, state, model = load_model(workdir)
  state = recalibrated_state(config, state, source, bn_recalibration_batches)
  side = config.model.image_size
  shape = (side, side, 3)
  image = files.read_model_input(image_path, shape)[None]
  particles = jax.device_get(encode(model, state, image))
  edited = move_particles(particles, moves, side)
  if swaps:
    other_image = files.read_model_input(other_image_path, shape)[None]
    other = jax.device_get(encode(model, state, other_image))
    edited = swap_features(edited, other, swaps)
  original_out = jax.device_get(decode(model, state, particles))
  edited_out = jax.device_get(decode(model, state, edited))
  count = config.model.num_particles
  on = presence(particles, count)[0]
  before = keypoints.to_pixels(particles["z"][0, :count], side)
  after = keypoints.to_pixels(edited["z"][0, :count], side)
  panels = [particle_viz.draw_circles(image[0], before, strength=on),
            np.clip(original_out["reconstruction"][0], 0, 1),
            particle_viz.draw_circles(np.clip(edited_out["reconstruction"][0], 0, 1), after,
                                      strength=on)]
  grid = grids.make_grid(np.stack(panels), columns=3)
  grids.save_png(out_path, grids.upscale(grid, max(1, 256 // side)))
  return {"original": original_out, "edited": edited_out, "particles": particles,
          "edited_particles": edited, "positions": before, "presence": on}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if not FLAGS["image"].value:
    sys.exit("error: --image is required")
  try:
    check_model_source(FLAGS["workdir"].value, FLAGS["weights"].value)
    moves = [parse_move(m) for m in FLAGS["move"].value]
    swaps = [parse_swap(s) for s in FLAGS["swap"].value]
    if not moves and not swaps:
      raise ValueError("nothing to edit: pass --move=INDEX:DX,DY and/or --swap=INDEX:OTHER")
    result = edit(FLAGS["workdir"].value, FLAGS["image"].value, FLAGS["out"].value, moves,
                  swaps, FLAGS["other_image"].value,
                  bn_recalibration_batches=FLAGS["bn_recalibration_batches"].value,
                  data_dir=FLAGS["data_dir"].value, weights=FLAGS["weights"].value)
  except (ValueError, FileNotFoundError, OSError) as error:
    sys.exit(f"error: {error}")
  for k, ((row, col), on) in enumerate(zip(result["positions"], result["presence"])):
    print(f"particle {k}: row {row:.1f} col {col:.1f} obj_on {on:.2f}")
  print(f"wrote {FLAGS['out'].value}")


def _define_flags() -> None:
  """The command-line flags (absl), registered once."""
  FLAGS["workdir"] = flags.DEFINE_string("workdir", None, "A trained DLP workdir "
                                         "(config.json + checkpoints).")
  FLAGS["weights"] = flags.DEFINE_string("weights", None, "Instead of --workdir: a "
                                         "converted checkpoint of the original "
                                         "(scripts/convert_dlp_weights.py).")
  FLAGS["image"] = flags.DEFINE_string("image", None, "The image to edit.")
  FLAGS["other_image"] = flags.DEFINE_string("other_image", "", "Image whose particles' "
                                             "features --swap takes.")
  FLAGS["move"] = flags.DEFINE_multi_string("move", [], "INDEX:DX,DY: move particle INDEX "
                                            "by DX pixels right and DY pixels down.")
  FLAGS["swap"] = flags.DEFINE_multi_string("swap", [], "INDEX:OTHER: particle INDEX takes "
                                            "the features of particle OTHER of --other_image.")
  FLAGS["out"] = flags.DEFINE_string("out", "edited.png", "PNG to write.")
  FLAGS["bn_recalibration_batches"] = flags.DEFINE_integer(
      "bn_recalibration_batches", None, "Training batches the BN running statistics are "
      "re-estimated on before encoding (default: the workdir's "
      "eval.bn_recalibration_batches, 0 with --weights; 0: the stored statistics).")
  FLAGS["data_dir"] = flags.DEFINE_string("data_dir", "", "The training data, where the "
                                          "workdir's config.data.data_dir no longer points "
                                          "to it.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
