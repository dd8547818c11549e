"""Oxford / Paris AP: the official compute_ap's trapezoid rule and junk removal, by hand."""

import numpy as np
import pytest

from dti_jax.metrics import retrieval

# (ranking, positives, junk, AP worked out from the definition: over the non-junk ranks
# i = 1, 2, ..., AP = sum (r_i - r_{i-1}) (p_{i-1} + p_i) / 2, r_0 = 0, p_0 = 1).
CASES = [
    # p, n, p of 2 positives: 1/2 (1 + 1)/2 + 0 + 1/2 (1/2 + 2/3)/2 = 1/2 + 7/24.
    (["a", "x", "b"], {"a", "b"}, set(), 19 / 24),
    # the junk image is removed: n, p -> 0 + 1 (0 + 1/2)/2 (kept, it would be 1/6).
    (["j", "x", "a"], {"a"}, {"j"}, 1 / 4),
    # one positive at rank 3: only the last step, 1 (0 + 1/3)/2 (plain AP would say 1/3).
    (["x", "y", "a"], {"a"}, set(), 1 / 6),
    # a positive the ranking lacks still counts: 1/2 (1 + 1)/2 = 1/2.
    (["a", "x"], {"a", "b"}, set(), 1 / 2),
    # junk between the positives does not cost precision: a, b -> 1.
    (["a", "j", "k", "b", "x"], {"a", "b"}, {"j", "k"}, 1.0),
]


@pytest.mark.parametrize("ranking,positives,junk,expected", CASES)
def test_average_precision_by_hand(ranking, positives, junk, expected):
  assert retrieval.average_precision(ranking, positives, junk) == pytest.approx(expected,
                                                                                abs=1e-12)


def test_junk_changes_the_score_only_by_removal():
  # Without declaring j as junk it is a negative at rank 1: n, n, p -> 1/6.
  assert retrieval.average_precision(["j", "x", "a"], {"a"}) == pytest.approx(1 / 6)


def test_mean_over_queries_and_bad_input():
  rankings, positives, junk, expected = zip(*CASES)
  mean, aps = retrieval.mean_average_precision(rankings, positives, junk)
  np.testing.assert_allclose(aps, expected, atol=1e-12)
  assert mean == pytest.approx(np.mean(expected))
  with pytest.raises(ValueError, match="no positive"):
    retrieval.average_precision(["a"], set())
  with pytest.raises(ValueError, match="2 rankings, 1 positive"):
    retrieval.mean_average_precision([["a"], ["a"]], [{"a"}], [set(), set()])


def test_random_rankings_match_a_recall_step_reference():
  """Against an independent formulation: AP = sum over positives found at non-junk rank k
  (the m-th found) of (1 / P) ((m - 1) / (k - 1) + m / k) / 2, with (m-1)/(k-1) = 1 at k = 1."""
  rng = np.random.default_rng(0)
  for _ in range(20):
    names = [f"im{i}" for i in range(30)]
    positives = set(rng.choice(names, 6, replace=False))
    junk = set(rng.choice(sorted(set(names) - positives), 4, replace=False))
    ranking = list(rng.permutation(names))
    kept = [n for n in ranking if n not in junk]
    expected, found = 0.0, 0
    for k, name in enumerate(kept, start=1):
      if name in positives:
        found += 1
        before = 1.0 if k == 1 else (found - 1) / (k - 1)
        expected += (before + found / k) / 2 / len(positives)
    assert retrieval.average_precision(ranking, positives, junk) == pytest.approx(expected)
