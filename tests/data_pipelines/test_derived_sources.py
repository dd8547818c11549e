"""MNIST-1k, MNIST-color and SVHN: pure functions by value, tfds wiring under mocks."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import derived
from data_pipelines import sources


def test_mnist_1k_indices_are_the_seed_46_draw():
  indices = derived.mnist_1k_indices()
  np.random.seed(46)  # The original's global-state calls.
  original = np.random.choice(range(10000), 1000, replace=False)
  np.testing.assert_array_equal(indices, original)
  assert len(np.unique(indices)) == 1000 and indices.max() < 10000
  np.testing.assert_array_equal(indices[:3], [1909, 4189, 5819])


def _indexed_mnist(self, split, decoders=None, read_config=None, **kwargs):
  """Fake MNIST: 10,000 'test' images; image i has pixel (0, 0) = i % 256 and label i."""
  del self, decoders, read_config, kwargs
  assert str(split) == "test"
  index = tf.range(10_000, dtype=tf.int64)
  pixel = tf.cast(index % 256, tf.uint8)
  images = tf.pad(tf.reshape(pixel, [-1, 1, 1, 1]), [[0, 0], [0, 27], [0, 27], [0, 0]])
  return tf.data.Dataset.from_tensor_slices({"image": images, "label": index})


def test_mnist_1k_selects_test_images_in_drawn_order(tmp_path):
  with tfds.testing.mock_data(as_dataset_fn=_indexed_mnist):
    source = sources.load_source("mnist_1k", data_dir=str(tmp_path), split="test")
  indices = derived.mnist_1k_indices()
  np.testing.assert_array_equal(source.labels, indices)
  np.testing.assert_array_equal(source.images[:, 0, 0, 0], indices % 256)
  assert source.images.shape == (1000, 28, 28, 1) and source.name == "mnist_1k"


def _direct_color(gray, index):
  rng = np.random.default_rng(index)
  uniforms = rng.random(6)
  a, b = uniforms[:3] * 2 - 1, uniforms[3:]
  y = np.abs(a * (gray.astype(np.float64) / 255.0) + b)  # [H, W, 1] * [3] -> [H, W, 3]
  return np.rint(255 * y / y.max()).astype(np.uint8)


def test_colorize_mnist_matches_formula():
  gray = np.zeros((5, 6, 7, 1), np.uint8)
  gray[:, 2:4, 1:5] = np.arange(5, dtype=np.uint8)[:, None, None, None] * 50 + 40
  colored = derived.colorize_mnist(gray, first_index=10)
  assert colored.shape == (5, 6, 7, 3) and colored.dtype == np.uint8
  for i in range(5):
    np.testing.assert_array_equal(colored[i], _direct_color(gray[i], 10 + i))
    assert colored[i].max() == 255
    # Background pixels (x = 0) are |b_c| / max(y): one colour, differing across channels.
    a, b = derived.color_parameters(10 + i)
    peak = np.abs(a * (gray[i].max() / 255.0) + b).max()
    peak = max(peak, b.max())
    np.testing.assert_array_equal(colored[i, 0, 0], np.rint(255 * b / peak))
    assert len(set(colored[i, 0, 0].tolist())) == 3
  # Per-index determinism: the same index gives the same colours on every call,
  # whatever chunk it is coloured in; another index gives other colours.
  np.testing.assert_array_equal(derived.colorize_mnist(gray[3:4], first_index=13),
                                colored[3:4])
  assert not np.array_equal(derived.colorize_mnist(gray[3:4], first_index=14), colored[3:4])


def _split_filled(counts, shape):
  def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    """Fake tfds split: `count` images filled with the split's value."""
    del self, decoders, read_config, kwargs
    value, count = counts[str(split)]
    return tf.data.Dataset.from_tensor_slices({
        "image": tf.fill([count, *shape], tf.constant(value, tf.uint8)),
        "label": tf.fill([count], tf.constant(value, tf.int64)),
    })
  return as_dataset


def test_mnist_color_colours_by_dataset_index(tmp_path):
  fake = _split_filled({"test": (100, 3), "train": (200, 5)}, (28, 28, 1))
  with tfds.testing.mock_data(as_dataset_fn=fake):
    train = sources.load_source("mnist_color", data_dir=str(tmp_path))
    test = sources.load_source("mnist_color", data_dir=str(tmp_path), split="test")
  gray = np.array([100] * 3 + [200] * 5, np.uint8)[:, None, None, None]
  expected = derived.colorize_mnist(np.broadcast_to(gray, (8, 28, 28, 1)).copy())
  np.testing.assert_array_equal(train.images, expected)
  np.testing.assert_array_equal(train.labels, [100] * 3 + [200] * 5)
  np.testing.assert_array_equal(test.images, train.images[:3])  # Test indices 0..2.
  assert train.images.shape == (8, 28, 28, 3) and train.num_classes == 10
  # A uniform image is one colour scaled so that its brightest channel is 255.
  assert (train.images.reshape(8, -1, 3).max(axis=-1) == 255).all()


def test_svhn_train_is_test_train_extra(tmp_path):
  fake = _split_filled({"test": (1, 3), "train": (2, 5), "extra": (3, 7)}, (32, 32, 3))
  with tfds.testing.mock_data(as_dataset_fn=fake):
    train = sources.load_source("svhn", data_dir=str(tmp_path))
    evaluation = sources.load_source("svhn", data_dir=str(tmp_path), split="eval")
    test = sources.load_source("svhn", data_dir=str(tmp_path), split="test")
  np.testing.assert_array_equal(train.labels, [1] * 3 + [2] * 5 + [3] * 7)
  np.testing.assert_array_equal(train.images.reshape(15, -1).min(axis=1), train.labels)
  np.testing.assert_array_equal(evaluation.labels, [1] * 3 + [2] * 5)
  np.testing.assert_array_equal(test.labels, [1] * 3)
  assert train.images.shape == (15, 32, 32, 3) and train.num_classes == 10
  assert train.name == "svhn"


def test_unknown_split_lists_valid_splits():
  with pytest.raises(ValueError, match="train, eval, test"):
    sources.load_source("usps", split="val")
