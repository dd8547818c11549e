"""Streamed image datasets: ImageFolder order, padded ordered batches, draws in order."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_pipelines import files, streaming


def _folder(root, sizes=((40, 60), (50, 50), (64, 48)), classes=("dog", "cat"), seed=0):
  rng = np.random.default_rng(seed)
  for name in classes:
    os.makedirs(root / name / "sub")
    for j, (height, width) in enumerate(sizes):
      image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
      Image.fromarray(image).save(root / name / f"{j}.png")
    Image.fromarray(image).save(root / name / "sub" / "z.png")
    (root / name / "notes.txt").write_text("not an image")
  return streaming.image_folder(str(root))


def test_folder_order_is_image_folder_order(tmp_path):
  source = _folder(tmp_path)
  names = [os.path.relpath(p, tmp_path) for p in source.paths]
  assert names == ["cat/0.png", "cat/1.png", "cat/2.png", "cat/sub/z.png",
                   "dog/0.png", "dog/1.png", "dog/2.png", "dog/sub/z.png"]
  np.testing.assert_array_equal(source.labels, [0, 0, 0, 0, 1, 1, 1, 1])
  assert source.num_classes == 2 and source.num_examples == 8


def test_ordered_batches_resize_center_crop_and_pad(tmp_path):
  source = _folder(tmp_path)
  batches = list(streaming.ordered_batches(source, global_batch_size=3, resize=32, crop=24))
  assert len(batches) == 3
  np.testing.assert_array_equal(np.concatenate([b["_mask"] for b in batches]),
                                np.arange(9) < 8)
  np.testing.assert_array_equal(batches[2]["label"], [1, 1, -1])
  assert not batches[2]["image"][2].any()
  for i in range(8):
    got = batches[i // 3]["image"][i % 3].astype(int)
    with Image.open(source.paths[i]) as image:
      want = files.resize_and_center_crop(image.convert("RGB"), 32)[4:28, 4:28].astype(int)
    assert np.abs(got - want).max() <= 2  # tf's antialiased bilinear vs PIL's


def test_processes_split_each_global_batch(tmp_path):
  source = _folder(tmp_path)
  parts = [list(streaming.ordered_batches(source, global_batch_size=4, resize=16, crop=16,
                                          process_index=p, process_count=2)) for p in (0, 1)]
  assert len(parts[0]) == len(parts[1]) == 2
  ids = np.concatenate([np.concatenate([a["id"], b["id"]]) for a, b in zip(*parts)])
  np.testing.assert_array_equal(ids, np.arange(8))
  whole = list(streaming.ordered_batches(source, global_batch_size=4, resize=16, crop=16))
  np.testing.assert_array_equal(parts[1][1]["image"], whole[1]["image"][2:])


def test_sampled_batches_follow_the_draws(tmp_path):
  source = _folder(tmp_path, sizes=((32, 32),) * 3)
  draws = np.array([5, 0, 0, 7, 3, 2, 6, 1, 4])
  labels = np.arange(9) % 4
  kwargs = dict(global_batch_size=4, size=32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False)
  batches = list(streaming.sampled_batches(source, draws, labels, seed=1, **kwargs))
  assert len(batches) == 2  # the last partial batch is dropped
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), labels[:8])
  for position, image in enumerate(np.concatenate([b["image"] for b in batches])):
    with Image.open(source.paths[draws[position]]) as original:
      np.testing.assert_array_equal(image, np.asarray(original.convert("RGB")))
  flipped = list(streaming.sampled_batches(source, draws, labels, seed=1,
                                           **{**kwargs, "flip": True}))
  stacked = np.concatenate([b["image"] for b in flipped])
  plain = np.concatenate([b["image"] for b in batches])
  mirrored = [np.array_equal(a, b[:, ::-1]) and not np.array_equal(a, b)
              for a, b in zip(stacked, plain)]
  assert 0 < sum(mirrored) < 8 and sum(mirrored) + sum(
      np.array_equal(a, b) for a, b in zip(stacked, plain)) == 8
  again = list(streaming.sampled_batches(source, draws, labels, seed=1,
                                         **{**kwargs, "flip": True}))
  np.testing.assert_array_equal(np.concatenate([b["image"] for b in again]), stacked)


def test_random_resized_crops_stay_within_the_scale_range():
  import tensorflow as tf
  image = tf.reshape(tf.range(100 * 100, dtype=tf.int32), (100, 100, 1))
  for seed in range(20):
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=(3, seed), min_object_covered=0.0, aspect_ratio_range=(0.75, 4 / 3),
        area_range=(0.08, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
    area = int(extent[0]) * int(extent[1]) / 1e4
    assert 0.07 <= area <= 1.0
  crop = streaming.random_resized_crop(tf.zeros((50, 70, 3), tf.uint8) + 9, 24, (0.08, 1.0),
                                       (0.75, 4 / 3), tf.constant([1, 2], tf.int64))
  assert crop.shape == (24, 24, 3) and int(tf.reduce_max(crop)) == 9


def test_tfds_source_streams_in_order_and_repeats_each_draw():
  with tfds.testing.mock_data(num_examples=10):
    source = streaming.tfds_dataset("imagenet2012", "train", None)
    assert (source.num_examples, source.num_classes, source.random_access) == (10, 1000, False)
    batches = list(streaming.ordered_batches(source, global_batch_size=4, resize=32, crop=24))
    np.testing.assert_array_equal(np.concatenate([b["id"] for b in batches]),
                                  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0])
    draws = np.array([3, 3, 1, 9, 0, 5, 5, 5, 2])
    labels = np.array([1, 1, 0, 2, 0, 1, 1, 1, 0])
    sampled = list(streaming.sampled_batches(source, draws, labels, global_batch_size=4,
                                             size=16, scale=(0.08, 1.0), seed=3))
    got = np.concatenate([b["label"] for b in sampled])
    np.testing.assert_array_equal(np.bincount(got, minlength=3),
                                  np.bincount(labels[:8], minlength=3))


def test_bad_folders_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="image folder .*missing not found"):
    streaming.image_folder(str(tmp_path / "missing"))
  (tmp_path / "empty" / "a").mkdir(parents=True)
  with pytest.raises(ValueError, match="no .* images in class sub-folders"):
    streaming.image_folder(str(tmp_path / "empty"))
  (tmp_path / "bad" / "a").mkdir(parents=True)
  (tmp_path / "bad" / "a" / "x.jpg").write_bytes(b"not a jpeg")
  source = streaming.image_folder(str(tmp_path / "bad"))
  with pytest.raises(ValueError, match="image_folder_stream .*bad: cannot read an image"):
    list(streaming.ordered_batches(source, global_batch_size=1, resize=8, crop=8))


def test_unprepared_tfds_names_the_command_and_the_folder_alternative(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"tfds dataset 'imagenet2012' is not prepared: .*"
                     r"tfds build imagenet2012 .*image_folder_stream"):
    streaming.tfds_dataset("imagenet2012", "train", str(tmp_path))
