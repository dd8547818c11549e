"""The `array_file` source: memory-mapped uint8 frames, split files, one-line errors."""

import numpy as np
import pytest

import data_pipelines
from data_pipelines import sources


def _frames(count, side=8, offset=0):
  """uint8 [count, side, side, 3] whose frame i is filled with offset + i."""
  return np.broadcast_to((offset + np.arange(count, dtype=np.uint8))[:, None, None, None],
                         (count, side, side, 3)).copy()


@pytest.fixture
def split_dir(tmp_path):
  np.save(tmp_path / "train.npy", _frames(6))
  np.save(tmp_path / "validation.npy", _frames(3, offset=100))
  return tmp_path


def test_splits_are_memory_mapped_files(split_dir):
  train = sources.load_source("array_file", data_dir=str(split_dir))
  valid = sources.load_source("array_file", data_dir=str(split_dir), split="eval")
  assert isinstance(train.images, np.memmap) and not train.images.flags.writeable
  np.testing.assert_array_equal(train.images, _frames(6))
  np.testing.assert_array_equal(valid.images, _frames(3, offset=100))
  np.testing.assert_array_equal(train.labels, np.full(6, -1, np.int32))
  assert train.num_classes is None and train.masks is None
  assert data_pipelines.describe(valid) == "array_file: 3 images 8x8x3, unlabelled"
  first = sources.load_source("array_file", data_dir=str(split_dir), num_examples=4,
                              image_size=8)
  assert isinstance(first.images, np.memmap) and first.num_examples == 4


def test_a_file_serves_every_split_and_feeds_the_pipeline(split_dir):
  path = str(split_dir / "train.npy")
  for split in data_pipelines.SPLITS:
    np.testing.assert_array_equal(
        sources.load_source("array_file", data_dir=path, split=split).images, _frames(6))
  source = sources.load_source("array_file", data_dir=path)
  batch = next(data_pipelines.eval_batches(source, global_batch_size=4))
  np.testing.assert_allclose(batch["image"][:, 0, 0, 0], np.arange(4) / 255.0)


def _error(tmp_path, data_dir, split="train", image_size=None, kind=ValueError):
  with pytest.raises(kind) as info:
    sources.load_source("array_file", data_dir=data_dir, split=split, image_size=image_size)
  message = str(info.value)
  assert "\n" not in message
  return message


def test_errors_name_the_key_and_file(split_dir, tmp_path):
  assert "config.data.data_dir" in _error(tmp_path, None)
  message = _error(tmp_path, str(split_dir), split="test", kind=FileNotFoundError)
  assert str(split_dir / "test.npy") in message and "prepare_dlp_frames.py" in message
  assert "config.data.split='test'" in message
  message = _error(tmp_path, str(split_dir), image_size=16)
  assert "config.data.image_size=16" in message and "8x8" in message
  bad = {"float.npy": _frames(2).astype(np.float32), "grey.npy": _frames(2)[..., 0],
         "wide.npy": _frames(2)[:, :4], "empty.npy": _frames(0)}
  for name, array in bad.items():
    np.save(tmp_path / name, array)
    message = _error(tmp_path, str(tmp_path / name))
    assert str(tmp_path / name) in message and "expected uint8 [N, S, S, 3]" in message
  assert "float32 [2, 8, 8, 3]" in _error(tmp_path, str(tmp_path / "float.npy"))
  np.savez(tmp_path / "frames.npz", frames=_frames(2))
  assert ".npz archive" in _error(tmp_path, str(tmp_path / "frames.npz"))
  (tmp_path / "text.npy").write_text("not an array")
  assert "not a readable .npy array" in _error(tmp_path, str(tmp_path / "text.npy"))
