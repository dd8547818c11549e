"""MAFL landmark regression from DLP particles (spec 6.2; host numpy).

The original (`evaluate_lin_reg_on_mafl`) encodes the MAFL images deterministically in
eval mode and fits sklearn's Ridge(alpha=0, fit_intercept=False), i.e. ordinary least
squares without an intercept, from particle features to the 5 landmarks on the 19,000
training images, then reports the mean over test images and landmarks of the distance
to the truth over the inter-ocular distance (here in %). Features, per particle
(background particle included), flattened:

- "mu": the positions mu [K+1, 2];
- "mu_logvar": [mu, logvar] (the constant background log-variance acts as an intercept);
- "all": [mu, logvar, mu_features, logvar_features].

Landmarks are (y, x) pixels, [N, 5, 2], left eye first, right eye second.
"""

import numpy as np

FEATURE_SETS = {"mu": ("mu",), "mu_logvar": ("mu", "logvar"),
                "all": ("mu", "logvar", "mu_features", "logvar_features")}
EYES = (0, 1)   # left and right eye among the 5 landmarks


def features(particles: dict[str, np.ndarray], feature_set: str) -> np.ndarray:
  """[N, K+1, d] arrays named by ``FEATURE_SETS[feature_set]`` -> float64 [N, F]."""
  if feature_set not in FEATURE_SETS:
    raise ValueError(f"MAFL feature set {feature_set!r} is not one of {tuple(FEATURE_SETS)}")
  parts = [np.asarray(particles[name], np.float64) for name in FEATURE_SETS[feature_set]]
  per_particle = np.concatenate(parts, axis=-1)
  return per_particle.reshape(len(per_particle), -1)


def fit(inputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """Least squares without intercept: W [F, T] minimising |inputs W - targets|^2.

  Rank-deficient inputs (e.g. the background particle's constant mu = 0) get the
  minimum-norm solution, whose predictions on the training span are the same.
  """
  targets = np.asarray(targets, np.float64).reshape(len(targets), -1)
  weights, *_ = np.linalg.lstsq(np.asarray(inputs, np.float64), targets, rcond=None)
  return weights


def landmark_error(predicted: np.ndarray, truth: np.ndarray) -> float:
  """Mean over images and landmarks of |predicted - truth| / inter-ocular distance, in %.

  Args:
    predicted, truth: [N, L, 2] landmarks (or [N, 2 L], flattened per image).
  """
  truth = np.asarray(truth, np.float64).reshape(len(truth), -1, 2)
  predicted = np.asarray(predicted, np.float64).reshape(truth.shape)
  interocular = np.linalg.norm(truth[:, EYES[0]] - truth[:, EYES[1]], axis=-1)
  distances = np.linalg.norm(predicted - truth, axis=-1)
  return float(100.0 * np.mean(distances / interocular[:, None]))


def regression_error(train_inputs: np.ndarray, train_landmarks: np.ndarray,
                     test_inputs: np.ndarray, test_landmarks: np.ndarray) -> float:
  """Fits on the training set, returns the test `landmark_error` (%)."""
  weights = fit(train_inputs, train_landmarks)
  return landmark_error(np.asarray(test_inputs, np.float64) @ weights, test_landmarks)


def mafl_errors(train_particles: dict[str, np.ndarray], train_landmarks: np.ndarray,
                test_particles: dict[str, np.ndarray], test_landmarks: np.ndarray
                ) -> dict[str, float]:
  """The three regressions: {"mafl_error_mu", "mafl_error_mu_logvar", "mafl_error_all"} (%).

  Args:
    train_particles, test_particles: deterministic encodings, mu and logvar [N, K+1, 2],
      mu_features and logvar_features [N, K+1, D].
    train_landmarks, test_landmarks: [N, 5, 2] (y, x) pixels.
  """
  return {f"mafl_error_{name}": regression_error(
      features(train_particles, name), train_landmarks,
      features(test_particles, name), test_landmarks) for name in FEATURE_SETS}
