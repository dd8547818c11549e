"""Image datasets streamed from disk (ImageNet-sized), in a fixed order with image ids.

ImageNet does not fit in host memory, so its images are read, decoded and resized by
tf.data when they are needed. A `StreamingSource` fixes what image i is (a class-folder
set in torchvision ImageFolder's order: classes sorted, then files sorted; a tfds set in
its file order) and yields (id, encoded image, label) records. Two batchings use it:

- `ordered_batches`: every image once, in id order, Resize(shorter side) + CenterCrop,
  laid out as `pipeline.eval_batches` (this process's rows of each global batch, zero
  rows with `_mask` False at the end, the same number of batches on every process);
- `sampled_batches`: training batches of given draws (image ids with their
  pseudo-labels, or a permutation with the true labels) with RandomResizedCrop (or the
  linear probes' Resize + CenterCrop + RandomCrop) and an optional horizontal flip. A class folder
  is read by path, in the exact order of the draws; a tfds set can only be read
  sequentially, so each image is repeated as often as it is drawn and the repeats are
  shuffled in a buffer (the same multiset of draws, another order).

Decoding and augmentation are stateless functions of (seed, position), so a resumed
epoch sees the same crops.
"""

import dataclasses
import os
from typing import Iterator

import numpy as np
import tensorflow as tf

from data_pipelines import files

STREAMING_NAMES = ("image_folder_stream", "tfds_stream")
_AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True, eq=False)
class StreamingSource:
  """An image dataset read from disk on demand.

  Attributes:
    name: "image_folder_stream" or "tfds_stream".
    location: the root folder, or the tfds name and split ("imagenet2012:train").
    num_examples: N; image ids are 0..N-1.
    num_classes: number of classes, or None when unlabelled.
    paths: for a folder, the image files in id order (random access); None for tfds.
    labels: int32 [N] for a folder (the class folder's index); None for tfds, whose
      labels are only known once read (the batches carry them).
    tfds_builder: for tfds, the dataset builder; None for a folder.
    split: the tfds split.
  """
  name: str
  location: str
  num_examples: int
  num_classes: int | None
  paths: np.ndarray | None = None
  labels: np.ndarray | None = None
  tfds_builder: object = None
  split: str = "train"

  @property
  def random_access(self) -> bool:
    return self.paths is not None


def image_folder(root: str) -> StreamingSource:
  """A class-folder dataset (ImageNet's train/ or val/ layout): root/<class>/<image>.

  Classes are the sorted sub-folders, images the files under each (recursively) with an
  image extension, sorted, as torchvision's ImageFolder, which DeepCluster uses.
  """
  if not os.path.isdir(root):
    raise FileNotFoundError(f"config.data.data_dir: image folder {root} not found; it should "
                            "hold one sub-folder of images per class (ImageNet's train/)")
  classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
  paths, labels = [], []
  for label, name in enumerate(classes):
    for folder, subfolders, names in os.walk(os.path.join(root, name)):
      subfolders.sort()
      for file_name in sorted(names):
        if file_name.lower().endswith(files.IMAGE_EXTENSIONS):
          paths.append(os.path.join(folder, file_name))
          labels.append(label)
  if not paths:
    raise ValueError(f"config.data.data_dir: no {'/'.join(files.IMAGE_EXTENSIONS)} images in "
                     f"class sub-folders of {root}")
  return StreamingSource(name="image_folder_stream", location=root, num_examples=len(paths),
                         num_classes=len(classes), paths=np.asarray(paths),
                         labels=np.asarray(labels, np.int32))


def tfds_dataset(name: str, split: str, data_dir: str | None) -> StreamingSource:
  """A prepared tfds image dataset with "image" and "label" features (e.g. imagenet2012)."""
  import tensorflow_datasets as tfds  # Imported here: slow, and only tfds sources need it.

  builder = tfds.builder(name, data_dir=data_dir)
  root = builder.data_dir_root
  dataset = files.open_tfds_split(builder, name, split, (
      f"prepare it once with `tfds build {name} --data_dir={root}` (ImageNet needs its "
      f"archives in {root}/downloads/manual first), or train from an image folder with "
      "--config.data.name=image_folder_stream --config.data.data_dir=DIR"))
  if split in builder.info.splits:
    num_examples = builder.info.splits[split].num_examples
  else:  # only the split's files, no metadata: count
    num_examples = int(dataset.reduce(0, lambda count, _: count + 1))
  label = builder.info.features["label"] if "label" in builder.info.features else None
  return StreamingSource(name="tfds_stream", location=f"{name}:{split}",
                         num_examples=num_examples,
                         num_classes=None if label is None else int(label.num_classes),
                         tfds_builder=builder, split=split)


