"""Deep Latent Particles' scores and pictures on held-out images.

Scores (spec section 9), eval-mode BN, deterministic encoding (z = mu, z_f = mu_f) and
learned presences: PSNR of the clamped reconstruction (mean over images); on data with
instance masks, object recall@r (all particles, and active ones: obj_on > 0.5) and
precision@r of the active particles against the mask centroids, with the recall of as
many uniformly random points beside them; and the validation "ELBO" (spec 6.1: the
training objective with sampled particles and the background particle in the
Chamfer-KL, lower is better) over the full batches. The procedural shapes are scored
on a held-out draw (``eval.heldout_seed``), CelebA on the first MAFL test faces (none is
in its training split), other data on the first images of split ``eval.split`` (e.g.
"eval": the validation frames), else of the training data. Eval mode first re-estimates
the BN running statistics at the current weights on ``eval.bn_recalibration_batches``
training batches (`dlp.recalibrate_batch_stats`; 0: the training EMAs).

With ``eval.mafl`` (CelebA, spec 6.2) the scores add the MAFL landmark regressions
mafl_error_mu, mafl_error_mu_logvar and mafl_error_all (%, `dti_jax.methods.dlp.mafl`):
deterministic eval-mode encodings of the MAFL training faces (the first
``eval.mafl_train_size``, 0: all 19,000) fitted by least squares, scored on the MAFL
test faces (``eval.mafl_test_size``, 0: all 1,000); with ``eval.mafl_topk`` = k > 0 also
on the k most and the k least confident particles (the original's top-k evaluation).
"""

import dataclasses
import functools
from typing import Any, Iterator

import jax
import numpy as np

import data_pipelines
from data_pipelines import shapes
from dti_jax.methods.dlp import keypoints, mafl
from dti_jax.methods.dlp import losses as dlp_losses
from dti_jax.methods.dlp import trainer as dlp
from dti_jax.run import partition
from dti_jax.methods.dlp import pictures as particle_viz
from dti_jax.viz import grids
from dti_jax.run import scores as scores_lib, sources

PANEL_IMAGES = 8
GLIMPSE_IMAGES = 4
SCORED_OUTPUTS = ("mu", "logvar", "reconstruction", "background", "objects", "obj_on")
PICTURED_OUTPUTS = SCORED_OUTPUTS + ("glimpses", "decoded_glimpses", "decoded_alphas",
                                     "alphas", "gaussian_maps")
ENCODING = ("mu", "logvar", "mu_features", "logvar_features")   # what MAFL regresses from


def _celeba(config, split: str, count: int) -> data_pipelines.ArraySource:
  return data_pipelines.load_source("celeba_dve", data_dir=config.data.data_dir or None,
                                    split=split, image_size=config.data.image_size or None,
                                    num_examples=count or None)


def heldout_source(config, source) -> data_pipelines.ArraySource:
  e = config.eval
  if config.data.name.endswith("_procedural"):
    return data_pipelines.load_source(config.data.name, num_examples=e.num_images,
                                      seed=e.heldout_seed)
  if config.data.name == "celeba_dve":
    return dataclasses.replace(_celeba(config, "mafl_test", e.num_images), landmarks=None)
  if e.get("split", ""):  # e.g. the validation frames of CLEVRER and Traffic
    source = data_pipelines.load_source(
        config.data.name, data_dir=config.data.data_dir or None, split=e.split,
        image_size=config.data.get("image_size") or None)
  count = min(e.num_images, source.num_examples) if e.num_images > 0 else source.num_examples
  return sources.first_images(source, count)


def mafl_sources(config) -> tuple[data_pipelines.ArraySource, data_pipelines.ArraySource
                                  ] | None:
  """The MAFL (train, test) faces with landmarks when ``config.eval.mafl``, else None."""
  e = config.eval
  if not e.get("mafl", False):
    return None
  if config.data.name != "celeba_dve":
    raise ValueError(f"config.eval.mafl=True needs config.data.name='celeba_dve', "
                     f"not {config.data.name!r}")
  return (_celeba(config, "mafl_train", e.get("mafl_train_size", 0)),
          _celeba(config, "mafl_test", e.get("mafl_test_size", 0)))


def recalibration_batches(source: data_pipelines.ArraySource, batch_size: int,
                          count: int) -> Iterator[np.ndarray]:
  """This process's rows of the ``count`` global batches the BN statistics are
  re-estimated on: full training batches in dataset order, again from the start if there
  are fewer (none without a full one), float32 in [0, 1]."""
  done = 0
  while done < count:
    full_batches = 0
    for host_batch in data_pipelines.eval_batches(
        source, global_batch_size=batch_size, process_index=jax.process_index(),
        process_count=jax.process_count()):
      if done == count or not host_batch["_mask"].all():
        break
      yield host_batch["image"]
      done, full_batches = done + 1, full_batches + 1
    if not full_batches:
      break


