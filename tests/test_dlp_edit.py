"""The particle editing tool: a moved particle's decoded object moves by exactly that many
pixels and nothing else changes; a swapped particle decodes the other image's glimpse."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import dlp_shapes
import data_pipelines
from data_pipelines import files
from dti_jax.methods.dlp import edit as dlp_edit
from dti_jax.methods.dlp import trainer as dlp
from dti_jax.run import checkpointing, workdir as workdir_lib
from dti_jax.viz import grids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A DLP workdir holding a freshly initialised tiny object model, a scene and noise."""
  config = dlp_shapes.get_config("cpu")
  config.model.enc_channels = (8, 16, 32)
  config.model.prior_channels = (4, 8, 16)
  config.model.num_particles = 4
  config.model.num_prior = 6
  config.train.batch_size = 4           # batches of the BN re-estimation (its own tests)
  config.eval.bn_recalibration_batches = 0   # the stored statistics, calibrated below
  path = str(tmp_path_factory.mktemp("dlp_edit"))
  scene = data_pipelines.load_source("dlp_shapes_procedural", num_examples=1, seed=3).images[0]
  scene = scene.astype(np.float32) / 255.0
  # Noise: glimpses unlike the scene's.
  noise = np.random.default_rng(0).uniform(size=(64, 64, 3)).astype(np.float32)
  # The convolutions start at N(0, 0.01^2): with the initial BN statistics an eval-mode
  # forward is input-independent. Running statistics of these two images fix that.
  model, images = dlp.create_model(config), np.stack([scene, noise])

  def update_statistics(state):
    _, updates = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                             images, images, train=True, phase="normal",
                             rngs={"sample": jax.random.key(0)}, mutable=["batch_stats"])
    return state.replace(batch_stats=updates["batch_stats"])

  @jax.jit
  def calibrated_state(key):
    state = dlp.create_state(config, key, dlp.init_arrays(config, None))
    return jax.lax.fori_loop(0, 60, lambda _, s: update_statistics(s), state)

  jax.config.update("jax_disable_most_optimizations", True)   # a shorter compile
  try:
    state = calibrated_state(jax.random.key(0))
  finally:
    jax.config.update("jax_disable_most_optimizations", False)
  workdir_lib.write_config(path, config, 0)
  manager = checkpointing.create_manager(path)
  checkpointing.save(manager, 0, state, {"step": 0, "image_shape": [64, 64, 3],
                                         "phase": "normal"})
  manager.wait_until_finished()
  manager.close()
  grids.save_png(os.path.join(path, "scene0.png"), scene)
  grids.save_png(os.path.join(path, "scene1.png"), noise)
  return path


def _alpha_centroid(alpha):
  rows, cols = np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]]
  return np.array([np.sum(rows * alpha), np.sum(cols * alpha)]) / np.sum(alpha)


def test_moved_particle_moves_its_object(workdir, tmp_path):
  out = dlp_edit.edit(workdir, os.path.join(workdir, "scene0.png"), str(tmp_path / "a.png"),
                      moves=[], swaps=[])
  side, glimpse = 64, 16
  # A particle whose glimpse stays inside the canvas after the move.
  positions = out["positions"]
  inside = np.all((positions > glimpse / 2 + 7) & (positions < side - glimpse / 2 - 7), axis=1)
  index = int(np.argmax(inside))
  assert inside[index]
  out = dlp_edit.edit(workdir, os.path.join(workdir, "scene0.png"), str(tmp_path / "b.png"),
                      moves=[(index, 5.0, -3.0)], swaps=[])
  before = out["original"]["alphas"][0, :, :, :, 0]
  after = out["edited"]["alphas"][0, :, :, :, 0]
  # The glimpse is pasted in the align_corners=False convention: a drawn pixel is
  # side / (side - 1) pasted pixels.
  shift = _alpha_centroid(after[index]) - _alpha_centroid(before[index])
  np.testing.assert_allclose(shift, np.array([-3.0, 5.0]) * side / (side - 1), atol=0.02)
  others = [k for k in range(4) if k != index]
  np.testing.assert_array_equal(after[others], before[others])
  assert (tmp_path / "b.png").exists()


def test_swapped_features_decode_the_other_glimpse(workdir, tmp_path):
  other = dlp_edit.edit(workdir, os.path.join(workdir, "scene1.png"), str(tmp_path / "o.png"),
                        moves=[], swaps=[])
  out = dlp_edit.edit(workdir, os.path.join(workdir, "scene0.png"), str(tmp_path / "s.png"),
                      moves=[], swaps=[(0, 0)], other_image_path=os.path.join(
                          workdir, "scene1.png"))
  np.testing.assert_array_equal(out["edited_particles"]["z_features"][0, 0],
                                other["particles"]["z_features"][0, 0])
  assert not np.allclose(other["particles"]["z_features"][0, 0],
                         out["particles"]["z_features"][0, 0], atol=1e-3)
  np.testing.assert_allclose(out["edited"]["decoded_glimpses"][0, 0],
                             other["original"]["decoded_glimpses"][0, 0], rtol=1e-6, atol=0)
  np.testing.assert_array_equal(out["edited"]["decoded_glimpses"][0, 1:],
                                out["original"]["decoded_glimpses"][0, 1:])


