"""Sources: embedded data against the files they come from; tfds paths under mocks."""

import gzip
import os
import time
from unittest import mock

import numpy as np
import pytest
import sklearn.datasets
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import sources


@pytest.fixture(scope="module")
def mnist_5k():
  return sources.load_source("mnist_embedded")


def test_mnist_embedded_matches_csv_rows(mnist_5k):
  path = sources.mnist_5k_csv_path()
  with gzip.open(path, "rt") as f:
    lines = f.read().splitlines()
  assert len(lines) == 5000
  for row in (0, 1, 2499, 4999):
    values = np.array(lines[row].split(","), dtype=np.int64)
    np.testing.assert_array_equal(mnist_5k.images[row, :, :, 0],
                                  values[:784].reshape(28, 28))
    assert mnist_5k.labels[row] == values[784]


def test_mnist_embedded_values(mnist_5k):
  assert mnist_5k.name == "mnist_embedded"
  assert mnist_5k.images.shape == (5000, 28, 28, 1)
  assert mnist_5k.images.dtype == np.uint8 and mnist_5k.labels.dtype == np.int32
  assert mnist_5k.images.max() == 255 and mnist_5k.images.min() == 0
  np.testing.assert_array_equal(np.bincount(mnist_5k.labels), [500] * 10)
  # File order is kept: rows are sorted by label.
  np.testing.assert_array_equal(mnist_5k.labels, np.repeat(np.arange(10), 500))
  assert mnist_5k.num_classes == 10
  assert mnist_5k.image_shape == (28, 28, 1) and mnist_5k.num_examples == 5000


def test_digits_embedded_is_sklearn_digits_scaled():
  source = sources.load_source("digits_embedded")
  digits = sklearn.datasets.load_digits()
  expected = np.rint(digits.images * 255.0 / 16.0).astype(np.uint8)[..., None]
  np.testing.assert_array_equal(source.images, expected)
  np.testing.assert_array_equal(source.labels, digits.target)
  assert source.images.shape == (1797, 8, 8, 1) and source.images.dtype == np.uint8
  # The intensity scale is exactly 0 -> 0, 8 -> 128 (127.5 rounds to even), 16 -> 255.
  mapping = dict(zip(digits.images.ravel(), source.images.ravel()))
  assert mapping[0.0] == 0 and mapping[8.0] == 128 and mapping[16.0] == 255
  assert source.num_classes == 10


def test_describe():
  source = sources.ArraySource(
      "toy", np.zeros((3, 4, 5, 2), np.uint8), np.full(3, -1, np.int32), None)
  assert sources.describe(source) == "toy: 3 images 4x5x2, unlabelled"


def test_array_source_rejects_float_images():
  with pytest.raises(ValueError, match="uint8"):
    sources.ArraySource("bad", np.zeros((2, 4, 4, 1), np.float32),
                        np.zeros(2, np.int32), 1)


def test_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match="mnist_embedded.*fashion_mnist") as info:
    sources.load_source("cifar10")
  assert "\n" not in str(info.value)


def _split_filled_dataset(self, split, decoders=None, read_config=None, **kwargs):
  """Fake tfds split: 3 'test' images of value 1 and 5 'train' images of value 2."""
  del self, decoders, read_config, kwargs
  value, count = {"test": (1, 3), "train": (2, 5)}[str(split)]
  return tf.data.Dataset.from_tensor_slices({
      "image": tf.fill([count, 28, 28, 1], tf.constant(value, tf.uint8)),
      "label": tf.fill([count], tf.constant(value, tf.int64)),
  })


def test_tfds_train_is_test_then_train(tmp_path):
  with tfds.testing.mock_data(as_dataset_fn=_split_filled_dataset):
    train = sources.load_source("mnist", data_dir=str(tmp_path), split="train")
    test = sources.load_source("mnist", data_dir=str(tmp_path), split="test")
  expected = np.array([1] * 3 + [2] * 5)
  np.testing.assert_array_equal(train.labels, expected)
  np.testing.assert_array_equal(train.images.reshape(8, -1).max(axis=1), expected)
  np.testing.assert_array_equal(train.images.reshape(8, -1).min(axis=1), expected)
  assert train.images.dtype == np.uint8 and train.labels.dtype == np.int32
  np.testing.assert_array_equal(test.labels, [1, 1, 1])
  assert train.num_classes == 10 and test.num_examples == 3


def test_tfds_fashion_mnist_under_mock_data(tmp_path):
  with tfds.testing.mock_data(num_examples=4):
    train = sources.load_source("fashion_mnist", data_dir=str(tmp_path))
    test = sources.load_source("fashion_mnist", data_dir=str(tmp_path), split="test")
  assert train.images.shape == (8, 28, 28, 1) and train.images.dtype == np.uint8
  assert test.images.shape == (4, 28, 28, 1)
  assert train.labels.dtype == np.int32
  assert train.labels.min() >= 0 and train.labels.max() < 10
  assert train.num_classes == 10
  # Test split first: the first four training examples are the test split.
  np.testing.assert_array_equal(train.images[:4], test.images)


def test_missing_tfds_data_raises_without_downloading(tmp_path):
  no_download = mock.patch.object(
      tfds.core.DatasetBuilder, "download_and_prepare",
      side_effect=AssertionError("download attempted"))
  start = time.monotonic()
  with no_download, pytest.raises(FileNotFoundError) as info:
    sources.load_source("mnist", data_dir=str(tmp_path))
  assert time.monotonic() - start < 20
  message = str(info.value)
  assert "\n" not in message
  assert str(tmp_path) in message
  assert f"tfds build mnist --data_dir={tmp_path}" in message
  assert os.listdir(tmp_path) == []
