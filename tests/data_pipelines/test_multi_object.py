"""multi-object-datasets readers on tiny GZIP TFRecords written in the published layout."""

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import multi_object
from data_pipelines import sources


def _bytes(array):
  """One 1-byte string per uint8 value, as the published files store image and mask."""
  raw = np.asarray(array, np.uint8).tobytes()
  return tf.train.Feature(bytes_list=tf.train.BytesList(
      value=[raw[i:i + 1] for i in range(len(raw))]))


def _floats(array):
  return tf.train.Feature(float_list=tf.train.FloatList(
      value=np.asarray(array, np.float32).ravel()))


def _write(path, examples):
  with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
    for features in examples:
      writer.write(tf.train.Example(
          features=tf.train.Features(feature=features)).SerializeToString())


def _one_hot(labels, entities):
  """Entity id map [H, W] -> 0/255 masks [entities, H, W, 1]."""
  return (np.arange(entities)[:, None, None] == labels)[..., None].astype(np.uint8) * 255


def _tetromino_example(image, labels):
  e = 4
  return {"image": _bytes(image), "mask": _bytes(_one_hot(labels, e)),
          "x": _floats(np.zeros(e)), "y": _floats(np.zeros(e)),
          "shape": _floats(np.zeros(e)), "color": _floats(np.zeros((e, 3))),
          "visibility": _floats(np.ones(e))}


def _dsprites_example(image, labels, visibility):
  e = 6  # colored_on_grayscale: the mask is stored [64, 64, entities, 1].
  masks = np.transpose(_one_hot(labels, e), (1, 2, 0, 3))
  fields = {key: _floats(np.zeros(e)) for key in
            ("x", "y", "shape", "orientation", "scale")}
  return {"image": _bytes(image), "mask": _bytes(masks), "color": _floats(np.zeros((e, 3))),
          "visibility": _floats(visibility), **fields}


def _clevr_example(image, labels, num_objects):
  e = 11
  visibility = np.arange(e) <= num_objects
  fields = {key: _floats(np.zeros(e)) for key in ("x", "y", "z", "rotation")}
  codes = {key: _bytes(np.ones(e)) for key in ("size", "material", "shape", "color")}
  return {"image": _bytes(image), "mask": _bytes(_one_hot(labels, e)),
          "pixel_coords": _floats(np.zeros((e, 3))), "visibility": _floats(visibility),
          **fields, **codes}


def _rng_image(seed, shape):
  return np.random.default_rng(seed).integers(0, 256, shape + (3,)).astype(np.uint8)


def test_tetrominoes_read_back(tmp_path):
  labels = np.zeros((3, 35, 35), np.uint8)
  labels[0, 0:10, 0:5], labels[0, 20:25, 10:30], labels[0, 30:35, 30:35] = 1, 2, 3
  labels[1, 5:10, 5:10], labels[1, 12:14, 0:3] = 3, 1  # Entity 2 absent: ids 1, 2.
  labels[2, 0, 0] = 2
  images = np.stack([_rng_image(i, (35, 35)) for i in range(3)])
  path = tmp_path / "tetrominoes_train.tfrecords"
  _write(path, [_tetromino_example(im, lab) for im, lab in zip(images, labels)])
  source = sources.load_source("tetrominoes", data_dir=str(tmp_path), num_examples=3)
  np.testing.assert_array_equal(source.images, images)
  expected = labels.copy()
  expected[1][labels[1] == 3] = 2
  expected[2][labels[2] == 2] = 1
  np.testing.assert_array_equal(source.masks, expected)
  assert source.masks.dtype == np.uint8 and source.num_classes is None
  np.testing.assert_array_equal(source.labels, -1)
  # The file itself works as data_dir; num_examples takes the first scenes.
  first = sources.load_source("tetrominoes", data_dir=str(path), num_examples=2)
  np.testing.assert_array_equal(first.masks, expected[:2])
  with pytest.raises(ValueError, match="holds 3 scenes, 60000 asked for"):
    multi_object.read("tetrominoes", str(path), None)


