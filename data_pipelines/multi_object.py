"""Readers of the multi-object-datasets TFRecords: Tetrominoes, Multi-dSprites, CLEVR6.

The files are GZIP TFRecords of `tf.train.Example`s, one per scene, as published in
the `multi-object-datasets` bucket. `image` and `mask` are fixed-length lists of
one-byte strings (one per uint8 value); `mask` holds one 0/255 map per entity,
entity 0 being the background; `visibility` (float, per entity) marks the entities
that exist. The other per-entity factors (x, y, shape, color, ...) are not read.

The instance label of a pixel is the entity with the largest mask value (the first
one on ties, so a pixel no entity covers is background), then the objects present
in the image are renumbered 1..n in entity order, as the ARI scores expect.
Nothing here downloads: a missing file raises FileNotFoundError naming the path
and the command that fetches it.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

DEFAULT_DIR = os.path.join("data", "multi_object_datasets")
BUCKET = "multi-object-datasets"
DEFAULT_NUM_EXAMPLES = 60_000
# CLEVR6 keeps, among the first CLEVR_SCAN records, those with at most
# CLEVR_MAX_OBJECTS objects (about 35K), crops rows 29:221 and columns 64:256 and
# resizes the 192x192 crop to 128x128: bilinear with antialiasing for the image
# (as PIL, which torchvision used), nearest for the instance labels.
CLEVR_SCAN = 70_000
CLEVR_MAX_OBJECTS = 6
CLEVR_CROP = (29, 221, 64, 256)  # top, bottom, left, right
CLEVR_SIZE = 128


@dataclasses.dataclass(frozen=True)
class Layout:
  """How one dataset is stored.

  Attributes:
    object_path: The file's path inside the bucket; its base name is the file name.
    image_size: (H, W) as stored.
    num_entities: Masks per scene, background included.
    mask_shape: Shape of the `mask` feature (values, before decoding).
    entity_axis: Axis of `mask_shape` that indexes entities.
  """

  object_path: str
  image_size: tuple[int, int]
  num_entities: int
  mask_shape: tuple[int, ...]
  entity_axis: int

  @property
  def file_name(self) -> str:
    return os.path.basename(self.object_path)


LAYOUTS = {
    "tetrominoes": Layout("tetrominoes/tetrominoes_train.tfrecords",
                          (35, 35), 4, (4, 35, 35, 1), 0),
    # The colored_on_grayscale variant: 2-5 HSV sprites on a gray background.
    "multi_dsprites": Layout(
        "multi_dsprites/multi_dsprites_colored_on_grayscale.tfrecords",
        (64, 64), 6, (64, 64, 6, 1), 2),
    "clevr6": Layout("clevr_with_masks/clevr_with_masks_train.tfrecords",
                     (240, 320), 11, (11, 240, 320, 1), 0),
}


def tfrecords_path(name: str, data_dir: str | None) -> str:
  """The file of `name`: data_dir itself if it ends in .tfrecords, else a file in it."""
  if data_dir and data_dir.endswith(".tfrecords"):
    return data_dir
  return os.path.join(data_dir or DEFAULT_DIR, LAYOUTS[name].file_name)


def read(name: str, data_dir: str | None, num_examples: int | None
         ) -> tuple[np.ndarray, np.ndarray]:
  """Reads the first scenes of a multi-object dataset in file order.

  Args:
    name: "tetrominoes", "multi_dsprites" or "clevr6".
    data_dir: The .tfrecords file, or the folder holding it (None: DEFAULT_DIR).
    num_examples: Scenes to return. None: the first 60,000 (tetrominoes,
      multi_dsprites), or for clevr6 those of the first CLEVR_SCAN records with
      at most 6 objects. An int n: the first n (clevr6: the first n with at most
      6 objects).

  Returns:
    images uint8 [N, H, W, 3] and masks uint8 [N, H, W] (0 = background,
    1..n = objects); H = W = 128 for clevr6.

  Raises:
    FileNotFoundError: the file is missing.
    ValueError: the file holds fewer scenes than asked for, or num_examples < 1.
  """
  layout = LAYOUTS[name]
  path = tfrecords_path(name, data_dir)
  if not os.path.isfile(path):
    url = f"https://storage.googleapis.com/{BUCKET}/{layout.object_path}"
    raise FileNotFoundError(
        f"{name}: {path} not found; it is gs://{BUCKET}/{layout.object_path}, fetch "
        f"it with `wget -P {os.path.dirname(path) or '.'} {url}`")
  if num_examples is not None and num_examples < 1:
    raise ValueError(f"{name}: num_examples must be >= 1, got {num_examples}")
  records = tf.data.TFRecordDataset(path, compression_type="GZIP").enumerate()
  clevr = name == "clevr6"
  if clevr:
    records = _select_clevr6(records, layout, num_examples)
  else:
    wanted = num_examples or DEFAULT_NUM_EXAMPLES
    records = records.take(wanted).map(lambda index, record: (record, index, True))
  features = {"image": tf.io.FixedLenFeature(layout.image_size + (3,), tf.string),
              "mask": tf.io.FixedLenFeature(layout.mask_shape, tf.string)}

  def decode(serialized, index, keep):
    example = tf.io.parse_example(serialized, features)
    # decode_raw appends an axis of size 1 (one byte per string); the stored mask
    # also ends in a channel axis of size 1.
    image = tf.squeeze(tf.io.decode_raw(example["image"], tf.uint8), -1)
    mask = tf.squeeze(tf.io.decode_raw(example["mask"], tf.uint8), [-2, -1])
    if clevr:  # mask [b, entities, 240, 320]
      top, bottom, left, right = CLEVR_CROP
      image = tf.image.resize(tf.cast(image[:, top:bottom, left:right], tf.float32),
                              (CLEVR_SIZE, CLEVR_SIZE), "bilinear", antialias=True)
      image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
      mask = mask[:, :, top:bottom, left:right]
    return image, mask, index, keep

  batch_size = 8 if clevr else 256  # A CLEVR scene parses into ~850K strings.
  batches = records.batch(batch_size).map(
      decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  image_parts, mask_parts, last_index = [], [], -1
  for image, mask, index, keep in batches.as_numpy_iterator():
    # np.argmax takes the first maximum: uncovered pixels go to entity 0.
    labels = np.argmax(mask[keep], axis=1 + layout.entity_axis).astype(np.uint8)
    if clevr:
      labels = nearest_resize(labels, CLEVR_SIZE)
    image_parts.append(image[keep])
    mask_parts.append(labels)
    last_index = int(index[-1])
  images = np.concatenate(image_parts) if image_parts else np.zeros((0,), np.uint8)
  masks = np.concatenate(mask_parts) if mask_parts else np.zeros((0,), np.uint8)
  if clevr and num_examples is None:
    if last_index != CLEVR_SCAN - 1:
      raise ValueError(f"clevr6: {path} holds fewer than the {CLEVR_SCAN} records "
                       f"CLEVR6 is selected from (set num_examples)")
  elif len(images) < (num_examples or DEFAULT_NUM_EXAMPLES):
    what = f"scenes with <= {CLEVR_MAX_OBJECTS} objects" if clevr else "scenes"
    raise ValueError(f"{name}: {path} holds {len(images)} {what}, "
                     f"{num_examples or DEFAULT_NUM_EXAMPLES} asked for (set num_examples)")
  return images, contiguous_ids(masks, layout.num_entities)


def _select_clevr6(records: tf.data.Dataset, layout: Layout,
                   num_examples: int | None) -> tf.data.Dataset:
  """(record, index, keep) for the CLEVR records to decode, filtered before parsing.

  keep marks scenes with at most CLEVR_MAX_OBJECTS objects. With num_examples
  None the last scanned record (index CLEVR_SCAN - 1) also passes, keep False,
  so that the reader can tell a file shorter than CLEVR_SCAN records.
  """
  visibility = {"visibility": tf.io.FixedLenFeature([layout.num_entities], tf.float32)}

  def tag(index, record):
    objects = tf.reduce_sum(
        tf.io.parse_single_example(record, visibility)["visibility"][1:])
    return record, index, objects <= CLEVR_MAX_OBJECTS

  if num_examples is None:
    records = records.take(CLEVR_SCAN).map(tag)
    return records.filter(lambda record, index, keep: keep | (index == CLEVR_SCAN - 1))
  return records.map(tag).filter(lambda record, index, keep: keep).take(num_examples)


def nearest_resize(labels: np.ndarray, size: int) -> np.ndarray:
  """[N, H, W] -> [N, size, size], nearest neighbour on pixel centres (PIL NEAREST)."""
  rows = ((np.arange(size) + 0.5) * labels.shape[1] / size).astype(np.int64)
  cols = ((np.arange(size) + 0.5) * labels.shape[2] / size).astype(np.int64)
  return labels[:, rows[:, None], cols[None, :]]


def contiguous_ids(labels: np.ndarray, num_entities: int) -> np.ndarray:
  """Renumbers the entities present in each image 1..n in entity order; 0 stays 0.

  Args:
    labels: uint8 [N, H, W] entity indices in [0, num_entities).

  Returns:
    uint8 [N, H, W].
  """
  flat = labels.reshape(len(labels), -1).astype(np.int64)
  present = np.zeros((len(labels), num_entities), bool)
  present[np.arange(len(labels))[:, None], flat] = True
  present[:, 0] = False
  table = np.cumsum(present, axis=1)
  return np.take_along_axis(table, flat, axis=1).reshape(labels.shape).astype(np.uint8)