def load(name: str, *, data_dir: str | None, tfds_name: str = "imagenet2012",
         split: str = "train") -> StreamingSource:
  if name == "image_folder_stream":
    if not data_dir:
      raise ValueError("config.data.data_dir is required for image_folder_stream: the folder "
                       "of class sub-folders")
    return image_folder(data_dir)
  if name == "tfds_stream":
    return tfds_dataset(tfds_name, split, data_dir)
  raise ValueError(f"unknown streaming source {name!r}; one of {STREAMING_NAMES}")


def _records(source: StreamingSource, ids: np.ndarray) -> tf.data.Dataset:
  """(id int64, encoded image, label int32) of ``ids`` (increasing for tfds), in order."""
  ids = np.asarray(ids, np.int64)
  if source.random_access:
    paths, labels = source.paths[ids], source.labels[ids]
    dataset = tf.data.Dataset.from_tensor_slices((ids, paths, labels))
    return dataset.map(lambda i, path, label: (i, tf.io.read_file(path), label),
                       num_parallel_calls=_AUTOTUNE, deterministic=True)
  import tensorflow_datasets as tfds  # Imported here: slow, and only tfds sources need it.

  keep = np.zeros((source.num_examples,), bool)
  keep[ids] = True
  keep = tf.constant(keep)
  dataset = source.tfds_builder.as_dataset(
      split=source.split, shuffle_files=False,
      decoders={"image": tfds.decode.SkipDecoding()})
  dataset = dataset.enumerate().filter(lambda i, example: tf.gather(keep, i))
  return dataset.map(lambda i, example: (
      i, example["image"], tf.cast(example.get("label", tf.constant(-1, tf.int64)), tf.int32)))


def resize_and_center_crop(image: tf.Tensor, resize: int, crop: int) -> tf.Tensor:
  """torchvision Resize(resize) (bilinear, antialiased like PIL) then CenterCrop(crop)."""
  shape = tf.shape(image)
  height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
  short = tf.minimum(height, width)
  new_height = tf.cast(tf.math.floor(resize * height / short), tf.int32)
  new_width = tf.cast(tf.math.floor(resize * width / short), tf.int32)
  image = tf.image.resize(image, (new_height, new_width), method="bilinear", antialias=True)
  top = tf.cast(tf.math.round((new_height - crop) / 2), tf.int32)
  left = tf.cast(tf.math.round((new_width - crop) / 2), tf.int32)
  image = image[top:top + crop, left:left + crop]
  return tf.cast(tf.clip_by_value(tf.math.round(image), 0, 255), tf.uint8)


def random_resized_crop(image: tf.Tensor, size: int, scale: tuple[float, float],
                        ratio: tuple[float, float], seed: tf.Tensor) -> tf.Tensor:
  """torchvision RandomResizedCrop: a box of area fraction in ``scale`` and aspect in
  ``ratio`` (10 tries, else the whole image), resized to size x size (bilinear)."""
  begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
      min_object_covered=0.0, aspect_ratio_range=ratio, area_range=scale, max_attempts=10,
      use_image_if_no_bounding_boxes=True)
  image = tf.slice(image, begin, extent)
  image = tf.image.resize(image, (size, size), method="bilinear", antialias=False)
  return tf.cast(tf.clip_by_value(tf.math.round(image), 0, 255), tf.uint8)


def _decode(encoded: tf.Tensor) -> tf.Tensor:
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _options(dataset: tf.data.Dataset) -> tf.data.Dataset:
  options = tf.data.Options()
  options.deterministic = True
  return dataset.with_options(options).prefetch(2)


def _iterate(dataset: tf.data.Dataset, source: StreamingSource) -> Iterator[dict]:
  """Numpy batches; a file tf cannot read becomes a one-line error naming the dataset."""
  iterator = dataset.as_numpy_iterator()
  while True:
    try:
      batch = next(iterator)
    except StopIteration:
      return
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
      message = str(error.message).strip().splitlines()[0]
      raise ValueError(f"{source.name} {source.location}: cannot read an image "
                       f"({message})") from None
    yield batch


