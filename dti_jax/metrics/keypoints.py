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
