"""File sources (USPS, affNIST, FRGC, image folders) on tiny files written per test."""

import bz2
import importlib.util
import os
import pathlib

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from data_pipelines import files
from data_pipelines import sources

REPO = pathlib.Path(__file__).resolve().parents[2]


def _usps_line(label, values):
  return " ".join([str(label)] + [f"{i}:{v}" for i, v in enumerate(values, start=1)])


def _write_usps(path, rows):
  with bz2.open(path, "wt") as f:
    f.write("".join(_usps_line(label, values) + "\n" for label, values in rows))


@pytest.fixture
def usps_dir(tmp_path):
  # Test digits: labels 1 and 10; train digit: label 4. Values cover -1, 0, 1 and a
  # fraction whose float32 (v + 1) / 2 * 255 truncates (0.5 -> 191.25 -> 191).
  test_a = ["-1"] * 256
  test_a[0], test_a[17], test_a[255] = "1", "0", "0.5"
  test_b = ["1"] * 256
  test_b[16] = "-0.6"  # float32 (v + 1) / 2 * 255 = 50.999996 -> 50, as torchvision.
  train = ["0"] * 256
  _write_usps(tmp_path / "usps.t.bz2", [(1, test_a), (10, test_b)])
  _write_usps(tmp_path / "usps.bz2", [(4, train)])
  return tmp_path


def test_usps_values_and_order(usps_dir):
  train = sources.load_source("usps", data_dir=str(usps_dir))
  test = sources.load_source("usps", data_dir=str(usps_dir), split="test")
  expected_a = np.zeros((16, 16), np.uint8)
  expected_a[0, 0], expected_a[1, 1], expected_a[15, 15] = 255, 127, 191
  expected_b = np.full((16, 16), 255, np.uint8)
  expected_b[1, 0] = 50
  expected_train = np.full((16, 16), 127, np.uint8)
  np.testing.assert_array_equal(train.images[..., 0],
                                np.stack([expected_a, expected_b, expected_train]))
  np.testing.assert_array_equal(train.labels, [0, 9, 3])
  np.testing.assert_array_equal(test.images[..., 0], np.stack([expected_a, expected_b]))
  np.testing.assert_array_equal(test.labels, [0, 9])
  assert train.images.shape == (3, 16, 16, 1) and train.num_classes == 10
  # "eval" is the training set (no extra split outside SVHN).
  np.testing.assert_array_equal(
      sources.load_source("usps", data_dir=str(usps_dir), split="eval").images, train.images)


def test_usps_rejects_sparse_lines(tmp_path):
  _write_usps(tmp_path / "usps.t.bz2", [(1, ["0"] * 255)])
  with pytest.raises(ValueError, match="line 1") as info:
    sources.load_source("usps", data_dir=str(tmp_path), split="test")
  assert "usps.t.bz2" in str(info.value)


def test_missing_usps_file_names_path_and_command(tmp_path):
  (tmp_path / "usps.t.bz2").touch()
  with pytest.raises(FileNotFoundError) as info:
    sources.load_source("usps", data_dir=str(tmp_path))
  message = str(info.value)
  assert "\n" not in message
  assert str(tmp_path / "usps.bz2") in message
  assert f"python scripts/download_data.py usps --data_dir={tmp_path}" in message


def test_affnist_columns_are_row_major_images(tmp_path):
  rng = np.random.default_rng(0)
  expected = rng.integers(0, 256, (3, 40, 40), dtype=np.uint8)
  image = expected.reshape(3, 1600).T  # Column n is image n, row-major.
  assert image[2 * 40 + 5, 1] == expected[1, 2, 5]
  scipy.io.savemat(tmp_path / "affNIST_test.mat", {
      "affNISTdata": {"image": image, "label_int": np.array([[7, 0, 3]], np.uint8)}})
  source = sources.load_source("affnist_test", data_dir=str(tmp_path))
  np.testing.assert_array_equal(source.images[..., 0], expected)
  assert source.images[1, 2, 5, 0] == image[85, 1]
  np.testing.assert_array_equal(source.labels, [7, 0, 3])
  assert source.images.shape == (3, 40, 40, 1) and source.num_classes == 10


