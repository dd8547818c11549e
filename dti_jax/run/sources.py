"""The data of a run as the loop and the evaluators read it (in-memory sources)."""

import dataclasses

import ml_collections

import data_pipelines


def load_source(config: ml_collections.ConfigDict, split: str) -> data_pipelines.ArraySource:
  """The configured data's ``split`` as the loop trains on it (and tools that need the
  training images of a workdir rebuild it)."""
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