def ordered_batches(source: StreamingSource, *, global_batch_size: int, resize: int,
                    crop: int, process_index: int = 0, process_count: int = 1
                    ) -> Iterator[dict[str, np.ndarray]]:
  """Every image once in id order: this process's rows of each global batch.

  Yields ceil(N / global_batch_size) dicts with image uint8 [local, crop, crop, 3], id
  int64, label int32 (-1 where unknown) and _mask bool; rows past N are zeros with
  _mask False.
  """
  if global_batch_size % process_count:
    raise ValueError(f"global batch {global_batch_size} is not divisible by the "
                     f"{process_count} processes")
  local = global_batch_size // process_count
  num_batches = -(-source.num_examples // global_batch_size)
  positions = np.arange(num_batches * global_batch_size).reshape(num_batches, -1)
  mine = positions[:, process_index * local:(process_index + 1) * local]
  dataset = _records(source, mine[mine < source.num_examples])
  dataset = dataset.map(
      lambda i, encoded, label: {"image": resize_and_center_crop(_decode(encoded), resize,
                                                                 crop),
                                 "id": i, "label": label},
      num_parallel_calls=_AUTOTUNE, deterministic=True)
  batches = _iterate(_options(dataset.batch(local)), source)
  for ids in mine:
    valid = ids < source.num_examples
    count = int(valid.sum())
    batch = next(batches) if count else {
        "image": np.zeros((0, crop, crop, 3), np.uint8), "id": np.zeros((0,), np.int64),
        "label": np.zeros((0,), np.int32)}
    pad = local - count
    yield {"image": np.concatenate([batch["image"],
                                    np.zeros((pad, crop, crop, 3), np.uint8)]),
           "id": np.where(valid, ids, 0).astype(np.int64),
           "label": np.concatenate([batch["label"], np.full((pad,), -1, np.int32)]),
           "_mask": valid}


def sampled_batches(source: StreamingSource, draws: np.ndarray,
                    draw_labels: np.ndarray | None, *, global_batch_size: int, size: int,
                    scale: tuple[float, float] = (0.08, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                    crop: str = "random_resized", resize: int = 256, seed: int = 0,
                    shuffle_buffer: int = 50_000, process_index: int = 0,
                    process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """len(draws) // global_batch_size training batches of the drawn images.

  Each process takes its rows of every global batch of ``draws``; each image is cropped
  (``crop``="random_resized": RandomResizedCrop(size, scale, ratio), DeepCluster's
  training; "center_random": Resize(resize) + CenterCrop(resize) + RandomCrop(size), the
  linear probes' training) and flipped with probability 1/2 if ``flip``, seeded by
  (seed, position of the draw). Yields dicts with image uint8 [local, size, size, 3] and
  label int32: the draw's label, or with ``draw_labels`` None the image's own label.
  """
  if crop not in ("random_resized", "center_random"):
    raise ValueError(f"sampled_batches: crop={crop!r} is not random_resized or center_random")
  local = global_batch_size // process_count
  steps = len(draws) // global_batch_size
  rows = (np.arange(steps * global_batch_size).reshape(steps, -1)
          [:, process_index * local:(process_index + 1) * local].reshape(-1))
  ids = np.asarray(draws)[rows]
  labels = None if draw_labels is None else np.asarray(draw_labels, np.int32)[rows]
  if source.random_access:
    labels = source.labels[ids] if labels is None else labels
    dataset = tf.data.Dataset.zip((
        _records(source, ids),
        tf.data.Dataset.from_tensor_slices((labels, rows.astype(np.int64)))))
    dataset = dataset.map(lambda record, extra: (record[1], extra[0], extra[1]))
  else:
    counts = tf.constant(np.bincount(ids, minlength=source.num_examples))
    if labels is not None:
      label_of = np.full((source.num_examples,), -1, np.int32)
      label_of[ids] = labels
      if np.any(label_of[ids] != labels):
        raise ValueError("sampled_batches: a tfds source needs one label per image id")
      label_of = tf.constant(label_of)
    dataset = _records(source, np.unique(ids)).flat_map(
        lambda i, encoded, label: tf.data.Dataset.from_tensors(
            (encoded, label if labels is None else tf.gather(label_of, i))
        ).repeat(tf.gather(counts, i)))
    dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
    dataset = dataset.enumerate().map(lambda position, pair: (pair[0], pair[1], position))

  def augment(encoded, label, position):
    key = tf.stack([tf.constant(seed, tf.int64), position])
    image = _decode(encoded)
    if crop == "random_resized":
      image = random_resized_crop(image, size, scale, ratio, key)
    else:
      image = resize_and_center_crop(image, resize, resize)
      image = tf.image.stateless_random_crop(image, (size, size, 3), key + 2)
    if flip:
      image = tf.image.stateless_random_flip_left_right(image, key + 1)
    return {"image": image, "label": label}

  dataset = dataset.map(augment, num_parallel_calls=_AUTOTUNE, deterministic=True)
  return _iterate(_options(dataset.batch(local, drop_remainder=True).take(steps)), source)
