"""GTSRB-8 and Weizmann Horse file sources on tiny fake datasets written per test."""

import importlib.util
import os
import pathlib
import zipfile

import numpy as np
import pytest
from PIL import Image

from data_pipelines import files
from data_pipelines import sources

REPO = pathlib.Path(__file__).resolve().parents[2]


def _save(array, path):
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _uniform(height, width, colour):
  return np.broadcast_to(np.asarray(colour, np.uint8), (height, width, 3))


def _gradient(height, width):
  rows = np.arange(height)[:, None, None] * 7
  columns = np.arange(width)[None, :, None] * 5
  return ((rows + columns + np.arange(3) * 40) % 256).astype(np.uint8)


def _class_colour(class_id, index):
  return (class_id * 6, 100 + index * 50, 255 - class_id * 5)


@pytest.fixture
def gtsrb_root(tmp_path):
  """The official layout under tmp_path/GTSRB/Final_Training/Images.

  Every kept class has one uniform image; class 3 has a second one, class 7 two
  (one a gradient) of other sizes; excluded classes 0 and 4 have images too.
  """
  images_dir = tmp_path / "GTSRB" / "Final_Training" / "Images"
  for class_id in files.GTSRB8_CLASSES + (0, 4):
    folder = images_dir / f"{class_id:05d}"
    os.makedirs(folder)
    (folder / f"GT-{class_id:05d}.csv").write_text("Filename;ClassId\n")
    _save(_uniform(30, 40, _class_colour(class_id, 0)), folder / "00000_00001.ppm")
  _save(_uniform(50, 35, _class_colour(3, 1)), images_dir / "00003" / "00000_00000.png")
  _save(_uniform(64, 48, _class_colour(4, 1)), images_dir / "00004" / "00000_00000.ppm")
  _save(_gradient(45, 60), images_dir / "00007" / "00001_00000.ppm")
  _save(_uniform(20, 20, _class_colour(7, 1)), images_dir / "00007" / "00000_00000.jpg")
  return tmp_path


def test_gtsrb8_keeps_eight_classes_relabelled_in_order(gtsrb_root):
  source = sources.load_source("gtsrb8", data_dir=str(gtsrb_root))
  assert source.num_classes == 8 and source.masks is None
  assert source.images.shape == (11, 28, 28, 3) and source.images.dtype == np.uint8
  # Class 3 (2 images) -> 0, class 7 (3 images) -> 1, classes 9..35 -> 2..7.
  np.testing.assert_array_equal(source.labels, [0, 0, 1, 1, 1, 2, 3, 4, 5, 6, 7])
  assert source.labels.dtype == np.int32
  # Sorted by file name within a class: 00000_00000.* before 00000_00001.ppm.
  expected = [_class_colour(3, 1), _class_colour(3, 0), _class_colour(7, 1),
              _class_colour(7, 0), None] + [
                  _class_colour(c, 0) for c in files.GTSRB8_CLASSES[2:]]
  for image, colour in zip(source.images, expected):
    if colour is None:
      continue
    if colour == _class_colour(7, 1):  # The jpg is lossy: roughly its colour.
      assert np.abs(image.astype(int) - colour).max() <= 4
    else:  # A uniform image keeps its colour exactly after resizing.
      np.testing.assert_array_equal(image, _uniform(28, 28, colour))
  # The 60x45 gradient is squashed to 28x28 (aspect ratio ignored) by PIL bilinear.
  reference = Image.fromarray(_gradient(45, 60)).resize((28, 28), Image.Resampling.BILINEAR)
  np.testing.assert_array_equal(source.images[4], np.asarray(reference))
  # Nothing of the excluded classes 0 and 4.
  for class_id in (0, 4):
    for index in (0, 1):
      assert not (source.images == np.asarray(_class_colour(class_id, index))).all(
          axis=(1, 2, 3)).any()


def test_gtsrb8_accepts_class_folder_root_and_image_size(gtsrb_root):
  nested = sources.load_source("gtsrb8", data_dir=str(gtsrb_root))
  direct = sources.load_source(
      "gtsrb8", data_dir=str(gtsrb_root / "GTSRB" / "Final_Training" / "Images"))
  np.testing.assert_array_equal(direct.images, nested.images)
  np.testing.assert_array_equal(direct.labels, nested.labels)
  small = sources.load_source("gtsrb8", data_dir=str(gtsrb_root), image_size=12)
  assert small.images.shape == (11, 12, 12, 3)
  np.testing.assert_array_equal(small.images[-1],
                                _uniform(12, 12, _class_colour(35, 0)))
  reference = Image.fromarray(_gradient(45, 60)).resize((12, 12), Image.Resampling.BILINEAR)
  np.testing.assert_array_equal(small.images[4], np.asarray(reference))


def test_gtsrb8_missing_folders(gtsrb_root, tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError) as info:
    sources.load_source("gtsrb8", data_dir=str(missing))
  assert str(missing) in str(info.value)
  assert "python scripts/download_data.py gtsrb8" in str(info.value)
  class_folder = gtsrb_root / "GTSRB" / "Final_Training" / "Images" / "00025"
  for entry in os.listdir(class_folder):
    os.remove(class_folder / entry)
  with pytest.raises(ValueError, match="00025"):
    sources.load_source("gtsrb8", data_dir=str(gtsrb_root))
  os.rmdir(class_folder)
  with pytest.raises(FileNotFoundError) as info:
    sources.load_source("gtsrb8", data_dir=str(gtsrb_root))
  assert str(class_folder) in str(info.value)
  assert "python scripts/download_data.py gtsrb8" in str(info.value)


