"""DeepCluster's instance-level retrieval protocol (Oxford5k, Paris6k) as a method without
training steps: its final evaluation is the benchmark.

As the original ``eval_retrieval.py`` (after Gordo et al.'s ``deep_retrieval``): images
resized so that the longer side is ``retrieval.max_side`` (1024), normalised with the
ImageNet mean and std; the frozen network's last conv ReLU map (see ``conv_trunk``);
R-MAC regions at ``retrieval.levels`` (3) levels, max-pooled and L2-normalised; the
PCA-whitening (to ``retrieval.pca_dim`` = 512 dimensions) learned on the regions of
the OTHER dataset's images at the single scale max_side; whitened regions L2-normalised,
summed, L2-normalised; queries cropped to their boxes after the resize; images ranked by
the dot product; mAP by the official rule (``dti_jax.metrics.retrieval``).

Multi-scale (``retrieval.scale_offsets`` = (-250, 0, 250)): the descriptors at longer
sides max_side + offset are summed and L2-normalised, as ``deep_retrieval``'s
``--multires`` does; DeepCluster's script accepts ``--multires`` but ignores it.
The network runs on padded batches of images bucketed by size (one compile per bucket,
``retrieval.pad_multiple``), with exact results (see ``conv_trunk``).
"""

import concurrent.futures
import json
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from data_pipelines import retrieval_datasets, streaming
from dti_jax.methods.deepcluster import conv_trunk, rmac
from dti_jax.methods.deepcluster import network as network_lib
from dti_jax.metrics import retrieval as retrieval_metrics
from dti_jax.run import partition, reporting
from dti_jax.run import scores as scores_lib

BATCH_KEYS = ()


@flax.struct.dataclass
class RetrievalState:
  step: jax.Array
  params: Any               # empty: nothing is trained


def validate(config: ml_collections.ConfigDict, image_shape: tuple[int, ...]) -> None:
  del image_shape
  r = config.retrieval
  for key, value in (("retrieval.weights", r.weights), ("data.data_dir", config.data.data_dir),
                     ("retrieval.whitening_data_dir", r.whitening_data_dir)):
    if not value:
      raise ValueError(f"config.{key} is empty")
  if config.train.num_epochs or config.train.get("num_steps", 0):
    raise ValueError("config.train.num_epochs and num_steps must be 0: retrieval trains nothing")
  sides = [r.max_side + offset for offset in r.scale_offsets]
  if min(sides) <= 0 or r.levels < 1 or r.pca_dim < 1 or r.pad_multiple < 1:
    raise ValueError(f"config.retrieval: max_side + scale_offsets {sides}, levels {r.levels}, "
                     f"pca_dim {r.pca_dim} and pad_multiple {r.pad_multiple} must be positive")
  if jax.process_count() > 1:
    raise ValueError("the retrieval evaluation runs in one process")


def _dataset(config, root):
  r = config.retrieval
  return retrieval_datasets.load(root, image_dir=r.image_dir, gt_dir=r.gt_dir)


def load_source(config: ml_collections.ConfigDict, split: str):
  """The evaluated dataset's database images, for the loop's bookkeeping (no batches)."""
  del split
  if not config.data.data_dir:
    raise ValueError("config.data.data_dir is empty: give the evaluated dataset's folder")
  dataset = _dataset(config, config.data.data_dir)
  return streaming.StreamingSource(
      name="retrieval", location=config.data.data_dir, num_examples=dataset.num_images,
      num_classes=None, paths=np.array([dataset.image_path(n) for n in dataset.image_names]))


def init_arrays(config: ml_collections.ConfigDict, source) -> dict[str, Any]:
  del config, source
  return {}


def create_state(config: ml_collections.ConfigDict, key: jax.Array, arrays) -> RetrievalState:
  del config, key, arrays
  return RetrievalState(step=jnp.int32(0), params={})


def stage_at(config: ml_collections.ConfigDict, step: int, steps_per_epoch: int) -> str:
  del step, steps_per_epoch
  return config.retrieval.dataset


def describe_stage(config: ml_collections.ConfigDict, stage: str) -> str:
  return f"R-MAC retrieval on {stage} with {config.retrieval.weights}"


def stage_scalars(stage: str) -> dict[str, float]:
  del stage
  return {}


def stage_meta(stage: str) -> dict[str, Any]:
  return {"dataset": stage}


def step_function(config: ml_collections.ConfigDict, stage: str, steps_per_epoch: int):
  del config, stage, steps_per_epoch
  raise ValueError("the retrieval method has no training step (config.train.num_epochs=0)")


