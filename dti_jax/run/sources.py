"""The data of a run as the loop and the evaluators read it (in-memory sources)."""

import dataclasses

import ml_collections

import data_pipelines
from data_pipelines import streaming


def load_source(config: ml_collections.ConfigDict, split: str):
  """The configured data's ``split`` as the loop trains on it (and tools that need the
  training images of a workdir rebuild it): an in-memory ArraySource, or for the
  streamed sources (ImageNet-size image folders, tfds) a StreamingSource."""
  if config.data.name in streaming.STREAMING_NAMES:
    return streaming.load(config.data.name, data_dir=config.data.data_dir or None,
                          tfds_name=config.data.get("tfds_name", ""), split=split)
  return data_pipelines.load_source(config.data.name, data_dir=config.data.data_dir or None,
                                    split=split, image_size=config.data.image_size or None,
                                    num_examples=config.data.get("num_examples") or None,
                                    channels=config.data.get("channels", 0))


def first_images(source: data_pipelines.ArraySource, count: int) -> data_pipelines.ArraySource:
  """The first ``count`` images (all when count <= 0), ground truth included."""
  if count <= 0 or count >= source.num_examples:
    return source
  cut = lambda x: None if x is None else x[:count]
  return dataclasses.replace(source, images=source.images[:count],
                             labels=source.labels[:count], masks=cut(source.masks),
                             semantic=cut(source.semantic))


def image_shape(config: ml_collections.ConfigDict, source) -> tuple[int, int, int]:
  """The shape of a training image as the model sees it (streamed: the crop)."""
  if isinstance(source, streaming.StreamingSource):
    return (config.data.crop_size, config.data.crop_size, 3)
  return source.image_shape


def describe(source) -> str:
  """One line for the console: name, count, shape, classes."""
  if isinstance(source, streaming.StreamingSource):
    return f"{source.location}: {source.num_examples} images (streamed)"
  return data_pipelines.describe(source)
