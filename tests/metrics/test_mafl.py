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


def test_top_k_uses_the_most_and_least_confident_particles():
  """Landmarks linear in particles 1 and 3, which have the lowest log-variance: the
  confident regression is exact, the uncertain one (particles 0 and 2, noise) is not,
  and both equal least squares on those columns computed here."""
  rng = np.random.default_rng(0)
  n_train, n_test, k = 200, 50, 4
  def particles(n):
    mu = rng.normal(size=(n, k, 2))
    logvar = np.zeros((n, k, 2)) + np.array([1.0, -3.0, 2.0, -1.0])[None, :, None]
    feats = rng.normal(size=(n, k, 3))
    return {"mu": mu, "logvar": logvar, "mu_features": feats, "logvar_features": feats * 0}
  train, test = particles(n_train), particles(n_test)
  mixing = rng.normal(size=(4, 10))
  landmarks = lambda p: (p["mu"][:, [1, 3]].reshape(len(p["mu"]), -1) @ mixing).reshape(-1, 5, 2)
  confident, uncertain = mafl.confident_particles(train, 2)
  np.testing.assert_array_equal(confident, [1, 3])
  np.testing.assert_array_equal(uncertain, [2, 0])
  errors = mafl.mafl_errors_topk(train, landmarks(train), test, landmarks(test), 2)
  assert errors["mafl_error_mu_top2_confident"] == pytest.approx(0.0, abs=1e-8)
  inputs = lambda p: p["mu"][:, [2, 0]].reshape(len(p["mu"]), -1)
  weights, *_ = np.linalg.lstsq(inputs(train), landmarks(train).reshape(n_train, -1), rcond=None)
  assert errors["mafl_error_mu_top2_uncertain"] == pytest.approx(
      mafl.landmark_error(inputs(test) @ weights, landmarks(test)))
  assert errors["mafl_error_mu_top2_uncertain"] > 10
  assert set(errors) == {f"mafl_error_{s}_top2_{kind}" for s in mafl.FEATURE_SETS
                         for kind in ("confident", "uncertain")}
  with pytest.raises(ValueError, match="config.eval.mafl_topk=5 must be in"):
    mafl.confident_particles(train, 5)
