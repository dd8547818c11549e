"""The training loop: step counting, curriculum stages, eval/log/checkpoint cadence, resume.

This is the only impure place (files, clocks, host transfers) and the only place that
jits step functions. Everything a resumed run needs follows from the checkpointed
state: the data position is (epoch, batch) = divmod(step, steps_per_epoch), the
epoch's order is a function of (seed, epoch), the curriculum stage and learning rate
are functions of the step, and per-step randomness is fold_in(key, step).
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

import data_pipelines
from dti_jax.metrics import clustering as clustering_metrics
from dti_jax.trainers import checkpointing, dti_clustering, partition, reporting
from dti_jax.viz import grids

METHODS = {"dti_clustering": dti_clustering}


def _method(config: ml_collections.ConfigDict):
  if config.method not in METHODS:
    raise ValueError(f"config.method={config.method!r} is not one of {sorted(METHODS)}")
  return METHODS[config.method]


def _subset(source: data_pipelines.ArraySource, size: int, seed: int) -> data_pipelines.ArraySource:
  """The periodic-validation subset: ``size`` images without replacement (0 = all)."""
  if size <= 0 or size >= source.num_examples:
    return source
  indices = np.random.RandomState(seed).choice(source.num_examples, size, replace=False)
  return dataclasses.replace(source, images=source.images[indices], labels=source.labels[indices])


class Evaluator:
  """Scores the clustering of a source and renders the image summaries."""

  def __init__(self, config, method, mesh, source):
    self.config, self.method, self.mesh, self.source = config, method, mesh, source
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
          self.method.eval_step, config=self.config, n_active=n_active))
    return self._eval_fns[n_active]

  def scores(self, state, n_active: int, source=None) -> dict[str, float]:
    """acc / avg_acc / nmi / ari (labelled data), loss (mean min distance), nmi_diff.

    nmi_diff (NMI with the previous periodic evaluation, a stability indicator) is only
    computed for the periodic subset, not for a ``source`` given explicitly.
    """
    periodic = source is None
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
    valid = merged["valid"].astype(bool)
    clusters, labels = merged["cluster"][valid], merged["label"][valid]
    k = self.config.model.n_prototypes
    result = {"loss": float(np.mean(merged["distance"][valid]))}
    if source.num_classes:
      result.update(clustering_metrics.clustering_scores(labels, clusters, source.num_classes, k))
    if periodic:
      if self.previous_clusters is not None:
        result["nmi_diff"] = clustering_metrics.normalized_mutual_info(self.previous_clusters, clusters)
      self.previous_clusters = clusters
    result["proportions"] = clustering_metrics.cluster_proportions(clusters, k)
    return result

  def images(self, state, n_active: int) -> dict[str, np.ndarray]:
    """'prototypes' (one row of K) and 'transformed_prototypes' (input + K warps per row)."""
    if n_active not in self._recon_fns:
      self._recon_fns[n_active] = jax.jit(functools.partial(
          self.method.reconstructions, config=self.config, n_active=n_active))
    recon = np.asarray(jax.device_get(self._recon_fns[n_active](state, self.probes)))
    protos = np.asarray(jax.device_get(state.params["clusters"]["prototypes"]))
    probes = np.asarray(jax.device_get(self.probes))
    k = protos.shape[0]
    rows = np.concatenate([probes[:, None], recon], axis=1).reshape((-1,) + protos.shape[1:])
    scale = max(1, 64 // protos.shape[1])
    return {"prototypes": grids.upscale(grids.make_grid(protos, k), scale),
            "transformed_prototypes": grids.upscale(grids.make_grid(rows, k + 1), scale)}


def _format_scores(scores: dict[str, Any]) -> str:
  names = [n for n in ("acc", "nmi", "ari", "loss", "nmi_diff") if n in scores]
  return " ".join(f"{n} {scores[n]:.4f}" for n in names)


def _write_eval(writer, step, prefix, scores, images=None):
  scalars = {f"{prefix}/{n}": v for n, v in scores.items() if n != "proportions"}
  scalars.update({f"{prefix}/proportion_{k}": p for k, p in enumerate(scores["proportions"])})
  writer.write_scalars(step, scalars)
  if images is not None:
    writer.write_images(step, {name: grids.to_uint8(img)[None] for name, img in images.items()})


def _save_final_outputs(workdir, state, scores):
  if jax.process_index() != 0:
    return
  protos = np.asarray(jax.device_get(state.params["clusters"]["prototypes"]))
  folder = os.path.join(workdir, "prototypes")
  os.makedirs(folder, exist_ok=True)
  for k, proto in enumerate(protos):
    grids.save_png(os.path.join(folder, f"prototype{k}.png"), proto)
  grids.save_png(os.path.join(workdir, "prototypes.png"),
                 grids.upscale(grids.make_grid(protos, len(protos)), 4))
  with open(os.path.join(workdir, "final_scores.json"), "w") as f:
    json.dump({n: (v.tolist() if isinstance(v, np.ndarray) else v) for n, v in scores.items()},
              f, indent=1)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       num_devices: int | None = None) -> dict[str, Any]:
  """Trains (or resumes) the configured method in ``workdir``; returns the final scores."""
  method = _method(config)
  source = data_pipelines.load_source(config.data.name, data_dir=config.data.data_dir or None,
                                      split=config.data.split)
  method.validate(config, source.image_shape)
  mesh = partition.create_mesh(num_devices)
  batch_size = config.train.batch_size
  partition.check_batch_size(batch_size, mesh, "config.train.batch_size")
  partition.check_batch_size(config.eval.batch_size, mesh, "config.eval.batch_size")
  steps_per_epoch = data_pipelines.num_train_batches(source, batch_size)
  if steps_per_epoch == 0:
    raise ValueError(f"config.train.batch_size={batch_size} exceeds the dataset size "
                     f"({source.num_examples} images of {config.data.name})")
  total_steps = config.train.num_epochs * steps_per_epoch
  reporting.console(f"data: {data_pipelines.describe(source)}; {steps_per_epoch} steps/epoch, "
                    f"{total_steps} steps on {mesh.size} device(s) ({jax.devices()[0].platform})")

  repl, data_sh = partition.replicated(mesh), partition.data_sharding(mesh)
  init_key, train_key = jax.random.split(jax.random.key(config.seed))
  protos = method.initial_prototypes(source.images, config.model.n_prototypes, config.seed)
  state = jax.jit(functools.partial(method.create_state, config), out_shardings=repl)(
      init_key, protos)
  manager = checkpointing.create_manager(workdir)
  restored = checkpointing.restore_latest(manager, state)
  if restored is not None:
    state, _ = restored
    reporting.console(f"resumed from {workdir} at step {int(state.step)}")
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json(indent=1))

  writer = reporting.create_writer(workdir)
  evaluator = Evaluator(config, method, mesh,
                        _subset(source, config.eval.subset_size, config.eval.subset_seed))
  step_fns = {}

  def step_fn(n_active):
    if n_active not in step_fns:
      step_fns[n_active] = jax.jit(
          functools.partial(method.train_step, config=config, n_active=n_active,
                            steps_per_epoch=steps_per_epoch),
          in_shardings=(repl, data_sh), out_shardings=(repl, repl), donate_argnums=0)
    return step_fns[n_active]

  reassign_fn = jax.jit(functools.partial(method.reassign_clusters, config=config),
                        out_shardings=(repl, repl), donate_argnums=0)
  step = int(state.step)
  progress = reporting.Progress(total_steps, step)
  loss_sum, loss_count, n_active = 0.0, 0, None
  while step < total_steps:
    epoch, start_batch = divmod(step, steps_per_epoch)
    for host_batch in data_pipelines.train_batches(
        source, global_batch_size=batch_size, seed=config.seed, epoch=epoch,
        start_batch=start_batch, process_index=jax.process_index(),
        process_count=jax.process_count()):
      stage = method.stage_at(config, step, steps_per_epoch)
      if stage != n_active:
        n_active = stage
        active = config.model.transformation_sequence.split("_")[:n_active]
        reporting.console(f"step {step}: curriculum stage {n_active}, active: {'+'.join(active)}")
      batch = partition.to_global({"image": host_batch["image"]}, mesh)
      state, metrics = step_fn(n_active)(state, batch)
      step += 1
      loss_sum, loss_count = loss_sum + metrics["loss"], loss_count + 1

      if config.model.reassign_clusters and step % config.train.check_cluster_every_steps == 0:
        state, moved = reassign_fn(state, jax.random.fold_in(train_key, step))
        moved = int(moved)
        writer.write_scalars(step, {"train/reassigned_clusters": moved})
        if moved:
          reporting.console(f"step {step}: reassigned {moved} small cluster(s)")

      if step % config.log.every_steps == 0 or step == total_steps:
        loss = float(loss_sum) / loss_count
        if not np.isfinite(loss):
          raise RuntimeError(f"loss is {loss} between steps {step - loss_count + 1} and {step}")
        speed = progress.update(step)
        writer.write_scalars(step, {"train/loss": loss, "train/learning_rate":
                                    float(metrics["learning_rate"]),
                                    "train/active_modules": n_active, **{
                                        f"train/{n}": v for n, v in speed.items()}})
        reporting.console(f"step {step}/{total_steps} epoch {step / steps_per_epoch:.1f} "
                          f"loss {loss:.5f} | {speed['steps_per_sec']:.2f} steps/s | "
                          f"ETA {speed['eta_minutes']:.1f} min")
        loss_sum, loss_count = 0.0, 0

      if step % config.eval.every_steps == 0 and step < total_steps:
        start = time.perf_counter()
        scores = evaluator.scores(state, n_active)
        _write_eval(writer, step, "eval", scores, evaluator.images(state, n_active))
        reporting.console(f"eval @ step {step} ({progress.elapsed_minutes():.1f} min): "
                          f"{_format_scores(scores)}")
        progress.pause(time.perf_counter() - start)

      if step % config.log.checkpoint_every_steps == 0 or step == total_steps:
        start = time.perf_counter()
        checkpointing.save(manager, step, state, {"step": step, "n_active": n_active})
        progress.pause(time.perf_counter() - start)
      if step >= total_steps:
        break

  final_stage = method.stage_at(config, max(total_steps - 1, 0), steps_per_epoch)
  final = evaluator.scores(state, final_stage, source=source)
  _write_eval(writer, total_steps, "final", final, evaluator.images(state, final_stage))
  reporting.console(f"final ({source.num_examples} images, "
                    f"{progress.elapsed_minutes():.1f} min): {_format_scores(final)}")
  _save_final_outputs(workdir, state, final)
  manager.wait_until_finished()
  manager.close()
  writer.flush()
  writer.close()
  return final
