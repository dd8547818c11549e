"""Keypoint scores of Deep Latent Particles on scenes with known object centres (host numpy).

Neither the paper nor its code scores keypoints on the shapes data; these follow the
specification's offline benchmark. A ground-truth object is recalled at radius r when
some predicted particle lies within r pixels of its mask centroid; a particle is
precise when it lies within r pixels of some centroid. Chance levels come from the
same number of uniformly random points, so a score can be read against them.
Positions are (row, col) in pixels; missing objects are NaN rows.
"""

import numpy as np


def to_pixels(positions: np.ndarray, side: int) -> np.ndarray:
  """(y, x) in [-1, 1] (align-corners: -1 is pixel 0's centre) -> (row, col) pixels."""
  return (np.asarray(positions, np.float64) + 1.0) / 2.0 * (side - 1)


def _distances(particles: np.ndarray, centres: np.ndarray) -> np.ndarray:
  """[B, K, 2], [B, O, 2] -> [B, K, O] Euclidean distances (NaN for missing objects)."""
  return np.linalg.norm(particles[:, :, None, :] - centres[:, None, :, :], axis=-1)


def object_recall(particles: np.ndarray, centres: np.ndarray, radius: float,
                  active: np.ndarray | None = None) -> float:
  """Fraction of the present objects with a particle (an active one, if ``active`` [B, K]
  is given) within ``radius`` pixels of their centroid."""
  distances = _distances(particles, centres)
  if active is not None:
    distances = np.where(active[:, :, None], distances, np.inf)
  present = ~np.isnan(centres[..., 0])
  hit = np.any(np.nan_to_num(distances, nan=np.inf) <= radius, axis=1)
  return float(hit[present].mean()) if present.any() else float("nan")


def particle_precision(particles: np.ndarray, centres: np.ndarray, radius: float,
                       active: np.ndarray | None = None) -> float:
  """Fraction of the (active) particles within ``radius`` pixels of some object centroid."""
  distances = np.nan_to_num(_distances(particles, centres), nan=np.inf)
  near = np.any(distances <= radius, axis=2)
  chosen = np.ones(near.shape, bool) if active is None else np.asarray(active, bool)
  return float(near[chosen].mean()) if chosen.any() else float("nan")


def random_recall(centres: np.ndarray, num_particles: int, radius: float, side: int,
                  seed: int = 0, repeats: int = 10) -> float:
  """Chance level of ``object_recall``: ``num_particles`` uniform random points per image
  in [0, side - 1]^2, averaged over ``repeats`` draws."""
  rng = np.random.default_rng(seed)
  scores = [object_recall(rng.uniform(0, side - 1, (len(centres), num_particles, 2)),
                          centres, radius) for _ in range(repeats)]
  return float(np.mean(scores))


def particle_scores(images: np.ndarray, reconstruction: np.ndarray, positions: np.ndarray,
                    centres: np.ndarray | None = None, presence: np.ndarray | None = None,
                    radii: tuple[float, ...] = (3, 4)) -> dict[str, float]:
  """Held-out scores of a particle model (spec section 9).

  Args:
    images, reconstruction: [B, S, S, C] in [0, 1]; the reconstruction is clamped.
    positions: [B, K, 2] foreground particle means (y, x) in [-1, 1].
    centres: [B, O, 2] object centroids in pixels (NaN rows: absent), or None.
    presence: [B, K] obj_on, or None (the masked model has none).
    radii: pixel radii of recall and precision.

  Returns:
    psnr (mean over images); with centres: recall_{r}px over all particles beside the
    random_recall_{r}px chance level, and with presence recall_active_{r}px,
    precision_active_{r}px (obj_on > 0.5) and the mean number of active particles.
  """
  errors = np.mean((np.clip(reconstruction, 0, 1) - images) ** 2, axis=(1, 2, 3))
  scores = {"psnr": float(np.mean(-10 * np.log10(np.maximum(errors, 1e-12))))}
  if centres is None:
    return scores
  side = images.shape[1]
  points = to_pixels(positions, side)
  active = None if presence is None else np.asarray(presence) > 0.5
  for radius in radii:
    scores[f"recall_{radius}px"] = object_recall(points, centres, radius)
    scores[f"random_recall_{radius}px"] = random_recall(centres, points.shape[1], radius, side)
    if active is not None:
      scores[f"recall_active_{radius}px"] = object_recall(points, centres, radius, active)
      scores[f"precision_active_{radius}px"] = particle_precision(points, centres, radius,
                                                                  active)
  if active is not None:
    scores["active_particles"] = float(active.sum(axis=1).mean())
  return scores
