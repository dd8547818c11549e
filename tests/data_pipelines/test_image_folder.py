"""Image folders: grey or RGB as the files are, class subfolders as labels, one-line errors."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn import datasets as sk_datasets

from data_pipelines import files
from data_pipelines import sources

REPO = pathlib.Path(__file__).resolve().parents[2]


def _digits(count_per_class):
  """[10 * count, 28, 28] uint8 sklearn digits upscaled (bilinear), labels [10 * count]."""
  digits = sk_datasets.load_digits()
  images, labels = [], []
  for digit in range(10):
    for index in np.flatnonzero(digits.target == digit)[:count_per_class]:
      small = Image.fromarray(np.rint(digits.images[index] * 255 / 16).astype(np.uint8))
      images.append(np.asarray(small.resize((28, 28), Image.Resampling.BILINEAR)))
      labels.append(digit)
  return np.stack(images), np.asarray(labels)


def _grey_class_folder(root, count_per_class):
  """root/<digit>/<i>.png, grey 28x28; returns the images and labels in reading order."""
  images, labels = _digits(count_per_class)
  for i, (image, label) in enumerate(zip(images, labels)):
    os.makedirs(root / str(label), exist_ok=True)
    Image.fromarray(image).save(root / str(label) / f"{i:04d}.png")
  return images, labels


def _rgb_folder(root, count=4, size=(20, 30)):
  root.mkdir()
  rng = np.random.default_rng(0)
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / f"{i}.png")
  return sorted(root.iterdir())


def _load(folder, image_size=28, channels=0):
  return sources.load_source("image_folder", data_dir=str(folder), image_size=image_size,
                             channels=channels)


def test_grey_folder_keeps_one_channel_and_converts_on_request(tmp_path, capsys):
  images, _ = _digits(3)
  tmp_path.joinpath("flat").mkdir()
  for i, image in enumerate(images):
    Image.fromarray(image).save(tmp_path / "flat" / f"{i:02d}.png")
  grey = _load(tmp_path / "flat")
  assert grey.images.shape == (30, 28, 28, 1) and grey.num_classes is None
  np.testing.assert_array_equal(grey.images[..., 0], images)
  np.testing.assert_array_equal(grey.labels, [-1] * 30)
  assert capsys.readouterr().out == (
      f"image_folder: 30 images (28x28, 1 channel), unlabelled, from {tmp_path / 'flat'}\n")
  rgb = _load(tmp_path / "flat", channels=3)
  assert rgb.images.shape == (30, 28, 28, 3)
  np.testing.assert_array_equal(rgb.images, np.repeat(grey.images, 3, axis=-1))
  np.testing.assert_array_equal(_load(tmp_path / "flat", channels=1).images, grey.images)


def test_rgb_folder_reads_as_before(tmp_path):
  paths = _rgb_folder(tmp_path / "rgb")
  source = _load(tmp_path / "rgb", image_size=10)
  before = [files.resize_and_center_crop(Image.open(path).convert("RGB"), 10) for path in paths]
  assert source.images.shape == (4, 10, 10, 3)
  np.testing.assert_array_equal(source.images, np.stack(before))
  np.testing.assert_array_equal(_load(tmp_path / "rgb", image_size=10, channels=3).images,
                                source.images)
  grey = _load(tmp_path / "rgb", image_size=10, channels=1)
  after = [files.resize_and_center_crop(Image.open(path).convert("L"), 10) for path in paths]
  np.testing.assert_array_equal(grey.images[..., 0], np.stack(after))


def test_one_colour_file_makes_the_folder_rgb(tmp_path):
  _rgb_folder(tmp_path / "mixed", count=1)
  Image.fromarray(np.full((28, 28), 9, np.uint8)).save(tmp_path / "mixed" / "grey.png")
  source = _load(tmp_path / "mixed")
  assert source.images.shape == (2, 28, 28, 3)
  np.testing.assert_array_equal(source.images[1], np.full((28, 28, 3), 9))


def test_grey_modes(tmp_path):
  """Bilevel, grey with alpha, 16-bit (scaled, not clipped) and grey palettes are grey."""
  folder = tmp_path / "modes"
  folder.mkdir()
  ramp = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))  # 16 x 16
  Image.fromarray(ramp).convert("1", dither=Image.Dither.NONE).save(folder / "a_bilevel.png")
  Image.fromarray(np.stack([ramp, 255 - ramp], -1), "LA").save(folder / "b_alpha.png")
  Image.fromarray(ramp.astype(np.uint16) * 257).save(folder / "c_16bit.png")
  Image.fromarray(ramp).convert("P").save(folder / "d_palette.gif")
  assert Image.open(folder / "c_16bit.png").mode == "I;16"
  assert Image.open(folder / "d_palette.gif").mode == "P"
  source = _load(folder, image_size=16)
  assert source.images.shape == (4, 16, 16, 1)
  np.testing.assert_array_equal(source.images[0, ..., 0], np.where(ramp >= 128, 255, 0))
  for i in (1, 2, 3):
    np.testing.assert_array_equal(source.images[i, ..., 0], ramp)
  # A palette with one colour entry is colour: the folder becomes RGB.
  coloured = Image.fromarray(ramp, "P")
  coloured.putpalette([255, 0, 0] + [v for v in range(1, 256) for _ in range(3)])
  coloured.save(folder / "e_colour_palette.png")
  assert _load(folder, image_size=16).images.shape == (5, 16, 16, 3)


def test_class_subfolders_give_labels(tmp_path, capsys):
  images, labels = _grey_class_folder(tmp_path / "digits", count_per_class=2)
  # Deeper folders belong to their first-level class; folders without images are no class.
  nested = tmp_path / "digits" / "7" / "more" / "deeper"
  nested.mkdir(parents=True)
  Image.fromarray(images[0]).save(nested / "extra.png")
  (tmp_path / "digits" / "notes").mkdir()
  (tmp_path / "digits" / "notes" / "readme.txt").write_text("no images here")
  (tmp_path / "digits" / "labels.csv").write_text("not an image")
  source = _load(tmp_path / "digits")
  assert source.num_classes == 10 and source.images.shape == (21, 28, 28, 1)
  want = list(labels[:16]) + [7] + list(labels[16:])  # class 7: its own files, then more/
  np.testing.assert_array_equal(source.labels, want)
  np.testing.assert_array_equal(source.images[:16, ..., 0], images[:16])
  np.testing.assert_array_equal(source.images[16, ..., 0], images[0])
  assert capsys.readouterr().out == (
      f"image_folder: 21 images (28x28, 1 channel) in 10 classes from {tmp_path / 'digits'}\n")


def test_class_names_are_sorted_and_numbered(tmp_path):
  for name, value in (("zebra", 30), ("apple", 10), ("mango", 20)):
    (tmp_path / "fruit" / name).mkdir(parents=True)
    for i in range(2):
      Image.fromarray(np.full((8, 8, 3), value + i, np.uint8)).save(
          tmp_path / "fruit" / name / f"{i}.jpg", quality=100)
  source = _load(tmp_path / "fruit", image_size=8)
  assert source.num_classes == 3 and source.image_shape == (8, 8, 3)
  np.testing.assert_array_equal(source.labels, [0, 0, 1, 1, 2, 2])
  np.testing.assert_allclose(source.images.mean(axis=(1, 2, 3)), [10, 11, 20, 21, 30, 31],
                             atol=1)


def _one_line_error(folder, *expected, **kwargs):
  with pytest.raises(ValueError) as info:
    _load(folder, **kwargs)
  message = str(info.value)
  assert "\n" not in message and all(text in message for text in expected), message


def test_errors_are_one_line(tmp_path):
  _grey_class_folder(tmp_path / "digits", count_per_class=1)
  for channels in (2, 4, -1):
    _one_line_error(tmp_path / "digits", f"config.data.channels={channels}", channels=channels)
  Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "digits" / "loose.png")
  _one_line_error(tmp_path / "digits", str(tmp_path / "digits"), "loose.png", "10 class")
  os.remove(tmp_path / "digits" / "loose.png")
  (tmp_path / "digits" / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  _one_line_error(tmp_path / "digits", f"cannot read image {tmp_path / 'digits' / '3'}")
  (tmp_path / "empty" / "class").mkdir(parents=True)
  _one_line_error(tmp_path / "empty", "no ", str(tmp_path / "empty"))


def test_grey_digit_classes_train_and_score_end_to_end(tmp_path):
  """The MNIST config (morphology: one channel) on a labelled folder of grey PNGs."""
  _grey_class_folder(tmp_path / "digits", count_per_class=20)
  workdir = tmp_path / "run"
  env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")  # compiling dominates
  result = subprocess.run(
      [sys.executable, "-m", "dti_jax.main", "--config=configs/mnist.py:embedded",
       f"--workdir={workdir}", "--num_devices=1", "--config.data.name=image_folder",
       f"--config.data.data_dir={tmp_path / 'digits'}", "--config.data.image_size=28",
       "--config.train.num_epochs=1", "--config.log.num_probe_images=2",
       "--config.eval.every_steps=2"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  output = result.stdout + result.stderr
  assert result.returncode == 0, output[-3000:]
  assert "defines for 1 channel only" not in output  # the morphology refusal
  assert (f"image_folder: 200 images (28x28, 1 channel) in 10 classes from "
          f"{tmp_path / 'digits'}") in result.stdout
  with open(workdir / "final_scores.json") as f:
    scores = json.load(f)
  assert {"acc", "nmi"} <= set(scores) and 0 <= scores["acc"] <= 1, scores
  # The periodic evaluation scores the classes in TensorBoard.
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=import-outside-toplevel
  tags = set()
  for path in workdir.glob("events.out.tfevents.*"):
    accumulator = event_accumulator.EventAccumulator(str(path))
    accumulator.Reload()
    tags |= set(accumulator.Tags()["tensors"])
  assert {"eval/acc", "eval/nmi", "final/acc", "final/nmi"} <= tags, sorted(tags)


@pytest.mark.parametrize("variant", ["small", "sprites_small"])
def test_image_folder_config_trains_and_scores_a_small_labelled_folder(variant, tmp_path,
                                                                       fast_compile):
  """configs/image_folder.py's small-image recipes run on a folder as it is (grey scans
  keep their one channel) and score its class subfolders."""
  del fast_compile
  from configs import image_folder as image_folder_config  # pylint: disable=import-outside-toplevel
  from dti_jax import methods  # pylint: disable=import-outside-toplevel
  _grey_class_folder(tmp_path / "digits", count_per_class=13)
  config = image_folder_config.get_config(variant)
  config.data.data_dir = str(tmp_path / "digits")
  config.train.num_epochs = 1
  config.log.num_probe_images = 2
  final = methods.train_and_evaluate(config, str(tmp_path / "run"), num_devices=1)
  with open(tmp_path / "run" / "final_scores.json") as f:
    scores = json.load(f)
  assert {"acc", "nmi"} <= set(scores) and scores["acc"] == final["acc"], scores


@pytest.mark.parametrize("variant", ["photos", "sprites_photos"])
def test_image_folder_photo_recipes_validate_at_128_pixels(variant):
  from configs import image_folder as image_folder_config  # pylint: disable=import-outside-toplevel
  from dti_jax import methods  # pylint: disable=import-outside-toplevel
  config = image_folder_config.get_config(variant)
  assert (config.data.name, config.data.image_size, config.data.channels) == (
      "image_folder", 128, 0)
  methods.get(config.method).validate(config, (128, 128, 3))