class DLPEvaluator:
  """Scores a held-out set and renders the particle pictures."""

  def __init__(self, config, mesh, source: data_pipelines.ArraySource,
               training_source: data_pipelines.ArraySource | None = None):
    self.config, self.mesh, self.source = config, mesh, source
    self.training_source = training_source
    self._recalibrated = (None, None)    # (step, state) of the last recalibration
    self.centres = None if source.masks is None else shapes.object_centroids(source.masks)
    self.mafl = mafl_sources(config)
    repl, data = partition.replicated(mesh), partition.data_sharding(mesh)
    self._deterministic = jax.jit(functools.partial(dlp.eval_outputs, config=config),
                                  in_shardings=(repl, data), out_shardings=data)
    self._update_statistics = jax.jit(
        functools.partial(dlp.updated_batch_stats, config=config),
        in_shardings=(repl, data, repl), out_shardings=repl)

    def encode(state, images):
      out = dlp.create_model(config).apply(
          {"params": state.params, "batch_stats": state.batch_stats}, images, train=False,
          deterministic=True, method="encode", rngs={"sample": jax.random.key(0)})
      return {name: out[name] for name in ENCODING}

    self._encode = jax.jit(encode, in_shardings=(repl, data), out_shardings=data)

    def elbo(state, images, key):
      out = dlp.eval_outputs(state, images, config=config, deterministic=False, key=key)
      total, _ = dlp_losses.loss(out, images, phase="normal", include_background_in_ckl=True,
                                 **dlp.loss_kwargs(config))
      return total

    self._elbo = jax.jit(elbo, in_shardings=(repl, data, repl), out_shardings=repl)

  def outputs(self, state, source=None, with_elbo: bool = False,
              keep: tuple[str, ...] = SCORED_OUTPUTS) -> dict[str, np.ndarray]:
    """Deterministic outputs of every image of ``source`` (default: the held-out set) as
    host arrays, and with ``with_elbo`` the validation ELBO."""
    source = source or self.source
    results, elbos = [], []
    for index, host_batch in enumerate(data_pipelines.eval_batches(
        source, global_batch_size=self.config.eval.batch_size,
        process_index=jax.process_index(), process_count=jax.process_count())):
      batch = partition.to_global({"image": host_batch["image"]}, self.mesh)
      out = self._deterministic(state, batch["image"])
      results.append({name: out[name] for name in keep if name in out})
      if with_elbo and host_batch["_mask"].all():
        elbos.append(self._elbo(state, batch["image"], jax.random.key(index)))
    results = partition.to_host(results)
    count = source.num_examples
    merged = {name: np.concatenate([r[name] for r in results])[:count] for name in results[0]}
    if elbos:
      merged["elbo"] = float(np.mean(jax.device_get(elbos)))
    return merged

  def encodings(self, state, source: data_pipelines.ArraySource) -> dict[str, np.ndarray]:
    """Deterministic eval-mode ``ENCODING`` arrays [N, K+1, d] of every image of source."""
    results = []
    for host_batch in data_pipelines.eval_batches(
        source, global_batch_size=self.config.eval.batch_size,
        process_index=jax.process_index(), process_count=jax.process_count()):
      batch = partition.to_global({"image": host_batch["image"]}, self.mesh)
      results.append(self._encode(state, batch["image"]))
    results = partition.to_host(results)
    return {name: np.concatenate([r[name] for r in results])[:source.num_examples]
            for name in ENCODING}

  def mafl_scores(self, state) -> dict[str, float]:
    """The three MAFL regression errors (%); empty without ``eval.mafl``."""
    if self.mafl is None:
      return {}
    train, test = self.mafl
    train_particles, test_particles = self.encodings(state, train), self.encodings(state, test)
    errors = mafl.mafl_errors(train_particles, train.landmarks, test_particles,
                              test.landmarks)
    topk = self.config.eval.get("mafl_topk", 0)
    if topk:
      errors.update(mafl.mafl_errors_topk(train_particles, train.landmarks, test_particles,
                                          test.landmarks, topk))
    return errors

  def recalibrated(self, state):
    """``state`` with BN running statistics re-estimated at its weights
    (`dlp.recalibrate_batch_stats`) on ``eval.bn_recalibration_batches`` training
    batches (`recalibration_batches`), once per step; 0 keeps the training EMAs."""
    count = self.config.eval.get("bn_recalibration_batches", 0)
    if not count or self.training_source is None:
      return state
    step = int(state.step)
    if self._recalibrated[0] == step:
      return self._recalibrated[1]
    batches = (partition.to_global({"image": images}, self.mesh)["image"]
               for images in recalibration_batches(self.training_source,
                                                   self.config.train.batch_size, count))
    recalibrated = dlp.recalibrate_batch_stats(state, batches, config=self.config,
                                               update_fn=self._update_statistics)
    self._recalibrated = (step, recalibrated)
    return recalibrated

  def scores(self, state, stage=None) -> dict[str, Any]:
    del stage
    state = self.recalibrated(state)
    out = self.outputs(state, with_elbo=True)
    images = self.source.images.astype(np.float32) / 255.0
    scores = keypoints.particle_scores(images, out["reconstruction"], out["mu"][:, :-1],
                                       self.centres, out.get("obj_on"),
                                       tuple(self.config.eval.radii))
    if "elbo" in out:
      scores["elbo"] = out["elbo"]
    scores.update(self.mafl_scores(state))
    return scores

  def images(self, state, stage=None) -> dict[str, np.ndarray]:
    """Pictures of the first held-out images.

    ``particles``: per column an image; rows: input, particles (rings of radius 3 px
    faded by obj_on), their uncertainty (rings of radius the posterior std in pixels),
    reconstruction, and for the object model the objects without background and the
    background. ``masks``: per image a row of the particles' masks (object model: the
    pasted alphas times obj_on; masked model: the Gaussian maps, upsampled).
    ``glimpses`` (object model): per image two rows, the encoder's glimpses and the
    decoded RGBA glimpses over black.
    """
    del stage
    state = self.recalibrated(state)
    count = min(PANEL_IMAGES, self.source.num_examples)
    first = sources.first_images(self.source, count)
    out = self.outputs(state, first, keep=PICTURED_OUTPUTS)
    images = first.images.astype(np.float32) / 255.0
    side = images.shape[1]
    scale = max(1, 128 // side)
    points = keypoints.to_pixels(out["mu"][:, :-1], side)
    stds = np.exp(0.5 * out["logvar"][:, :-1]).mean(axis=-1) * (side - 1) / 2
    presence = out.get("obj_on", np.ones(points.shape[:2]))
    rows = [images,
            np.stack([particle_viz.draw_circles(image, p, strength=s)
                      for image, p, s in zip(images, points, presence)]),
            np.stack([particle_viz.draw_circles(image, p, radius=np.maximum(r, 1.0),
                                                strength=s)
                      for image, p, r, s in zip(images, points, stds, presence)]),
            np.clip(out["reconstruction"], 0, 1)]
    for name in ("objects", "background"):
      if name in out:
        rows.append(np.clip(out[name], 0, 1))
    pictures = {"particles": grids.upscale(grids.make_grid(np.concatenate(rows),
                                                           columns=count), scale)}
    shown = min(GLIMPSE_IMAGES, count)
    particles = points.shape[1]
    if "alphas" in out:
      masks = out["alphas"][:shown, ..., 0]                       # [n, K, S, S]
    else:
      maps = out["gaussian_maps"][:shown]                          # [n, F, F, K]
      factor = side // maps.shape[1]
      masks = np.moveaxis(maps, -1, 1).repeat(factor, axis=2).repeat(factor, axis=3)
    masks = np.repeat(np.clip(masks, 0, 1)[..., None], 3, axis=-1)
    pictures["masks"] = grids.upscale(grids.make_grid(
        masks.reshape((-1,) + masks.shape[2:]), columns=particles), scale)
    if "decoded_glimpses" in out:
      encoded = out["glimpses"][:shown]                           # [n, K, g, g, 3]
      decoded = np.clip(out["decoded_glimpses"][:shown] * out["decoded_alphas"][:shown],
                        0, 1)
      pairs = np.stack([np.clip(encoded, 0, 1), decoded], axis=1)  # [n, 2, K, g, g, 3]
      pictures["glimpses"] = grids.upscale(grids.make_grid(
          pairs.reshape((-1,) + pairs.shape[3:]), columns=particles),
          max(1, 64 // pairs.shape[3]))
    return pictures


def create_evaluator(config, mesh, source) -> DLPEvaluator:
  return DLPEvaluator(config, mesh, heldout_source(config, source), training_source=source)


def final_evaluation(evaluator: DLPEvaluator, state, stage, source, writer,
                     workdir: str) -> dict[str, Any]:
  """Scores the held-out images; writes summaries, the pictures and final_scores.json."""
  del source
  return scores_lib.write_final(evaluator, state, stage, writer, workdir)
