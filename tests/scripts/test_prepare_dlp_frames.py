"""prepare_dlp_frames.py on synthetic frame folders: the original's selection, crop and
split, streamed .npy files the `array_file` source reads, one-line errors."""

import os

import numpy as np
import pytest
from PIL import Image

from data_pipelines import sources
from scripts import prepare_dlp_frames as prepare


def _save(path, pixels):
  Image.fromarray(np.asarray(pixels, np.uint8)).save(path, compress_level=0)


def _clevrer_folder(root, layout):
  """Frames of 2 videos, 40 frames each, 6x4 px filled with (video, frame, 7).

  layout "videos": video_0000v/00ff.png numbered from 1 as ffmpeg does; "flat": the
  original's single folder, f_<v * 1000 + f>.png numbered from 0.
  """
  for video in (0, 1):
    for frame in range(1, 41) if layout == "videos" else range(40):
      if layout == "videos":
        folder = root / f"video_{video:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{frame:04d}.png"
      else:
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"f_{(video + 1) * 1000 + frame}.png"
      _save(path, np.broadcast_to([video, frame, 7], (4, 6, 3)))
  (root / "notes.txt").write_text("not a frame")


@pytest.mark.parametrize("layout", ["videos", "flat"])
def test_clevrer_keeps_frames_above_26_then_every_third(tmp_path, layout):
  _clevrer_folder(tmp_path / "frames", layout)
  first = 1 if layout == "videos" else 0
  kept = [(video, frame) for video in (0, 1) for frame in range(first, first + 40)
          if frame > 26][::3]
  lines = prepare.prepare("clevrer", str(tmp_path / "frames"), str(tmp_path / "out"),
                          split="validation", image_size=16)
  assert lines == [f"{tmp_path / 'out' / 'validation.npy'}: uint8 [{len(kept)}, 16, 16, 3]"]
  assert sorted(os.listdir(tmp_path / "out")) == ["validation.npy"]
  frames = np.load(tmp_path / "out" / "validation.npy")
  assert frames.dtype == np.uint8 and frames.shape == (len(kept), 16, 16, 3)
  # A constant frame stays constant under the bicubic resize: its colour is its id.
  np.testing.assert_array_equal(frames, np.broadcast_to(
      np.array([[v, f, 7] for v, f in kept], np.uint8)[:, None, None], frames.shape))
  source = sources.load_source("array_file", data_dir=str(tmp_path / "out"), split="eval")
  np.testing.assert_array_equal(source.images, frames)


def test_traffic_crops_resizes_and_splits_90_10(tmp_path):
  rng = np.random.default_rng(0)
  pictures = {}
  (tmp_path / "frames").mkdir()
  for number in range(31):  # unpadded names: numeric order, not 0, 1, 10, 11, ...
    pictures[number] = rng.integers(0, 256, (440, 500, 3), dtype=np.uint8)
    _save(tmp_path / "frames" / f"{number}.png", pictures[number])
  prepare.main(["--dataset=traffic", f"--frames={tmp_path / 'frames'}",
                f"--out={tmp_path / 'out'}", "--image_size=32"])
  kept = list(range(0, 31, 3))                      # 11 frames: 9 train, 2 validation
  expected = np.stack([np.asarray(Image.fromarray(pictures[n][0:420, 60:480]).resize(
      (32, 32), Image.Resampling.BICUBIC)) for n in kept])
  train = np.load(tmp_path / "out" / "train.npy")
  validation = np.load(tmp_path / "out" / "validation.npy")
  np.testing.assert_array_equal(train, expected[:9])
  np.testing.assert_array_equal(validation, expected[9:])
  assert prepare.TRAFFIC_CROP == (60, 0, 480, 420)


def _main_error(capsys, *args):
  with pytest.raises(SystemExit) as info:
    prepare.main(list(args))
  assert info.value.code == 2
  message = capsys.readouterr().err
  assert message.startswith("error: ") and message.count("\n") == 1
  return message


def test_bad_folders_are_one_line_errors(tmp_path, capsys):
  out = f"--out={tmp_path / 'out'}"
  assert "is not a folder" in _main_error(
      capsys, "--dataset=clevrer", f"--frames={tmp_path / 'missing'}", out)
  (tmp_path / "empty" / "video_0").mkdir(parents=True)
  assert "holds no .png/.jpg/.jpeg/.gif frames" in _main_error(
      capsys, "--dataset=clevrer", f"--frames={tmp_path / 'empty'}", out)
  assert "holds no" in _main_error(
      capsys, "--dataset=traffic", f"--frames={tmp_path / 'empty'}", out)
  (tmp_path / "early").mkdir()
  _save(tmp_path / "early" / "0026.png", np.zeros((2, 2, 3)))
  assert "none is kept" in _main_error(
      capsys, "--dataset=clevrer", f"--frames={tmp_path / 'early'}", out)
  (tmp_path / "named").mkdir()
  _save(tmp_path / "named" / "frame.png", np.zeros((2, 2, 3)))
  assert "does not end with a frame number" in _main_error(
      capsys, "--dataset=traffic", f"--frames={tmp_path / 'named'}", out)
  assert "too few" in _main_error(
      capsys, "--dataset=traffic", f"--frames={tmp_path / 'early'}", out)
  (tmp_path / "broken").mkdir()
  for number in range(1, 7):                       # keeps 0001 (train) and 0004
    (tmp_path / "broken" / f"{number:04d}.png").write_bytes(b"not a png")
  message = _main_error(capsys, "--dataset=traffic", f"--frames={tmp_path / 'broken'}", out)
  assert "cannot read frame" in message and "0001.png" in message
  assert os.listdir(tmp_path / "out") == []      # no partial file is left behind