def _mask(value):
  """32 high, 64 wide; `value` on rows 8..15, columns 16..31."""
  mask = np.zeros((32, 64), np.uint8)
  mask[8:16, 16:32] = value
  return mask


@pytest.fixture
def horse_dir(tmp_path):
  os.makedirs(tmp_path / "images")
  os.makedirs(tmp_path / "masks")
  _save(_uniform(32, 64, (10, 200, 30)), tmp_path / "images" / "horse001.png")
  _save(_gradient(32, 64), tmp_path / "images" / "horse002.png")
  Image.fromarray(_uniform(32, 64, (90, 60, 30))).save(
      tmp_path / "images" / "horse003.jpg", quality=95)
  _save(_mask(255), tmp_path / "masks" / "horse001.png")
  _save(_mask(1), tmp_path / "masks" / "horse002.png")
  # Mask 3 in palette mode with a non-zero index on the object.
  Image.fromarray(_mask(128)).convert("P").save(tmp_path / "masks" / "horse003.png")
  (tmp_path / "masks" / "readme.txt").write_text("not a mask")
  return tmp_path


def test_weizmann_horse_images_and_binary_masks(horse_dir):
  source = sources.load_source("weizmann_horse", data_dir=str(horse_dir))
  assert source.num_classes is None
  assert source.images.shape == (3, 128, 128, 3) and source.images.dtype == np.uint8
  np.testing.assert_array_equal(source.labels, [-1, -1, -1])
  assert source.labels.dtype == np.int32
  np.testing.assert_array_equal(source.images[0], _uniform(128, 128, (10, 200, 30)))
  reference = Image.fromarray(_gradient(32, 64)).resize((128, 128),
                                                        Image.Resampling.BILINEAR)
  np.testing.assert_array_equal(source.images[1], np.asarray(reference))
  assert np.abs(source.images[2].astype(int) - (90, 60, 30)).max() <= 4
  # 32x64 -> 128x128: rows scale by 4, columns by 2, so the object lands on rows
  # 32..63 and columns 32..63, and the masks are exactly {0, 1}.
  assert source.masks.shape == (3, 128, 128) and source.masks.dtype == np.uint8
  expected = np.zeros((128, 128), np.uint8)
  expected[32:64, 32:64] = 1
  for mask in source.masks:
    np.testing.assert_array_equal(mask, expected)


def test_weizmann_horse_image_size_and_errors(horse_dir, tmp_path):
  small = sources.load_source("weizmann_horse", data_dir=str(horse_dir), image_size=16)
  assert small.images.shape == (3, 16, 16, 3) and small.masks.shape == (3, 16, 16)
  expected = np.zeros((16, 16), np.uint8)
  expected[4:8, 4:8] = 1  # Rows scale by 1/2, columns by 1/4.
  np.testing.assert_array_equal(small.masks[0], expected)
  _save(_mask(255), horse_dir / "masks" / "horse004.png")
  with pytest.raises(ValueError) as info:
    sources.load_source("weizmann_horse", data_dir=str(horse_dir))
  assert "3 images" in str(info.value) and "4 masks" in str(info.value)
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError) as info:
    sources.load_source("weizmann_horse", data_dir=str(missing))
  assert str(missing) in str(info.value)
  assert "python scripts/download_data.py weizmann_horse" in str(info.value)


def _download_script():
  spec = importlib.util.spec_from_file_location(
      "download_data", REPO / "scripts" / "download_data.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_download_script_sprites_entries(tmp_path, capsys, monkeypatch):
  script = _download_script()
  assert {"gtsrb8", "weizmann_horse"} <= set(script.NAMES)
  assert script.DEFAULT_DIRS["gtsrb8"] == files.DEFAULT_DIRS["gtsrb8"]
  script.main(["weizmann_horse", "--data_dir", str(tmp_path / "horse")])
  printed = capsys.readouterr().out
  assert "kaggle.com/datasets/ztaihong/weizmann-horse-database" in printed
  assert str(tmp_path / "horse" / "masks") in printed
  assert os.listdir(tmp_path) == []

  def fake_download(url, path):  # Stands in for the network: a tiny archive.
    assert url.endswith("GTSRB_Final_Training_Images.zip")
    with zipfile.ZipFile(path, "w") as zipped:
      zipped.writestr("GTSRB/Final_Training/Images/00003/00000_00000.ppm", b"P6")

  monkeypatch.setattr(script, "_download", fake_download)
  target = tmp_path / "gtsrb"
  script.main(["gtsrb8", "--data_dir", str(target)])
  images = target / "GTSRB" / "Final_Training" / "Images"
  assert os.listdir(images / "00003") == ["00000_00000.ppm"]
  assert sorted(os.listdir(target)) == ["GTSRB", "GTSRB_Final_Training_Images.zip"]
  script.main(["gtsrb8", "--data_dir", str(target)])
  assert "exists, skipped" in capsys.readouterr().out
