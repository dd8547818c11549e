"""Bad input stops the run before anything is written, with one line naming the culprit.

(Unknown keys, wrong value types and missing tfds data go through the command line and
are tested in tests/test_main.py.)
"""

import errno
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from dti_jax import methods
from configs import digits, image_collection, mnist, tetrominoes
from dti_jax.run import workdir as workdir_lib


def _digits(**overrides):
  config = digits.get_config()
  config.train.num_epochs = 1
  for key, value in overrides.items():
    group, name = key.split(".")
    config[group][name] = value
  return config


def _folder_config(folder, image_size=16):
  config = image_collection.get_config("instagram")
  config.data.data_dir = str(folder)
  config.data.image_size = image_size
  config.model.n_prototypes = 2
  config.train.batch_size = 2
  return config


def _image_folder(path, count=3, size=(20, 24)):
  path.mkdir()
  rng = np.random.default_rng(0)
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path / f"{i}.png")
  return path


def _fails(config, workdir, error_type, *expected, num_devices=1):
  """Runs the config, checks the error's one line names ``expected`` and nothing was written."""
  existed = os.path.exists(workdir)
  before = sorted(os.listdir(workdir)) if existed else None
  with pytest.raises(error_type) as info:
    methods.train_and_evaluate(config, str(workdir), num_devices=num_devices)
  message = str(info.value)
  assert "\n" not in message and all(text in message for text in expected), message
  if existed:
    assert sorted(os.listdir(workdir)) == before
  else:
    assert not os.path.exists(workdir)
  return message


def test_no_prototype(tmp_path):
  _fails(_digits(**{"model.n_prototypes": 0}), tmp_path / "run", ValueError,
         "config.model.n_prototypes=0")


def test_batch_not_divisible_by_the_devices(tmp_path):
  _fails(_digits(**{"train.batch_size": 64}), tmp_path / "run", ValueError,
         "config.train.batch_size=64", "number of devices (3)", num_devices=3)


def test_image_size_the_encoder_cannot_take(tmp_path):
  folder = _image_folder(tmp_path / "photos")
  _fails(_folder_config(folder, image_size=2), tmp_path / "run", ValueError,
         "image size (2, 2)", "config.model.encoder")


def test_image_shape_the_model_cannot_take(tmp_path):
  config = tetrominoes.get_config("procedural")
  config.data.num_examples = 64
  config.model.layer_transformation = "identity"
  _fails(config, tmp_path / "run", ValueError, "config.model.sprite_size=24", "image size 35")


def test_wrong_channel_count(tmp_path):
  folder = _image_folder(tmp_path / "photos")
  config = mnist.get_config("embedded")
  config.data.name, config.data.data_dir, config.data.image_size = "image_folder", str(folder), 28
  _fails(config, tmp_path / "run", ValueError, "'morpho'", "the data has 3")


def test_missing_dataset_folder(tmp_path):
  _fails(_folder_config(tmp_path / "nowhere"), tmp_path / "run", FileNotFoundError,
         str(tmp_path / "nowhere"), "not found")


def test_empty_image_folder(tmp_path):
  (tmp_path / "empty").mkdir()
  _fails(_folder_config(tmp_path / "empty"), tmp_path / "run", ValueError,
         "no ", str(tmp_path / "empty"))


def test_corrupt_image_file(tmp_path):
  folder = _image_folder(tmp_path / "photos")
  (folder / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  _fails(_folder_config(folder), tmp_path / "run", ValueError,
         f"cannot read image {folder / '1.png'}")


def test_workdir_that_cannot_be_created(tmp_path):
  (tmp_path / "file").write_text("a file, not a folder")
  message = _fails(_digits(), tmp_path / "file" / "run", OSError, "is not writable")
  assert str(tmp_path / "file" / "run") in message


def test_read_only_workdir(tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  workdir.mkdir()
  if os.geteuid() != 0:  # root ignores permission bits: inject the error instead
    os.chmod(workdir, 0o500)
  else:
    def read_only(*args, **kwargs):
      raise OSError(errno.EROFS, os.strerror(errno.EROFS))
    monkeypatch.setattr(workdir_lib.os, "fsync", read_only)
  try:
    _fails(_digits(), workdir, OSError, f"--workdir={workdir} is not writable")
  finally:
    os.chmod(workdir, 0o700)


def test_full_workdir(tmp_path, monkeypatch):
  usage = shutil.disk_usage(tmp_path)
  monkeypatch.setattr(workdir_lib.shutil, "disk_usage",
                      lambda path: usage._replace(free=100 * 2**10))
  _fails(_digits(), tmp_path / "run", OSError, "has 0.1 MiB free", "checkpoints need about")


def test_workdir_of_another_config_is_refused_listing_the_keys(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  workdir_lib.write_config(str(workdir), _digits(), 0)
  config = _digits(**{"model.n_prototypes": 7, "optim.lr": 0.01})
  message = _fails(config, workdir, ValueError, "model.n_prototypes: 10 -> 7",
                   "optim.lr: 0.001 -> 0.01", "--config.allow_config_change=True")
  assert "num_epochs" not in message


def test_run_length_logging_and_evaluation_may_change():
  saved = json.loads(_digits().to_json())
  config = _digits(**{"train.num_epochs": 500, "log.every_steps": 3, "eval.every_steps": 9})
  assert workdir_lib.changed_keys(saved, config) == []
  config.data.image_size = 12
  assert workdir_lib.changed_keys(saved, config) == ["data.image_size"]


def test_allow_config_change_lets_the_change_through_and_keeps_the_old_config(tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  workdir_lib.write_config(str(workdir), _digits(), 0)
  config = _digits(**{"model.n_prototypes": 7})
  config.allow_config_change = True
  assert workdir_lib.check_saved_config(str(workdir), config) == ["model.n_prototypes"]
  workdir_lib.write_config(str(workdir), config, 40)
  with open(workdir / "config.step40.json") as f:
    assert json.load(f)["model"]["n_prototypes"] == 10
  with open(workdir / "config.json") as f:
    assert json.load(f)["model"]["n_prototypes"] == 7
