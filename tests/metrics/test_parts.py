"""Part-discovery scores and baselines: sklearn agreement, closed forms, Lab colour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import linear_model
from sklearn import metrics as sk_metrics
from sklearn import preprocessing

from data_pipelines import articulated
from dti_jax.methods.unsup_parts import baselines as part_baselines
from dti_jax.methods.unsup_parts import part_metrics as parts
from dti_jax.methods.unsup_parts import lab


def _sklearn(true, pred):
  return (sk_metrics.normalized_mutual_info_score(true, pred),
          sk_metrics.adjusted_rand_score(true, pred))


@pytest.mark.parametrize("size,num_true,num_pred", [
    (2, 2, 2), (7, 3, 2), (50, 5, 4), (1000, 6, 4), (20_000, 15, 4), (300, 2, 9)])
def test_nmi_ari_match_sklearn(size, num_true, num_pred):
  rng = np.random.default_rng(size)
  true = rng.integers(0, num_true, size)
  # Correlated predictions, so that the scores are far from 0.
  pred = np.where(rng.random(size) < 0.5, true % num_pred, rng.integers(0, num_pred, size))
  scores = parts.nmi_ari(parts.contingency(true, pred, num_true, num_pred))
  nmi, ari = _sklearn(true, pred)
  np.testing.assert_allclose([scores["nmi"], scores["ari"]], [nmi, ari], rtol=1e-10,
                             atol=1e-12)


@pytest.mark.parametrize("true,pred", [
    ([0, 0, 0], [1, 1, 1]),  # One cluster on both sides.
    ([0, 1, 2, 3], [3, 2, 1, 0]),  # Every sample alone, on both sides.
    ([0, 0, 1, 1], [0, 0, 0, 0]),  # One side constant: MI = 0.
    ([0, 1, 2, 3], [0, 0, 0, 0]),
    ([2], [1]),  # A single sample.
    ([0, 0, 1], [0, 1, 1]),
])
def test_degenerate_cases_match_sklearn(true, pred):
  scores = parts.nmi_ari(parts.contingency(true, pred, 4, 4))
  assert (scores["nmi"], scores["ari"]) == pytest.approx(_sklearn(true, pred))


def test_empty_table_and_permuted_ground_truth():
  assert parts.nmi_ari(np.zeros((3, 4))) == {"nmi": 1.0, "ari": 1.0}  # As sklearn.
  rng = np.random.default_rng(0)
  true = rng.integers(0, 6, 10_000)
  scores = parts.nmi_ari(parts.contingency(true, rng.permutation(6)[true], 6, 6))
  assert scores["nmi"] == pytest.approx(1.0, abs=1e-12)
  assert scores["ari"] == pytest.approx(1.0, abs=1e-12)


def test_large_counts_stay_exact():
  # 1e8 pixels: pair counts near 5e15 are still represented exactly in float64.
  table = np.array([[4e7, 1e7], [1e7, 4e7]])
  a, n = 5e7, 1e8
  together = 2 * (4e7 * (4e7 - 1) / 2 + 1e7 * (1e7 - 1) / 2)
  marginal = 2 * a * (a - 1) / 2
  expected = marginal ** 2 / (n * (n - 1) / 2)
  ari = (together - expected) / (marginal - expected)
  assert parts.nmi_ari(table)["ari"] == pytest.approx(ari, rel=1e-12)


def test_accumulation_equals_whole_and_masks():
  rng = np.random.default_rng(1)
  true = rng.integers(0, 6, (10, 8, 8))
  pred = rng.integers(0, 4, (10, 8, 8))
  accumulator = parts.ContingencyAccumulator(6, 4)
  for start in range(0, 10, 3):
    accumulator.add(true[start:start + 3], pred[start:start + 3], mask=true[start:start + 3] > 0)
  fg = true > 0
  np.testing.assert_array_equal(accumulator.table,
                                parts.contingency(true[fg], pred[fg], 6, 4))
  assert accumulator.table.dtype == np.float64 and accumulator.table[0].sum() == 0
  scores = parts.foreground_scores(true, pred, 4)
  nmi, ari = _sklearn(true[fg], pred[fg])
  np.testing.assert_allclose([scores["nmi"], scores["ari"]], [nmi, ari], rtol=1e-10)
  with pytest.raises(ValueError, match="outside"):
    parts.contingency(true, pred, 6, 3)


def test_part_centres_closed_form():
  probabilities = np.zeros((1, 8, 10, 3))
  probabilities[0, 3, 5, 0] = 1.0  # One pixel of mass 1 at (x, y) = (5, 3).
  probabilities[0, 6, 2, 1] = 0.5  # Mass below 1: divided by 1, not 0.5.
  probabilities[0, 0, :, 2] = 0.2  # Row 0, mass 2: mean column 4.5.
  centres = parts.part_centres(probabilities)
  np.testing.assert_allclose(centres[0], [[0.5, 3 / 8], [0.5 * 2 / 10, 0.5 * 6 / 8],
                                          [4.5 / 10, 0.0]])


def test_keypoint_regression_exact_for_linear_keypoints():
  rng = np.random.default_rng(2)
  centres = rng.random((120, 4, 2))
  weights = rng.normal(size=(3, 8, 2))
  keypoints = np.einsum("nc,pcd->npd", centres.reshape(120, -1), weights) + 0.3
  visible = rng.random((120, 3)) < 0.8
  error = parts.keypoint_regression_error(centres[:80], keypoints[:80], visible[:80],
                                          centres[80:], keypoints[80:], visible[80:])
  assert error < 1e-9


def test_keypoint_regression_matches_direct_sklearn():
  rng = np.random.default_rng(3)
  centres = rng.random((150, 4, 2))
  keypoints = rng.random((150, 5, 2))
  visible = rng.random((150, 5)) < 0.7
  subset = rng.random(50) < 0.5
  train, test = slice(0, 100), slice(100, 150)
  flat = centres.reshape(150, -1)
  errors = []
  for p in range(5):
    rows = visible[train, p]
    scale_x = preprocessing.StandardScaler().fit(flat[train][rows])
    scale_y = preprocessing.StandardScaler().fit(keypoints[train][rows, p])
    model = linear_model.LinearRegression(fit_intercept=False).fit(
        scale_x.transform(flat[train][rows]), scale_y.transform(keypoints[train][rows, p]))
    test_rows = visible[test, p] & subset
    fitted = scale_y.inverse_transform(model.predict(scale_x.transform(flat[test][test_rows])))
    errors.append(np.linalg.norm(fitted - keypoints[test][test_rows, p], axis=-1))
  expected = 100 * np.concatenate(errors).mean()
  error = parts.keypoint_regression_error(
      centres[train], keypoints[train], visible[train], centres[test], keypoints[test],
      visible[test], test_subset=subset)
  assert error == pytest.approx(expected, rel=1e-10)


def test_grid_and_strip_baselines_exact():
  labels = np.zeros((2, 6, 9), np.uint8)
  labels[0, 1:5, 2:8] = 1  # Box rows 1..4, cols 2..7.
  labels[0, 2, 3] = 2
  labels[1, 0:3, 0:4] = 3  # Box rows 0..2 (3 rows: the middle one ties, goes down).
  grid = part_baselines.grid_baseline(labels)
  fg0, fg1 = labels[0] > 0, labels[1] > 0
  expected0 = np.add.outer(2 * (np.arange(6) >= 3), np.arange(9) >= 5)
  np.testing.assert_array_equal(grid[0][fg0], expected0[fg0])
  expected1 = np.add.outer(2 * (np.arange(6) >= 1), np.arange(9) >= 2)
  np.testing.assert_array_equal(grid[1][fg1], expected1[fg1])
  strips = part_baselines.strip_baseline(labels)
  np.testing.assert_array_equal(strips[0, 1, 2:8], [0, 1, 1, 2, 3, 3])  # Width 6.
  np.testing.assert_array_equal(strips[1, 0, 0:4], [0, 1, 2, 3])  # Width 4.
  assert np.all(strips[0][fg0] == strips[0, 1][None].repeat(6, 0)[fg0])


def test_rgb_to_lab_known_values_and_jax():
  rgb = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                  [0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
  expected = [[100.0, 0.0, 0.0], [53.24, 80.09, 67.20], [87.74, -86.18, 83.18],
              [32.30, 79.19, -107.86], [0.0, 0.0, 0.0], [53.39, 0.0, 0.0]]
  result = lab.rgb_to_lab(rgb)
  assert result.dtype == np.float64
  np.testing.assert_allclose(result, expected, atol=0.01)
  colours = np.random.default_rng(4).random((64, 3))
  host = lab.rgb_to_lab(colours)
  device = jax.jit(lab.rgb_to_lab)(jnp.asarray(colours, jnp.float32))
  assert device.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(device), host, atol=2e-3)
  grads = jax.grad(lambda x: lab.rgb_to_lab(x).sum())(jnp.zeros((2, 3)))
  assert np.all(np.isfinite(np.asarray(grads)))  # No NaN from the unused branches.


def test_baselines_on_the_toy_benchmark():
  # Small splits (the spec's table uses 2,000 / 500 images): same ordering, close values.
  train = articulated.generate(300, seed=0)
  test = articulated.generate(200, seed=1)
  scores = part_baselines.all_baselines(train.images, train.instance, test.images,
                                        test.instance)
  spec = {"grid": (6.8, 3.0), "strips": (27.1, 21.0), "per_image_kmeans": (5.0, 5.6),
          "global_kmeans": (44.1, 30.5)}
  assert set(scores) == set(spec)
  for name, (nmi, ari) in spec.items():
    assert abs(scores[name]["fg_nmi"] - nmi) < 4, (name, scores[name])
    assert abs(scores[name]["fg_ari"] - ari) < 4, (name, scores[name])