def test_missing_affnist_names_path(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    sources.load_source("affnist_test", data_dir=str(tmp_path))
  assert str(tmp_path / "affNIST_test.mat") in str(info.value)
  assert "download_data.py affnist_test" in str(info.value)


def test_frgc_swaps_axes_and_remaps_labels(tmp_path):
  data = np.arange(4 * 3 * 5 * 6, dtype=np.int64).reshape(4, 3, 5, 6) % 256
  with h5py.File(tmp_path / "data4torch.h5", "w") as f:
    f["data"] = data.astype(np.uint8)
    f["labels"] = np.array([3, 7, 3, 9], np.float64)
  source = sources.load_source("frgc", data_dir=str(tmp_path))
  assert source.images.shape == (4, 6, 5, 3)  # Axes 1 and 3 swapped.
  assert source.images[2, 4, 1, 2] == data[2, 2, 1, 4]
  np.testing.assert_array_equal(source.images, data.swapaxes(1, 3))
  np.testing.assert_array_equal(source.labels, [0, 1, 0, 2])
  assert source.num_classes == 3


def test_missing_frgc_names_path(tmp_path):
  with pytest.raises(FileNotFoundError) as info:
    sources.load_source("frgc", data_dir=str(tmp_path))
  assert str(tmp_path / "data4torch.h5") in str(info.value)
  assert "download_data.py frgc" in str(info.value)


def _save(array, path):
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


def test_image_folder_order_size_and_center_crop(tmp_path):
  columns = np.tile(np.arange(40, dtype=np.uint8) * 6, (10, 1))  # 10 high, 40 wide.
  wide = np.stack([columns, columns + 1, columns + 2], axis=-1)
  _save(wide, tmp_path / "b_wide.png")
  rows = np.tile((np.arange(41, dtype=np.uint8) * 6)[:, None], (1, 10))  # 41 high.
  _save(rows, tmp_path / "c_tall.PNG")  # Grayscale: converted to RGB.
  scaled = np.random.default_rng(1).integers(0, 256, (30, 20, 3), dtype=np.uint8)
  _save(scaled, tmp_path / "a_scaled.png")
  Image.fromarray(wide).save(tmp_path / "d.jpeg", quality=95)
  (tmp_path / "notes.txt").write_text("not an image")
  os.mkdir(tmp_path / "sub.png")  # A folder, even with an image name, is skipped.

  source = sources.load_source("image_folder", data_dir=str(tmp_path), image_size=10)
  assert source.images.shape == (4, 10, 10, 3) and source.num_classes is None
  np.testing.assert_array_equal(source.labels, [-1] * 4)
  # a_scaled: 20x30 -> 10x15 (bilinear), rows round(2.5) = 2 .. 11.
  resized = np.asarray(Image.fromarray(scaled).resize((10, 15), Image.Resampling.BILINEAR))
  np.testing.assert_array_equal(source.images[0], resized[2:12])
  # b_wide: shorter side already 10, columns (40 - 10) / 2 = 15 .. 24.
  np.testing.assert_array_equal(source.images[1], wide[:, 15:25])
  # c_tall: rows round(15.5) = 16 .. 25 (Python rounding, as torchvision's CenterCrop).
  np.testing.assert_array_equal(source.images[2], np.repeat(rows[16:26, :, None], 3, -1))
  # d.jpeg: lossy, so only roughly the centre of the wide gradient.
  assert np.abs(source.images[3].astype(int) - wide[:, 15:25]).max() <= 8


def test_image_folder_errors(tmp_path):
  with pytest.raises(ValueError, match="image_size"):
    sources.load_source("image_folder", data_dir=str(tmp_path))
  with pytest.raises(ValueError) as info:
    sources.load_source("image_folder", data_dir=str(tmp_path), image_size=8)
  assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
  missing = tmp_path / "instagram" / "santaphoto" / "train"
  with pytest.raises(FileNotFoundError) as info:
    sources.load_source("image_folder", data_dir=str(missing), image_size=8)
  assert str(missing) in str(info.value) and "download_data.py" in str(info.value)
  _save(np.zeros((8, 8)), tmp_path / "a.png")
  (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 not a jpeg")
  with pytest.raises(ValueError) as info:
    sources.load_source("image_folder", data_dir=str(tmp_path), image_size=8)
  assert str(tmp_path / "b.jpg") in str(info.value) and "\n" not in str(info.value)


def _download_script():
  spec = importlib.util.spec_from_file_location(
      "download_data", REPO / "scripts" / "download_data.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_download_script_names_and_defaults_match_loaders():
  script = _download_script()
  assert script.DEFAULT_DIRS == files.DEFAULT_DIRS
  generated = {"mnist_embedded", "digits_embedded", "tetrominoes_procedural",
               "multi_dsprites_procedural", "dlp_shapes_procedural", "parts_toy_procedural"}
  loadable = set(sources.SOURCE_NAMES) - generated
  assert loadable <= set(script.NAMES)
  from data_pipelines import multi_object
  assert script.MULTI_OBJECT_DIR == multi_object.DEFAULT_DIR
  assert script.MULTI_OBJECT_FILES == {
      name: layout.object_path for name, layout in multi_object.LAYOUTS.items()}


def test_download_script_unknown_name_and_instructions(tmp_path, capsys):
  script = _download_script()
  with pytest.raises(SystemExit) as info:
    script.main(["cifar10"])
  message = str(info.value.code)
  assert "\n" not in message and "cifar10" in message and "usps" in message
  script.main(["image_folder", "--data_dir", str(tmp_path / "x")])
  printed = capsys.readouterr().out
  assert "not fetched" in printed and "<root>/<tag>/train" in printed
  assert os.listdir(tmp_path) == []