class Extractor:
  """Region MACs of images read from disk: [R_max, C] per image and its valid rows."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.config, self.mesh = config, mesh
    r, arch = config.retrieval, config.model.arch
    variables = network_lib.load_variables(r.weights)
    sobel = conv_trunk.check_variables(arch, variables["params"],
                                       f"config.retrieval.weights={r.weights}")
    self.trunk = conv_trunk.ConvTrunk(arch=arch, sobel=sobel)
    self.variables = jax.device_put(
        {"params": variables["params"], "batch_stats": variables["batch_stats"]},
        partition.replicated(mesh))
    self.count = rmac.max_regions(r.levels)
    data, repl = partition.data_sharding(mesh), partition.replicated(mesh)
    self.pool = jax.jit(self._pool, in_shardings=(repl, data, data, data, data),
                        out_shardings=data)

  def _pool(self, variables, images, sizes, rows, cols):
    x = network_lib.normalize(self.config, images)
    features = self.trunk.apply(variables, x, sizes)
    return rmac.region_max_pool(features, rows, cols)

  def regions(self, items: list[tuple[str, np.ndarray | None]], max_side: int):
    """Yields (item index, float32 [R_max, C] region MACs, bool [R_max] valid) for the
    images (path, box or None) at ``max_side``, in bucket order."""
    arch, r = self.config.model.arch, self.config.retrieval
    shapes = [retrieval_datasets.output_shape(path, max_side, box) for path, box in items]
    buckets = {}
    for index, (height, width) in enumerate(shapes):
      padded = tuple(-(-side // r.pad_multiple) * r.pad_multiple for side in (height, width))
      buckets.setdefault(padded, []).append(index)
    batch = self.config.eval.batch_size
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      for (height, width), members in sorted(buckets.items()):
        for start in range(0, len(members), batch):
          ids = members[start:start + batch]
          pictures = pool.map(lambda i: retrieval_datasets.read_image(
              items[i][0], max_side, items[i][1]), ids)
          images = np.zeros((batch, height, width, 3), np.uint8)
          sizes = np.ones((batch, 2), np.int32) * np.array([height, width], np.int32)
          map_h, map_w = conv_trunk.output_size(arch, height), conv_trunk.output_size(arch, width)
          rows = np.zeros((batch, self.count, map_h), bool)
          cols = np.zeros((batch, self.count, map_w), bool)
          valid = np.zeros((batch, self.count), bool)
          for row, picture in enumerate(pictures):
            images[row, :picture.shape[0], :picture.shape[1]] = picture
            sizes[row] = picture.shape[:2]
            grid = rmac.region_grid(conv_trunk.output_size(arch, picture.shape[0]),
                                    conv_trunk.output_size(arch, picture.shape[1]), r.levels)
            rows[row], cols[row], valid[row] = rmac.region_masks(grid, map_h, map_w, self.count)
          pooled = np.asarray(self.pool(self.variables, *partition.to_global(
              {"i": images, "s": sizes, "r": rows, "c": cols}, self.mesh).values()))
          for row, index in enumerate(ids):
            yield index, pooled[row], valid[row]


def _database_items(dataset):
  return [(dataset.image_path(name), None) for name in dataset.image_names]


def _query_items(dataset):
  return [(dataset.image_path(image), box)
          for image, box in zip(dataset.query_images, dataset.query_boxes)]


def whitening(extractor: Extractor, dataset) -> tuple[np.ndarray, np.ndarray]:
  """The PCA-whitening learned on the L2-normalised region MACs of ``dataset``'s images."""
  r = extractor.config.retrieval
  vectors = [regions[valid] for _, regions, valid in
             extractor.regions(_database_items(dataset), r.max_side)]
  return rmac.fit_whitening(rmac.l2_normalize(np.concatenate(vectors)), r.pca_dim)


def descriptors(extractor: Extractor, items, whitening_: tuple[np.ndarray, np.ndarray]
                ) -> np.ndarray:
  """float64 [N, D] R-MAC vectors of the items, summed over the scales and L2-normalised."""
  r = extractor.config.retrieval
  total = None
  for offset in r.scale_offsets:
    for index, regions, valid in extractor.regions(items, r.max_side + offset):
      vector = rmac.aggregate(regions[None], valid[None], *whitening_)[0]
      if total is None:
        total = np.zeros((len(items), len(vector)))
      total[index] += vector
  return rmac.l2_normalize(total)


class Evaluator:
  """The benchmark: descriptors of the queries and the database, rankings and mAP."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
    self.config = config
    self.dataset = _dataset(config, config.data.data_dir)
    self.other = _dataset(config, config.retrieval.whitening_data_dir)
    self.extractor = Extractor(config, mesh)

  def rankings(self) -> np.ndarray:
    """int64 [Q, N]: the database ids of each query, most similar first."""
    whiten = whitening(self.extractor, self.other)
    queries = descriptors(self.extractor, _query_items(self.dataset), whiten)
    database = descriptors(self.extractor, _database_items(self.dataset), whiten)
    return np.argsort(-(queries @ database.T), axis=1, kind="stable")

  def scores(self, state, stage=None) -> dict[str, Any]:
    del state, stage
    ranks = self.rankings()
    names = np.array(self.dataset.image_names)
    mean_ap, aps = retrieval_metrics.mean_average_precision(
        [names[row] for row in ranks], self.dataset.positives, self.dataset.junk)
    return {"map": mean_ap, "ap": aps, "rankings": ranks}

  def images(self, state, stage=None) -> dict[str, np.ndarray]:
    del state, stage
    return {}


def create_evaluator(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh,
                     source) -> Evaluator:
  del source
  return Evaluator(config, mesh)


def final_evaluation(evaluator: Evaluator, state: RetrievalState, stage, source, writer,
                     workdir: str) -> dict[str, float]:
  """mAP (and each query's AP) to TensorBoard and final_scores.json; the rankings (database
  names, query names, ids best first) to ``<workdir>/rankings.json``."""
  del source
  scores = evaluator.scores(state)
  dataset = evaluator.dataset
  final = {f"{stage}_map": scores["map"],
           **{f"{stage}_ap/{q}": float(ap) for q, ap in zip(dataset.query_names, scores["ap"])}}
  writer.write_scalars(int(state.step), {f"retrieval/{name}": value
                                         for name, value in final.items()})
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "rankings.json"), "w") as f:
      json.dump({"images": list(dataset.image_names), "queries": list(dataset.query_names),
                 "rankings": scores["rankings"].tolist()}, f)
  scores_lib.write_scores_json(workdir, final)
  reporting.console(f"{stage}: mAP {scores['map']:.4f} over {len(dataset.query_names)} queries")
  return final
