"""Deterministic train and eval batches over an in-memory `ArraySource`.

The order of an epoch is a permutation that depends only on (seed, epoch), computed
with numpy on the host, so a resumed run skips the batches it already consumed
instead of checkpointing a stateful `tf.data` iterator. `tf.data` only gathers the
rows of each batch, converts uint8 to float32 and prefetches.

Multi-process: every process computes the same global order and keeps its own
contiguous slice of each global batch, rows [p * local, (p + 1) * local), so that
`jax.make_array_from_process_local_data` reassembles exactly the global batch.

Yielded batches are dicts of host numpy arrays:
  image  float32 [local, H, W, C], uint8 / 255, in [0, 1]
  label  int32 [local], -1 where unknown
  mask   int32 [local, H, W], only for sources with masks: instance ids, 0 = background
  _index int64 [local], dataset index of each row
  _mask  bool [local], eval only: False on padding rows
"""

from typing import Iterator

import absl.logging
import numpy as np
import tensorflow as tf

from data_pipelines.sources import ArraySource

Batch = dict[str, np.ndarray]


def _hide_gpus_from_tensorflow() -> None:
  """Keeps TF on the CPU so that it never reserves accelerator memory JAX needs."""
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError as error:  # TF's runtime already started: too late to change.
    absl.logging.warning("TensorFlow may still see GPUs: %s", error)


_hide_gpus_from_tensorflow()


def num_train_batches(source: ArraySource, global_batch_size: int) -> int:
  """Batches per training epoch, N // global_batch_size (the incomplete one is dropped)."""
  _check_positive("global_batch_size", global_batch_size)
  return source.num_examples // global_batch_size


