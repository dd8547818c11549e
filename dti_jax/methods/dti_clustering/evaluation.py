"""Evaluation during and after training: clustering scores, image summaries, final outputs."""

import dataclasses
import functools
import os
from typing import Any

import jax
import numpy as np

import data_pipelines
from dti_jax.methods.dti_clustering import trainer
from dti_jax.metrics import clustering as clustering_metrics
from dti_jax.run import partition
from dti_jax.viz import grids
from dti_jax.run import scores as scores_lib


def subset(source: data_pipelines.ArraySource, size: int, seed: int) -> data_pipelines.ArraySource:
  """The periodic-validation subset: ``size`` images without replacement (0 = all)."""
  if size <= 0 or size >= source.num_examples:
    return source
  indices = np.random.RandomState(seed).choice(source.num_examples, size, replace=False)
  return dataclasses.replace(source, images=source.images[indices], labels=source.labels[indices])


class Evaluator:
  """Scores the clustering of a source and renders the image summaries."""

  def __init__(self, config, mesh, source):
    self.config, self.mesh, self.source = config, mesh, source
    self._eval_fns, self._recon_fns = {}, {}
    self.previous_clusters = None
    repl = partition.replicated(mesh)
    # Random probes, like the original's first images of the first shuffled batch
    # (files are often sorted by label, so the first rows would all be one class).
    picks = np.random.default_rng(config.seed).choice(
        source.num_examples, min(config.log.num_probe_images, source.num_examples), replace=False)
    probes = source.images[np.sort(picks)].astype(np.float32) / 255.0
    self.probes = jax.make_array_from_process_local_data(repl, probes)

  def _eval_fn(self, n_active):
    if n_active not in self._eval_fns:
      self._eval_fns[n_active] = jax.jit(functools.partial(
          trainer.eval_step, config=self.config, n_active=n_active))
    return self._eval_fns[n_active]

  def assignments(self, state, n_active: int, source=None) -> dict[str, np.ndarray]:
    """Per-image cluster, distance and label over a source (the periodic subset by default)."""
    source = source or self.source
    outputs = []
    for host_batch in data_pipelines.eval_batches(
        source, global_batch_size=self.config.eval.batch_size,
        process_index=jax.process_index(), process_count=jax.process_count()):
      batch = partition.to_global(
          {"image": host_batch["image"], "label": host_batch["label"],
           "_mask": host_batch["_mask"]}, self.mesh)
      outputs.append(self._eval_fn(n_active)(state, batch))
    outputs = partition.to_host(outputs)
    merged = {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}
    valid = merged.pop("valid").astype(bool)
    return {name: value[valid] for name, value in merged.items()}

  def scores(self, state, n_active: int, source=None,
             assigned: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """acc / avg_acc / nmi / ari (labelled data), loss (mean min distance), nmi_diff.

    nmi_diff (NMI with the previous periodic evaluation, a stability indicator) is only
    computed for the periodic subset, not for a ``source`` given explicitly.
    """
    periodic = source is None
    source = source or self.source
    assigned = assigned or self.assignments(state, n_active, source)
    clusters, labels = assigned["cluster"], assigned["label"]
    k = self.config.model.n_prototypes
    result = {"loss": float(np.mean(assigned["distance"]))}
    if source.num_classes:
      result.update(clustering_metrics.clustering_scores(labels, clusters, source.num_classes, k))
    if periodic:
      if self.previous_clusters is not None:
        result["nmi_diff"] = clustering_metrics.normalized_mutual_info(self.previous_clusters, clusters)
      self.previous_clusters = clusters
    result["proportions"] = clustering_metrics.cluster_proportions(clusters, k)
    return result

  def _recon_fn(self, n_active):
    if n_active not in self._recon_fns:
      self._recon_fns[n_active] = jax.jit(functools.partial(
          trainer.reconstructions, config=self.config, n_active=n_active))
    return self._recon_fns[n_active]

  def images(self, state, n_active: int) -> dict[str, np.ndarray]:
    """Float image summaries in [0, 1] ([H, W, C] each).

    'prototypes': the K prototypes in one row. 'transformed_prototypes': per probe
    image a row with the input, then every prototype warped to it.
    'transformation_steps': per probe a row with the input, its assigned prototype and
    the prototype after each active module in sequence order (each module's effect).
    """
    recon = np.asarray(jax.device_get(self._recon_fn(n_active)(state, self.probes)))
    protos = np.asarray(jax.device_get(state.params["clusters"]["prototypes"]))
    probes = np.asarray(jax.device_get(self.probes))
    k = protos.shape[0]
    rows = np.concatenate([probes[:, None], recon], axis=1).reshape((-1,) + protos.shape[1:])
    assigned = np.argmin(((recon - probes[:, None]) ** 2).mean(axis=(2, 3, 4)), axis=1)
    steps = [probes, protos[assigned]]
    for active in range(2, n_active + 1):
      partial = recon if active == n_active else np.asarray(
          jax.device_get(self._recon_fn(active)(state, self.probes)))
      steps.append(partial[np.arange(len(probes)), assigned])
    steps = np.stack(steps, axis=1).reshape((-1,) + protos.shape[1:])
    scale = max(1, 64 // protos.shape[1])
    images = {"prototypes": grids.upscale(grids.make_grid(protos, k), scale),
              "transformed_prototypes": grids.upscale(grids.make_grid(rows, k + 1), scale),
              "transformation_steps": grids.upscale(grids.make_grid(steps, n_active + 1), scale)}
    clusters = state.params["clusters"]
    if "sigmas" in clusters:  # DTI-GMM: variance maps s^2 + v_min, scaled by their maximum
      variances = np.asarray(jax.device_get(clusters["sigmas"])) ** 2 + self.config.model.var_min
      images["variances"] = grids.upscale(grids.make_grid(variances / variances.max(), k), scale)
    return images

  def cluster_examples(self, state, n_active: int, source, assigned: dict[str, np.ndarray],
                       per_cluster: int = 5) -> dict[int, dict[str, np.ndarray]]:
    """Per cluster: its ``per_cluster`` lowest-distance members and as many random ones,
    with the prototype warped to each ({k: {'top_raw', 'top_tsf', 'random_raw', 'random_tsf'}})."""
    assign_fn = jax.jit(functools.partial(trainer.assign, config=self.config,
                                          n_active=n_active))
    rng = np.random.default_rng(self.config.seed)
    examples = {}
    for k in range(self.config.model.n_prototypes):
      members = np.flatnonzero(assigned["cluster"] == k)
      if not len(members):
        continue
      picks = {"top": members[np.argsort(assigned["distance"][members])[:per_cluster]],
               "random": rng.choice(members, min(per_cluster, len(members)), replace=False)}
      examples[k] = {}
      for name, indices in picks.items():
        raw = source.images[indices].astype(np.float32) / 255.0
        examples[k][f"{name}_raw"] = raw
        examples[k][f"{name}_tsf"] = np.asarray(jax.device_get(assign_fn(state, raw)["reconstruction"]))
    return examples


def save_final_outputs(workdir: str, state, scores: dict[str, Any],
                       examples: dict[int, dict[str, np.ndarray]]) -> None:
  """Prototype PNGs and evolution GIFs, per-cluster examples, cluster sizes, final scores."""
  if jax.process_index() != 0:
    return
  protos = np.asarray(jax.device_get(state.params["clusters"]["prototypes"]))
  folder = os.path.join(workdir, "prototypes")
  os.makedirs(folder, exist_ok=True)
  for k, proto in enumerate(protos):
    grids.save_png(os.path.join(folder, f"prototype{k}.png"), proto)
  grids.save_png(os.path.join(workdir, "prototypes.png"),
                 grids.upscale(grids.make_grid(protos, len(protos)), 4))
  scores_lib.evolution_gifs(workdir)
  for k, pictures in examples.items():
    cluster_dir = os.path.join(workdir, "clusters", f"cluster{k}")
    os.makedirs(cluster_dir, exist_ok=True)
    for name, images in pictures.items():
      kind, what = name.split("_")
      for j, image in enumerate(images):
        grids.save_png(os.path.join(cluster_dir, f"{kind}{j}_{what}.png"), image)
  with open(os.path.join(workdir, "cluster_sizes.tsv"), "w") as f:
    f.write("cluster\tproportion\n")
    f.writelines(f"{k}\t{p:.6f}\n" for k, p in enumerate(scores["proportions"]))
  scores_lib.write_scores_json(workdir, scores)


def examples_grid(examples: dict[int, dict[str, np.ndarray]], prototypes: np.ndarray) -> np.ndarray:
  """One row per cluster: prototype, then (member, warped prototype) pairs of the top members."""
  rows = []
  width = 1 + 2 * max((len(e["top_raw"]) for e in examples.values()), default=0)
  blank = np.ones_like(prototypes[0])
  for k, proto in enumerate(prototypes):
    row = [proto]
    if k in examples:
      for raw, tsf in zip(examples[k]["top_raw"], examples[k]["top_tsf"]):
        row += [raw, tsf]
    rows += row + [blank] * (width - len(row))
  scale = max(1, 64 // prototypes.shape[1])
  return grids.upscale(grids.make_grid(np.stack(rows), width), scale)


def create_evaluator(config, mesh, source) -> Evaluator:
  """The periodic evaluator of DTI-Clustering: a validation subset of the training split."""
  return Evaluator(config, mesh, subset(source, config.eval.subset_size,
                                                config.eval.subset_seed))


def final_evaluation(evaluator: Evaluator, state, stage, source, writer, workdir: str
                     ) -> dict[str, Any]:
  """Scores ``source``, writes the final summaries and outputs; returns the scores."""
  assigned = evaluator.assignments(state, stage, source)
  final = evaluator.scores(state, stage, source, assigned)
  examples = evaluator.cluster_examples(state, stage, source, assigned)
  protos = np.asarray(jax.device_get(state.params["clusters"]["prototypes"]))
  images = evaluator.images(state, stage)
  images["cluster_examples"] = examples_grid(examples, protos)
  step = int(state.step)
  scores_lib.write_eval(writer, step, "final", final, images)
  scores_lib.save_frame(workdir, step, images)
  save_final_outputs(workdir, state, final, examples)
  return final
