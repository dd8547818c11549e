"""The interactive particle demo, headless (Agg): synthetic mouse and key events."""

import matplotlib

matplotlib.use("Agg")

import jax  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
from matplotlib.backend_bases import KeyEvent, MouseEvent  # pylint: disable=wrong-import-position

from configs import dlp_shapes  # pylint: disable=wrong-import-position
import data_pipelines  # pylint: disable=wrong-import-position
from dti_jax.methods.dlp import demo as demo_lib  # pylint: disable=wrong-import-position
from dti_jax.methods.dlp import trainer as dlp  # pylint: disable=wrong-import-position

GLIMPSE = 16   # round(anchor_s 0.25 x 63): each particle decodes into a 16-px window


@pytest.fixture(scope="module")
def demo(fast_compile_module):
  del fast_compile_module
  config = dlp_shapes.get_config("cpu")
  config.model.enc_channels = (8, 16, 32)
  config.model.prior_channels = (4, 8, 16)
  config.model.num_particles = 4
  config.model.num_prior = 6
  state = dlp.create_state(config, jax.random.key(3), dlp.init_arrays(config, None))
  image = data_pipelines.load_source("dlp_shapes_procedural", num_examples=1,
                                     seed=2).images[0].astype(np.float32) / 255.0
  particle_demo = demo_lib.ParticleDemo(dlp.create_model(config), state, config, image)
  particle_demo.figure.canvas.draw()
  return particle_demo


def _mouse(demo, name, row, col):
  x, y = demo.left.transData.transform((col, row))
  demo.figure.canvas.callbacks.process(name, MouseEvent(name, demo.figure.canvas, x, y,
                                                        button=1))


def _key(demo, key):
  x, y = demo.left.transData.transform((10, 10))
  demo.figure.canvas.callbacks.process("key_press_event", KeyEvent(
      "key_press_event", demo.figure.canvas, key, x, y))


def _far_from(points, side, radius):
  rows, cols = np.mgrid[:side, :side]
  far = np.ones((side, side), bool)
  for row, col in points:
    far &= np.maximum(abs(rows - row), abs(cols - col)) > radius
  return far


def test_dragging_a_particle_changes_the_decoding_near_its_new_place_only(demo):
  side = demo.side
  before = demo.decode()
  start = demo.positions()[0]
  target = np.array([side - 1 - start[0], side - 1 - start[1]]).clip(8, side - 9)
  _mouse(demo, "button_press_event", *start)
  _mouse(demo, "motion_notify_event", *(start + target) / 2)
  _mouse(demo, "motion_notify_event", *target)
  _mouse(demo, "button_release_event", *target)
  np.testing.assert_allclose(demo.positions()[0], target, atol=1e-3)
  np.testing.assert_allclose(demo.positions()[1:], demo_lib_positions(demo)[1:])
  after = np.asarray(demo.decoded.get_array())
  change = np.abs(after - before).sum(-1)
  near_new = _far_from([target], side, GLIMPSE // 2) == 0
  assert change[near_new].max() > 1e-3
  far = _far_from([start, target], side, GLIMPSE // 2 + 1)
  assert far.any() and change[far].max() < 1e-5
  # Moving the mouse without a button pressed on a particle moves nothing.
  _mouse(demo, "motion_notify_event", 5, 5)
  np.testing.assert_allclose(demo.positions()[0], target, atol=1e-3)


def demo_lib_positions(demo):
  """The encoding's own positions (the untouched particles keep them)."""
  return (np.asarray(demo.encoded["z"][0, :demo.count]) + 1) / 2 * (demo.side - 1)


def test_keys_toggle_jitter_swap_and_reset(demo):
  original = np.asarray(demo.decode())
  _key(demo, "r")
  reset = np.asarray(demo.decoded.get_array())
  np.testing.assert_array_equal(demo.particles["z"], demo.encoded["z"])
  demo.selected = 1
  _key(demo, "t")
  assert demo.particles["obj_on"][0, 1] == 0
  toggled = np.asarray(demo.decoded.get_array())
  assert np.abs(toggled - reset).max() > 1e-4
  _key(demo, "t")
  assert demo.particles["obj_on"][0, 1] == demo.encoded["obj_on"][0, 1]
  _key(demo, "j")
  assert np.any(demo.particles["z_features"][0, 1] != demo.encoded["z_features"][0, 1])
  _key(demo, "r")
  _key(demo, "s")
  features, encoded = demo.particles["z_features"][0], demo.encoded["z_features"][0]
  swapped = [i for i in range(demo.count) if np.any(features[i] != encoded[i])]
  assert len(swapped) == 2 and 1 in swapped
  other = swapped[0] if swapped[1] == 1 else swapped[1]
  np.testing.assert_array_equal(features[1], encoded[other])
  _key(demo, "r")
  np.testing.assert_array_equal(np.asarray(demo.decoded.get_array()), reset)
  assert original.shape == reset.shape
