"""MAFL regression: exact linear targets, hand-computed errors, no intercept."""

import numpy as np
import pytest

from dti_jax.methods.dlp import mafl


def _particles(count, seed=0, num=4, dim=3):
  """Random encodings with the background particle last (mu 0, constant logvar)."""
  rng = np.random.default_rng(seed)
  mu = np.concatenate([rng.uniform(-1, 1, (count, num, 2)), np.zeros((count, 1, 2))], 1)
  logvar = np.concatenate([rng.normal(-4, 1, (count, num, 2)),
                           np.full((count, 1, 2), 2 * np.log(0.1))], 1)
  return {"mu": mu, "logvar": logvar, "mu_features": rng.normal(size=(count, num + 1, dim)),
          "logvar_features": rng.normal(size=(count, num + 1, dim))}


def test_feature_sets_flatten_per_particle():
  particles = _particles(3)
  assert mafl.features(particles, "mu").shape == (3, 10)
  assert mafl.features(particles, "mu_logvar").shape == (3, 20)
  both = mafl.features(particles, "all")
  assert both.shape == (3, 5 * 10)
  # Particle 1: columns 10..19 = [mu (2), logvar (2), mu_features (3), logvar_features (3)].
  np.testing.assert_allclose(both[:, 10:12], particles["mu"][:, 1])
  np.testing.assert_allclose(both[:, 14:17], particles["mu_features"][:, 1])
  with pytest.raises(ValueError, match="feature set 'xy'"):
    mafl.features(particles, "xy")


def test_exact_linear_landmarks_give_zero_error():
  train, test = _particles(200, seed=1), _particles(50, seed=2)
  mixing = np.random.default_rng(3).normal(size=(10, 10)) * 20
  landmarks = lambda p: (mafl.features(p, "mu") @ mixing).reshape(-1, 5, 2)
  errors = mafl.mafl_errors(train, landmarks(train), test, landmarks(test))
  assert set(errors) == {"mafl_error_mu", "mafl_error_mu_logvar", "mafl_error_all"}
  for value in errors.values():
    assert value == pytest.approx(0.0, abs=1e-6)


def test_no_intercept_but_the_background_logvar_acts_as_one():
  train, test = _particles(200, seed=4), _particles(50, seed=5)
  mixing = np.random.default_rng(6).normal(size=(10, 10)) * 20
  offset = np.full(10, 60.0)   # landmarks far from the origin: mu alone cannot reach them
  landmarks = lambda p: (mafl.features(p, "mu") @ mixing + offset).reshape(-1, 5, 2)
  errors = mafl.mafl_errors(train, landmarks(train), test, landmarks(test))
  assert errors["mafl_error_mu"] > 1.0
  assert errors["mafl_error_mu_logvar"] == pytest.approx(0.0, abs=1e-6)


def test_known_offset_error_in_percent():
  truth = np.array([[[50, 40], [50, 90], [70, 65], [90, 45], [90, 85]]], np.float64)
  # Inter-ocular distance 50; every landmark off by (3, 4): 5 px = 10 %.
  assert mafl.landmark_error(truth + [3, 4], truth) == pytest.approx(10.0)
  assert mafl.landmark_error((truth + [3, 4]).reshape(1, 10), truth) == pytest.approx(10.0)


def test_each_image_is_normalised_by_its_own_eyes():
  truth = np.zeros((2, 5, 2))
  truth[0, 1] = (0, 10)   # inter-ocular 10
  truth[1, 1] = (0, 40)   # inter-ocular 40
  predicted = truth + [0, 2]   # 2 px everywhere: 20 % and 5 %
  assert mafl.landmark_error(predicted, truth) == pytest.approx(12.5)
  assert mafl.landmark_error(3 * predicted, 3 * truth) == pytest.approx(12.5)


def test_regression_predicts_test_from_train_fit():
  inputs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  weights = np.arange(20, dtype=np.float64).reshape(2, 10)
  test = np.array([[2.0, 1.0]])
  truth = (test @ weights).reshape(1, 5, 2)
  assert mafl.regression_error(inputs, inputs @ weights, test, truth) == pytest.approx(0.0,
                                                                                    abs=1e-9)
  np.testing.assert_allclose(mafl.fit(inputs, inputs @ weights), weights, atol=1e-9)
