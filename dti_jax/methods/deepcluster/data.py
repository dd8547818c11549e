"""DeepCluster's data: in-memory or streamed (ImageNet) images, in dataset order for the
feature pass and in the sampler's draw order for training, each process its rows."""

import itertools
from typing import Iterator

import jax
import ml_collections
import numpy as np

from data_pipelines import streaming


def ordered_image_batches(config: ml_collections.ConfigDict, source,
                          batch_size: int | None = None, ids: np.ndarray | None = None,
                          crop_size: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Every image once in dataset order, this process's rows of each global batch.

  Yields dicts with ``image`` uint8 [local, H, W, C] as the network sees it in eval mode
  (streamed images: Resize(data.resize_size) + CenterCrop(``crop_size``, default
  data.crop_size)), ``id`` int64 (the image's index), ``label`` int32 (-1 when unknown)
  and ``_mask`` bool (False on the zero rows that pad the last batch). ``ids`` picks a
  subset of an in-memory source, in that order.
  """
  batch = batch_size or config.eval.batch_size
  batch += -batch % jax.device_count()
  if isinstance(source, streaming.StreamingSource):
    yield from streaming.ordered_batches(
        source, global_batch_size=batch, resize=config.data.resize_size,
        crop=crop_size or config.data.crop_size, process_index=jax.process_index(),
        process_count=jax.process_count())
    return
  ids = np.arange(source.num_examples) if ids is None else np.asarray(ids)
  local = batch // jax.process_count()
  first = jax.process_index() * local
  labels = (source.labels if source.num_classes is not None
            else np.full((source.num_examples,), -1, np.int32))
  for start in range(0, len(ids), batch):
    rows = np.arange(start + first, start + first + local)
    valid = rows < len(ids)
    picked = ids[np.where(valid, rows, 0)]
    images = np.where(valid[:, None, None, None], source.images[picked], 0).astype(np.uint8)
    yield {"image": images, "id": np.where(valid, picked, 0),
           "label": np.where(valid, labels[picked], -1).astype(np.int32), "_mask": valid}


def training_batches(config: ml_collections.ConfigDict, source, draws: np.ndarray,
                     draw_labels: np.ndarray, epoch: int, start_batch: int = 0
                     ) -> Iterator[dict[str, np.ndarray]]:
  """This process's rows of len(draws) // batch_size training batches, in draw order,
  from batch ``start_batch`` on (a run resumed in the middle of an epoch).

  In-memory images come un-augmented (the train step crops them on device); streamed
  images come with RandomResizedCrop(data.crop_size, train.crop_scale) and the flip
  (the skipped batches of a resumed epoch are read and dropped).
  """
  batch = config.train.batch_size
  local = batch // jax.process_count()
  if isinstance(source, streaming.StreamingSource):
    yield from itertools.islice(streaming.sampled_batches(
        source, draws, draw_labels, global_batch_size=batch, size=config.data.crop_size,
        scale=tuple(config.train.crop_scale), flip=config.train.flip,
        seed=config.seed * 100_003 + epoch, shuffle_buffer=config.data.shuffle_buffer,
        process_index=jax.process_index(), process_count=jax.process_count()),
        start_batch, None)
    return
  first = jax.process_index() * local
  for step in range(start_batch, len(draws) // batch):
    rows = slice(step * batch + first, step * batch + first + local)
    yield {"image": source.images[draws[rows]], "label": draw_labels[rows]}