def test_command_line(workdir, tmp_path):
  image = os.path.join(workdir, "scene0.png")
  run = subprocess.run(
      [sys.executable, "-m", "dti_jax.methods.dlp.edit", f"--workdir={workdir}", f"--image={image}",
       "--move=0:2,2", f"--out={tmp_path / 'e.png'}"],
      cwd=ROOT, capture_output=True, text=True, check=False)
  assert run.returncode == 0, run.stderr[-2000:]
  assert "particle 3:" in run.stdout and (tmp_path / "e.png").exists()


def test_bad_index_fails_before_any_work(workdir, tmp_path):
  with pytest.raises(ValueError, match=r"^--move index 9 is not a foreground particle \(0..3\)$"):
    dlp_edit.edit(workdir, os.path.join(workdir, "scene0.png"), str(tmp_path / "f.png"),
                  moves=[(9, 2.0, 2.0)], swaps=[])
  with pytest.raises(ValueError, match="^--swap needs --other_image$"):
    dlp_edit.edit(workdir, os.path.join(workdir, "scene0.png"), str(tmp_path / "f.png"),
                  moves=[], swaps=[(0, 1)])
  assert not (tmp_path / "f.png").exists()


def test_bad_flags_are_one_line():
  with pytest.raises(ValueError, match=r"--move='3:10' is not INDEX:DX,DY"):
    dlp_edit.parse_move("3:10")
  with pytest.raises(ValueError, match=r"--swap='a:1' is not INDEX:OTHER"):
    dlp_edit.parse_swap("a:1")
  assert dlp_edit.parse_move("3:10,-5") == (3, 10.0, -5.0)


def test_not_a_dlp_workdir(tmp_path):
  with open(tmp_path / "config.json", "w") as f:
    json.dump({"method": "dti_clustering"}, f)
  with pytest.raises(ValueError, match="holds a 'dti_clustering' model, not a 'dlp' one"):
    dlp_edit.load_model(str(tmp_path))


@pytest.mark.usefixtures("fast_compile")
def test_edit_decodes_with_re_estimated_statistics(workdir, tmp_path):
  """The tool decodes with the statistics `dlp.recalibrate_batch_stats` re-estimates on the
  first training batches in order, not with the stored ones."""
  image, count = os.path.join(workdir, "scene0.png"), 2
  out = dlp_edit.edit(workdir, image, str(tmp_path / "r.png"), moves=[], swaps=[],
                      bn_recalibration_batches=count)
  config, stored, model = dlp_edit.load_model(workdir)
  size = config.train.batch_size
  train = data_pipelines.load_source(config.data.name, num_examples=count * size).images
  batches = train.reshape((count, size) + train.shape[1:]).astype(np.float32) / 255.0
  scene = files.read_model_input(image, (64, 64, 3))[None]

  def reconstruction(state):
    particles = dlp_edit.encode(model, state, scene)
    return jax.device_get(dlp_edit.decode(model, state, particles))["reconstruction"]

  recalibrated = out["original"]["reconstruction"]
  expected = reconstruction(dlp.recalibrate_batch_stats(stored, batches, config=config))
  np.testing.assert_allclose(recalibrated, expected, rtol=1e-5, atol=1e-6)
  assert np.abs(recalibrated - reconstruction(stored)).max() > 1e-3


def test_unreadable_training_data_is_a_one_line_error(workdir, tmp_path):
  """No silent fall-back to the stored statistics: the error names the flags to pass."""
  moved = str(tmp_path / "moved")
  shutil.copytree(workdir, moved)
  with open(os.path.join(moved, "config.json")) as f:
    config = json.load(f)
  config["data"].update(name="array_file", data_dir=str(tmp_path / "gone.npy"))
  config["eval"]["bn_recalibration_batches"] = 2
  with open(os.path.join(moved, "config.json"), "w") as f:
    json.dump(config, f)
  image = os.path.join(moved, "scene0.png")
  with pytest.raises(ValueError, match=r"^cannot re-estimate the BN statistics on the "
                     r"training data \(array_file, .*--data_dir=<the training data>, or "
                     r"--bn_recalibration_batches=0") as error:
    dlp_edit.edit(moved, image, str(tmp_path / "f.png"), moves=[], swaps=[])
  assert "\n" not in str(error.value) and not (tmp_path / "f.png").exists()
  dlp_edit.edit(moved, image, str(tmp_path / "s.png"), moves=[], swaps=[],
                bn_recalibration_batches=0)
  assert (tmp_path / "s.png").exists()
  # --data_dir: the same first training images from another place.
  train = data_pipelines.load_source("dlp_shapes_procedural", num_examples=8).images
  np.save(tmp_path / "elsewhere.npy", train)
  source = dlp_edit.recalibration_source(workdir_lib.read_config(moved), 2,
                                         data_dir=str(tmp_path / "elsewhere.npy"))
  np.testing.assert_array_equal(source.images, train)
