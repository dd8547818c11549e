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


def confident_particles(train_particles: dict[str, np.ndarray], count: int
                        ) -> tuple[np.ndarray, np.ndarray]:
  """(the ``count`` most confident particle indices, the ``count`` least confident ones):
  ranked by the log-variance of mu summed over (y, x) and averaged over the training
  images, lowest first, as the original's `evaluate_lin_reg_on_mafl_topk`."""
  logvar = np.asarray(train_particles["logvar"], np.float64)
  if not 1 <= count <= logvar.shape[1]:
    raise ValueError(f"config.eval.mafl_topk={count} must be in [1, {logvar.shape[1]}] "
                     "(the particles per image)")
  confidence = logvar.sum(-1).mean(0)
  order = np.argsort(confidence, kind="stable")
  return order[:count], order[::-1][:count]


def mafl_errors_topk(train_particles: dict[str, np.ndarray], train_landmarks: np.ndarray,
                     test_particles: dict[str, np.ndarray], test_landmarks: np.ndarray,
                     count: int) -> dict[str, float]:
  """The three regressions on the ``count`` most and least confident particles only:
  ``mafl_error_{set}_top{count}_confident`` and ``..._uncertain`` (%)."""
  chosen = dict(zip(("confident", "uncertain"), confident_particles(train_particles, count)))
  errors = {}
  for kind, indices in chosen.items():
    pick = lambda particles: {name: np.asarray(value)[:, indices]
                              for name, value in particles.items()}
    for name, value in mafl_errors(pick(train_particles), train_landmarks,
                                   pick(test_particles), test_landmarks).items():
      errors[f"{name}_top{count}_{kind}"] = value
  return errors