def test_multi_dsprites_entity_axis_and_renumbering(tmp_path):
  labels = np.zeros((2, 64, 64), np.uint8)
  labels[0, 10:20, 10:20], labels[0, 15:30, 15:30], labels[0, 40:50, 5:9] = 1, 3, 4
  labels[1, 0:64, 0:32] = 5  # One sprite over half the image.
  visibility = [[1, 1, 0, 1, 1, 0], [1, 0, 0, 0, 0, 1]]
  images = np.stack([_rng_image(10 + i, (64, 64)) for i in range(2)])
  path = tmp_path / "multi_dsprites_colored_on_grayscale.tfrecords"
  _write(path, [_dsprites_example(*args) for args in zip(images, labels, visibility)])
  source = sources.load_source("multi_dsprites", data_dir=str(tmp_path), num_examples=2)
  np.testing.assert_array_equal(source.images, images)
  expected = np.take_along_axis(  # Entities 1, 3, 4 -> 1, 2, 3; entity 5 -> 1.
      np.array([[0, 1, 0, 2, 3, 0], [0, 0, 0, 0, 0, 1]])[:, None, :],
      labels.reshape(2, 1, -1).astype(np.int64), axis=2).reshape(labels.shape)
  np.testing.assert_array_equal(source.masks, expected)
  assert sources.describe(source).endswith("instance masks 0..3")


@pytest.fixture(scope="module")
def clevr_file(tmp_path_factory):
  """Three 240x320 scenes with 3, 7 and 2 objects; the second is not CLEVR6."""
  labels = np.zeros((3, 240, 320), np.uint8)
  # Crop rows 29:221, cols 64:256; rows 29 + 3a map to 2a after the resize.
  labels[0, 29 + 30:29 + 60, 64 + 0:64 + 90] = 2
  labels[0, 29 + 3:29 + 9, 64 + 150:64 + 192] = 5
  labels[0, 0:29, 0:64] = 1  # Outside the crop: gone, and not counted.
  labels[1, 100:110, 100:110] = 7
  labels[2, 29 + 90:29 + 192, 64 + 96:64 + 99] = 3
  images = np.full((3, 240, 320, 3), (40, 90, 200), np.uint8)
  path = tmp_path_factory.mktemp("clevr") / "clevr_with_masks_train.tfrecords"
  _write(path, [_clevr_example(images[i], labels[i], n) for i, n in enumerate((3, 7, 2))])
  return path


def test_clevr6_filters_crops_and_resizes(clevr_file):
  source = sources.load_source("clevr6", data_dir=str(clevr_file), num_examples=2)
  assert source.images.shape == (2, 128, 128, 3) and source.masks.shape == (2, 128, 128)
  np.testing.assert_array_equal(source.images, np.broadcast_to((40, 90, 200), (2, 128, 128, 3)))
  expected = np.zeros((2, 128, 128), np.uint8)
  expected[0, 20:40, 0:60], expected[0, 2:6, 100:128] = 1, 2  # Entities 2, 5.
  expected[1, 60:128, 64:66] = 1  # Scene 2 (scene 1 has 7 objects).
  np.testing.assert_array_equal(source.masks, expected)


def test_clevr6_short_files(clevr_file):
  with pytest.raises(ValueError, match="holds 2 scenes with <= 6 objects, 3 asked for"):
    multi_object.read("clevr6", str(clevr_file), 3)
  with pytest.raises(ValueError, match="holds fewer than the 70000 records"):
    multi_object.read("clevr6", str(clevr_file), None)


@pytest.mark.parametrize("name, url_tail", [
    ("tetrominoes", "tetrominoes/tetrominoes_train.tfrecords"),
    ("multi_dsprites", "multi_dsprites/multi_dsprites_colored_on_grayscale.tfrecords"),
    ("clevr6", "clevr_with_masks/clevr_with_masks_train.tfrecords")])
def test_missing_file_is_one_line(tmp_path, name, url_tail):
  with pytest.raises(FileNotFoundError) as info:
    sources.load_source(name, data_dir=str(tmp_path))
  message = str(info.value)
  assert "\n" not in message
  assert str(tmp_path / url_tail.split("/")[1]) in message
  assert f"gs://multi-object-datasets/{url_tail}" in message
  assert f"https://storage.googleapis.com/multi-object-datasets/{url_tail}" in message


def test_contiguous_ids_and_nearest_resize():
  labels = np.array([[[0, 4], [4, 2]], [[1, 1], [1, 1]]], np.uint8)
  np.testing.assert_array_equal(multi_object.contiguous_ids(labels, 5),
                                [[[0, 2], [2, 1]], [[1, 1], [1, 1]]])
  grid = np.arange(36, dtype=np.uint8).reshape(1, 6, 6)
  np.testing.assert_array_equal(multi_object.nearest_resize(grid, 4)[0, 0], [0, 2, 3, 5])
