"""Input data for dti_jax: in-memory sources and deterministic tf.data batches.

Sources are loaded by name (`load_source`, names in `SOURCE_NAMES`), including the
procedural multi-object scenes (`procedural`) and the multi-object-datasets
TFRecords (`multi_object`), which carry per-pixel instance masks.
Imports nothing from dti_jax or jax. Importing this package hides GPUs from
TensorFlow (see `pipeline`), so that TF never reserves accelerator memory.
"""

from data_pipelines.pipeline import epoch_permutation
from data_pipelines.pipeline import eval_batches
from data_pipelines.pipeline import num_eval_batches
from data_pipelines.pipeline import num_train_batches
from data_pipelines.pipeline import train_batches
from data_pipelines.sources import ArraySource
from data_pipelines.sources import SOURCE_NAMES
from data_pipelines.sources import SPLITS
from data_pipelines.sources import describe
from data_pipelines.sources import load_source

__all__ = [
    "ArraySource",
    "SOURCE_NAMES",
    "SPLITS",
    "describe",
    "epoch_permutation",
    "eval_batches",
    "load_source",
    "num_eval_batches",
    "num_train_batches",
    "train_batches",
]
