"""Reading torch.save files without torch: both layouts, views of shared storages, refusals."""

import collections
import os

import numpy as np
import pytest

from dti_jax.interop import torch_files
from tests.interop import torch_writer

SAVERS = {"legacy": torch_writer.save_legacy, "zip": torch_writer.save_zip}


def _checkpoint():
  """Tensors of several dtypes, two views of one storage, a transposed view, plain data."""
  shared = np.arange(20, dtype=np.float32)
  state = collections.OrderedDict([
      ("first", torch_writer.TensorView(shared, 2, (2, 3), (3, 1))),
      ("every_other", torch_writer.TensorView(shared, 5, (5,), (2,))),
      ("transposed", torch_writer.TensorView(shared, 0, (3, 2), (1, 3))),
      ("weight", np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 2, 2)),
      ("double", np.array([[0.1, 0.2]], np.float64)),
      ("steps", np.array(7, np.int64)),
      ("labels", np.array([3, -1, 2 ** 40], np.int64)),
      ("mask", np.array([True, False])),
  ])
  optimizer = {"state": {0: {"momentum_buffer": np.ones(3, np.float32)}},
               "param_groups": [{"lr": 0.05, "momentum": 0.9, "nesterov": False,
                                 "params": [0, 140_000_000_000]}]}
  return {"epoch": 3, "arch": "alexnet", "state_dict": state, "optimizer": optimizer}


@pytest.mark.parametrize("layout", sorted(SAVERS))
def test_round_trip_keeps_values_dtypes_shapes_and_views(tmp_path, layout):
  path = str(tmp_path / "checkpoint.pth.tar")
  SAVERS[layout](path, _checkpoint())
  loaded = torch_files.load_torch_file(path)
  assert (loaded["epoch"], loaded["arch"]) == (3, "alexnet")
  state = loaded["state_dict"]
  assert isinstance(state, collections.OrderedDict) and list(state) == list(
      _checkpoint()["state_dict"])
  shared = np.arange(20, dtype=np.float32)
  expected = {"first": shared[2:8].reshape(2, 3), "every_other": shared[5:15:2],
              "transposed": shared[:6].reshape(2, 3).T,
              "weight": np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 2, 2),
              "double": np.array([[0.1, 0.2]]), "steps": np.array(7),
              "labels": np.array([3, -1, 2 ** 40]), "mask": np.array([True, False])}
  for key, value in expected.items():
    assert state[key].dtype == value.dtype and state[key].shape == value.shape, key
    np.testing.assert_array_equal(state[key], value)
    assert state[key].flags.c_contiguous and state[key].flags.writeable
  # Views of one storage come back as separate copies.
  state["first"][0, 0] = 100.0
  assert state["every_other"][0] == 5.0
  assert loaded["optimizer"]["param_groups"][0]["params"] == [0, 140_000_000_000]
  np.testing.assert_array_equal(loaded["optimizer"]["state"][0]["momentum_buffer"], np.ones(3))


def test_cuda_storages_of_a_gpu_checkpoint_load_on_cpu(tmp_path):
  path = str(tmp_path / "gpu.pth.tar")
  torch_writer.save_legacy(path, {"w": np.eye(3, dtype=np.float32)}, location="cuda:0")
  np.testing.assert_array_equal(torch_files.load_torch_file(path)["w"], np.eye(3))


@pytest.mark.parametrize("layout", sorted(SAVERS))
def test_a_global_outside_the_allowed_few_is_refused_by_name(tmp_path, layout):
  path = str(tmp_path / "hostile.pt")
  SAVERS[layout](path, {"x": torch_writer.Global("os", "system", ("true",))})
  with pytest.raises(ValueError, match=r"hostile\.pt: refusing to load global os\.system"):
    torch_files.load_torch_file(path)


def test_missing_foreign_and_truncated_files_name_the_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="absent.pt: no such file"):
    torch_files.load_torch_file(str(tmp_path / "absent.pt"))
  text = tmp_path / "notes.txt"
  text.write_text("not a checkpoint\n" * 10)
  with pytest.raises(ValueError, match=r"notes\.txt: not a torch file"):
    torch_files.load_torch_file(str(text))
  path = str(tmp_path / "cut.pt")
  torch_writer.save_legacy(path, {"w": np.ones(100, np.float32)})
  os.truncate(path, os.path.getsize(path) - 8)
  with pytest.raises(ValueError, match=r"cut\.pt: truncated in storage"):
    torch_files.load_torch_file(path)
