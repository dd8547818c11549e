"""The visualisation script on scikit-learn's digits: both grids, TensorBoard, one-line errors."""

import glob
import os
import subprocess
import sys

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from sklearn import datasets

from dti_jax.nets import alexnet
from dti_jax.methods.deepcluster import filters

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCALE = 8  # 8 x 8 digits are enlarged to 64 pixels


def _random_variables():
  """MiniAlexNet variables for 8 x 8 inputs with init's distributions, drawn by numpy
  (cheaper than running init eagerly)."""
  shapes = jax.eval_shape(lambda: alexnet.MiniAlexNet().init(
      jax.random.key(0), jnp.zeros((1, 8, 8, 1)), False))
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel" and len(leaf.shape) == 4:  # conv: N(0, 2 / (kh kw C_out))
      std = np.sqrt(2.0 / (leaf.shape[0] * leaf.shape[1] * leaf.shape[3]))
      return (std * rng.normal(size=leaf.shape)).astype(np.float32)
    if name == "kernel":
      return (0.01 * rng.normal(size=leaf.shape)).astype(np.float32)
    return np.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, np.float32)

  return jax.tree_util.tree_map_with_path(
      draw, {"params": shapes["params"], "batch_stats": shapes["batch_stats"]})


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  variables = _random_variables()
  path = tmp_path_factory.mktemp("weights") / "random.msgpack"
  path.write_bytes(flax.serialization.msgpack_serialize(variables))
  return str(path), variables


def _run(*args):
  return subprocess.run(
      [sys.executable, "scripts/deepcluster_visualize.py",
       "--config=configs/deepcluster_mnist.py:smoke", *args],
      cwd=REPO, capture_output=True, text=True, timeout=300)


def _tile(grid, row, column):
  """The 8 x 8 image at (row, column) of an upscaled grid with 1-pixel padding."""
  top, left = SCALE * (1 + 9 * row), SCALE * (1 + 9 * column)
  return grid[top:top + 8 * SCALE:SCALE, left:left + 8 * SCALE:SCALE]


def test_writes_filter_and_top9_grids_and_tensorboard_events(weights, tmp_path):
  path, variables = weights
  output = tmp_path / "out"
  result = _run(f"--weights={path}", "--layer=2", "--channels=3:8", "--iterations=5",
                f"--output={output}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"wrote {output}/conv2_filters.png" in result.stdout

  # 5 channels on a 2 x 3 grid of 8 x 8 tiles, 1-pixel padding, enlarged 8 times.
  synthesized = np.asarray(Image.open(output / "conv2_filters.png"))
  assert synthesized.shape == (SCALE * (2 * 9 + 1), SCALE * (3 * 9 + 1))
  for index in range(5):
    tile = _tile(synthesized, *divmod(index, 3)).astype(np.float64)
    assert abs(tile.mean() - 127.5) < 3 and abs(tile.std() - 25.5) < 3  # mean 0.5, std 0.1
  assert np.all(_tile(synthesized, 1, 2) == 255)  # the sixth slot stays padding

  # One row of 9 per channel, each the digit the network scores highest for it.
  top9 = np.asarray(Image.open(output / "conv2_top9.png"))
  assert top9.shape == (SCALE * (5 * 9 + 1), SCALE * (9 * 9 + 1))
  digits = np.rint(datasets.load_digits().images * (255.0 / 16.0)).astype(np.uint8)
  normalized = (digits[..., None] / 255.0 - 0.27) / 0.38       # the smoke config's mean, std
  padded = np.zeros((2000, 8, 8, 1), np.float32)
  padded[:len(digits)] = normalized
  scores = np.concatenate([np.asarray(filters.channel_scores(
      alexnet.MiniAlexNet(), variables, 2, padded[start:start + 500]))
      for start in range(0, 2000, 500)])[:len(digits)]
  best = np.argsort(-scores, axis=0, kind="stable")[:9].T                   # [64, 9]
  for row, channel in enumerate(range(3, 8)):
    for column in range(9):
      np.testing.assert_array_equal(_tile(top9, row, column), digits[best[channel, column]])

  events = glob.glob(str(output / "events.out.tfevents.*"))
  assert len(events) == 1
  with open(events[0], "rb") as f:
    content = f.read()
  assert b"conv2_filters" in content and b"conv2_top9" in content


@pytest.mark.parametrize("args, message", [
    (["--weights=/nonexistent/run", "--layer=1"], "--weights=/nonexistent/run does not exist"),
    (["--layer=1", "--channels=5:2"], "--channels='5:2' is not start:stop"),
    (["--layer=1", "--config.data.nme=digits"], 'unknown config key nme. Did you mean "name"'),
])
def test_errors_are_one_line_with_exit_status_2(weights, args, message):
  if not any(arg.startswith("--weights") for arg in args):
    args = [f"--weights={weights[0]}", *args]
  result = _run(*args)
  assert result.returncode == 2
  lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and message in lines[0]