def num_eval_batches(source: ArraySource, global_batch_size: int,
                     limit: int | None = None) -> int:
  """Batches of `eval_batches`, ceil(n / global_batch_size) with n = limit or N."""
  _check_positive("global_batch_size", global_batch_size)
  return -(-_eval_size(source, limit) // global_batch_size)


def epoch_permutation(num_examples: int, *, seed: int, epoch: int) -> np.ndarray:
  """int64 [N]: the training order of `epoch`, a pure function of (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def train_batches(source: ArraySource, *, global_batch_size: int, seed: int,
                  epoch: int, start_batch: int = 0, process_index: int = 0,
                  process_count: int = 1, prefetch: int = 2) -> Iterator[Batch]:
  """One shuffled training epoch, this process's share of every global batch.

  The last incomplete global batch is dropped so that every batch has the same
  static shape under jit (at most global_batch_size - 1 images skipped per epoch,
  different ones each epoch).

  Args:
    source: The dataset.
    global_batch_size: Rows per global batch, summed over processes.
    seed: Run seed; with `epoch` it fixes the order.
    epoch: Epoch number (0-based).
    start_batch: Number of global batches already consumed in this epoch (resume);
      they are skipped without being gathered.
    process_index: This process, in [0, process_count).
    process_count: Number of processes sharing each global batch.
    prefetch: Batches prepared ahead of the consumer.

  Yields:
    `num_train_batches(source, global_batch_size) - start_batch` dicts with keys
    image [local, H, W, C], label [local], _index [local], plus mask
    [local, H, W] when source.masks is not None, where
    local = global_batch_size // process_count.

  Raises:
    ValueError: global_batch_size not divisible by process_count, or an argument
      out of range.
  """
  local = _local_batch_size(global_batch_size, process_index, process_count)
  num_batches = num_train_batches(source, global_batch_size)
  if not 0 <= start_batch <= num_batches:
    raise ValueError(
        f"start_batch={start_batch} outside [0, {num_batches}] for "
        f"{source.num_examples} examples and global_batch_size={global_batch_size}")
  order = epoch_permutation(source.num_examples, seed=seed, epoch=epoch)
  global_batches = order[:num_batches * global_batch_size].reshape(
      num_batches, global_batch_size)[start_batch:]
  indices = global_batches[:, process_index * local:(process_index + 1) * local]
  mask = np.ones(indices.shape, dtype=bool)
  return _batches(source, indices, mask, prefetch=prefetch, with_mask=False)


def eval_batches(source: ArraySource, *, global_batch_size: int,
                 process_index: int = 0, process_count: int = 1,
                 limit: int | None = None, prefetch: int = 2) -> Iterator[Batch]:
  """The first `limit` (default all) examples in dataset order, padded to full batches.

  Every process runs the same number of batches (a collective step would otherwise
  hang); rows past the end are zeros (image, label, mask and _index) with _mask False,
  the big_vision convention. Scores must only count rows where _mask is True.

  Args:
    source: The dataset.
    global_batch_size: Rows per global batch, summed over processes.
    process_index: This process, in [0, process_count).
    process_count: Number of processes sharing each global batch.
    limit: Evaluate only examples [0, limit); None for all N.
    prefetch: Batches prepared ahead of the consumer.

  Yields:
    `num_eval_batches(source, global_batch_size, limit)` dicts with keys image
    [local, H, W, C], label [local], _index [local], _mask [local], plus mask
    [local, H, W] when source.masks is not None.

  Raises:
    ValueError: global_batch_size not divisible by process_count, or limit not in
      [1, N].
  """
  local = _local_batch_size(global_batch_size, process_index, process_count)
  size = _eval_size(source, limit)
  num_batches = num_eval_batches(source, global_batch_size, limit)
  positions = np.arange(num_batches * global_batch_size, dtype=np.int64)
  mask = positions < size
  indices = np.where(mask, positions, 0)
  rows = slice(process_index * local, (process_index + 1) * local)
  indices = indices.reshape(num_batches, global_batch_size)[:, rows]
  mask = mask.reshape(num_batches, global_batch_size)[:, rows]
  return _batches(source, indices, mask, prefetch=prefetch, with_mask=True)


def _batches(source: ArraySource, indices: np.ndarray, mask: np.ndarray, *,
             prefetch: int, with_mask: bool) -> Iterator[Batch]:
  """tf.data over the rows of `indices` [num_batches, local]: gather, convert, prefetch."""
  _check_positive("prefetch", prefetch)
  images = tf.convert_to_tensor(source.images)
  labels = tf.convert_to_tensor(source.labels)
  masks = None if source.masks is None else tf.convert_to_tensor(source.masks)

  def gather(index, valid):
    batch = {"image": tf.cast(tf.gather(images, index), tf.float32) / 255.0,
             "label": tf.gather(labels, index)}
    if masks is not None:
      batch["mask"] = tf.cast(tf.gather(masks, index), tf.int32)
    if not with_mask:
      return {**batch, "_index": index}
    # Padding rows carry zeros everywhere, not a copy of example 0.
    batch = {key: tf.where(tf.reshape(valid, [-1] + [1] * (value.shape.rank - 1)),
                           value, tf.zeros_like(value))
             for key, value in batch.items()}
    return {**batch, "_index": tf.where(valid, index, tf.zeros_like(index)),
            "_mask": valid}

  dataset = tf.data.Dataset.from_tensor_slices(
      (indices.astype(np.int64), mask))
  # The gather is vectorised over a batch: one sequential map and a small prefetch
  # buffer are enough, and keep tf.data from spreading threads over a small CPU.
  dataset = dataset.map(gather)
  dataset = dataset.prefetch(prefetch)
  options = tf.data.Options()
  options.deterministic = True
  options.autotune.enabled = False
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  dataset = dataset.with_options(options)
  return dataset.as_numpy_iterator()


def _eval_size(source: ArraySource, limit: int | None) -> int:
  if limit is None:
    return source.num_examples
  if not 1 <= limit <= source.num_examples:
    raise ValueError(
        f"limit={limit} outside [1, {source.num_examples}] for {source.name!r}")
  return limit


def _local_batch_size(global_batch_size: int, process_index: int,
                      process_count: int) -> int:
  _check_positive("global_batch_size", global_batch_size)
  _check_positive("process_count", process_count)
  if global_batch_size % process_count:
    raise ValueError(
        f"global_batch_size={global_batch_size} is not divisible by "
        f"process_count={process_count}")
  if not 0 <= process_index < process_count:
    raise ValueError(
        f"process_index={process_index} outside [0, {process_count})")
  return global_batch_size // process_count


def _check_positive(name: str, value: int) -> None:
  if value < 1:
    raise ValueError(f"{name}={value} must be a positive integer")
