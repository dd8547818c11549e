import functools

import jax
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from dti_jax.methods.dti_sprites import segmentation


def _random_masks(seed, n=6, size=12, ids=4, bkg_fraction=0.4):
  rng = np.random.default_rng(seed)
  true = rng.integers(1, ids, size=(n, size, size))
  true[rng.random(true.shape) < bkg_fraction] = 0
  pred = rng.integers(0, ids, size=(n, size, size))
  return true, pred


@functools.partial(jax.jit, static_argnames=("num_true_ids", "num_pred_ids", "background_id"))
def _device_ari(true, pred, num_true_ids, num_pred_ids, background_id):
  return segmentation.adjusted_rand_index(true, pred, num_true_ids, num_pred_ids,
                                          background_id)


def test_ari_fg_is_mean_of_sklearn_over_foreground_pixels():
  true, pred = _random_masks(0)
  # Make predictions partly informative so the score is not ~0.
  pred = np.where(np.random.default_rng(1).random(true.shape) < 0.5, true, pred)
  expected = np.mean([sk_metrics.adjusted_rand_score(t[t != 0], p[t != 0])
                      for t, p in zip(true, pred)])
  assert np.isclose(segmentation.ari_fg(true, pred), expected)
  pooled = sk_metrics.adjusted_rand_score(
      (true * 10 + np.arange(6)[:, None, None])[true != 0], pred[true != 0])
  assert not np.isclose(segmentation.ari_fg(true, pred), pooled)  # per image, not pooled


def test_ari_over_all_pixels_is_mean_of_sklearn():
  true, pred = _random_masks(2)
  expected = np.mean([sk_metrics.adjusted_rand_score(t.ravel(), p.ravel())
                      for t, p in zip(true, pred)])
  assert np.isclose(segmentation.ari(true, pred), expected)


def test_permuted_labelling_scores_one():
  true, _ = _random_masks(3)
  permutation = np.array([5, 2, 7, 0])
  pred = permutation[true]
  assert segmentation.ari_fg(true, pred) == 1.0
  assert segmentation.ari(true, pred) == 1.0
  np.testing.assert_array_equal(_device_ari(true, pred, 4, 8, 0), 1.0)


def test_background_predictions_do_not_change_ari_fg():
  true, pred = _random_masks(4)
  other = np.where(true == 0, np.random.default_rng(5).integers(0, 4, true.shape), pred)
  assert not np.array_equal(other, pred)
  assert segmentation.ari_fg(true, other) == segmentation.ari_fg(true, pred)
  np.testing.assert_array_equal(_device_ari(true, other, 4, 4, 0),
                                _device_ari(true, pred, 4, 4, 0))


def test_closed_form_small_example():
  # Contingency [[2, 1, 0], [0, 1, 2]]: sum C(n_ij, 2) = 2, rows 6, columns 3, C(6, 2) = 15;
  # E = 6 * 3 / 15 = 1.2, max = 4.5, ARI = (2 - 1.2) / (4.5 - 1.2) = 8 / 33.
  true = np.array([[[1, 1, 1, 2, 2, 2]]])
  pred = np.array([[[0, 0, 1, 1, 2, 2]]])
  assert np.isclose(segmentation.ari_fg(true, pred), 8 / 33)
  np.testing.assert_allclose(_device_ari(true, pred, 3, 3, 0), [8 / 33], rtol=1e-6)


def test_degenerate_images_follow_the_original():
  true = np.array([
      [[0, 0], [0, 0]],  # no foreground pixel -> 1.0
      [[0, 3], [0, 0]],  # one foreground pixel -> 1.0
      [[1, 1], [1, 0]],  # one cluster in both -> 1.0
      [[1, 1], [1, 0]],  # one true cluster, prediction split -> 0.0
      [[1, 2], [3, 0]],  # every pixel alone in both (original divides by 0) -> 1.0
      [[1, 2], [3, 0]],  # singletons vs one cluster -> 0.0
  ])
  pred = np.array([
      [[1, 2], [3, 0]],
      [[1, 2], [3, 0]],
      [[2, 2], [2, 0]],
      [[2, 2], [1, 0]],
      [[1, 0], [2, 0]],
      [[1, 1], [1, 0]],
  ])
  expected = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
  np.testing.assert_array_equal(segmentation.ari_per_image(true, pred, 0), expected)
  np.testing.assert_array_equal(_device_ari(true, pred, 4, 4, 0), expected)
  assert segmentation.ari_fg(true, pred) == np.mean(expected)


@pytest.mark.parametrize("background_id", [None, 0])
def test_device_ari_matches_host_reference(background_id):
  true, pred = _random_masks(6, n=8, size=35, ids=5)
  pred = np.where(np.random.default_rng(7).random(true.shape) < 0.7, (true + 1) % 5, pred)
  host = segmentation.ari_per_image(true, pred, background_id)
  device = _device_ari(true, pred, 5, 5, background_id)
  np.testing.assert_allclose(device, host, atol=2e-6)


def test_device_ari_is_accurate_on_large_images():
  # 256 x 256: the largest size whose pair counts fit int32; one split-off pixel is a
  # near-cancellation case for the textbook formula.
  true = np.zeros((2, 256, 256), np.int32)
  true[:, :, 128:] = 1
  pred = true.copy()
  pred[0, 0, 0] = 2
  pred[1] = np.random.default_rng(8).integers(0, 3, (256, 256))
  host = segmentation.ari_per_image(true, pred)
  np.testing.assert_allclose(_device_ari(true, pred, 2, 3, None), host, atol=2e-6)


def test_miou_of_permuted_segmentation_is_one():
  true, _ = _random_masks(9)
  permutation = np.array([0, 3, 1, 2])  # background kept at 0 for the no-bkg variant
  pred = permutation[true]
  assert segmentation.miou(true, pred, 4) == 1.0
  assert segmentation.miou(true, pred, 4, with_background=False) == 1.0
  assert segmentation.miou(true, np.array([2, 0, 3, 1])[true], 4) == 1.0


def test_segmentation_scores_closed_form():
  true = np.array([[0, 0, 0, 1, 1, 2, 2, 2]])
  pred = np.array([[0, 0, 1, 1, 1, 2, 2, 0]])
  # Confusion [[2, 1, 0], [0, 2, 0], [1, 0, 2]]; IoU 2/4, 2/3, 2/3.
  scores = segmentation.segmentation_scores(segmentation.segmentation_confusion(true, pred, 3))
  assert np.isclose(scores["avg_iou"], (1 / 2 + 2 / 3 + 2 / 3) / 3)
  assert np.isclose(scores["global_acc"], 6 / 8)
  assert np.isclose(scores["avg_acc"], (2 / 3 + 1 + 2 / 3) / 3)
  assert np.isclose(scores["iou_cls0"], 1 / 2) and np.isclose(scores["iou_cls2"], 2 / 3)
  # Without background: [[2, 0], [0, 2]].
  assert scores["avg_iou_nobkg"] == scores["global_acc_nobkg"] == scores["avg_acc_nobkg"] == 1.0
  # A class absent everywhere counts as IoU 0 in the mean, as in the original.
  assert np.isclose(segmentation.miou(true, pred, 4), (1 / 2 + 2 / 3 + 2 / 3) / 4)


def test_cosegmentation_matching_swaps_foreground_and_background():
  true = np.array([[[0, 0, 1, 1], [0, 0, 1, 1]]])
  pred = 1 - true
  pred[0, 0, 0] = 0  # one background pixel now predicted "foreground" after the swap
  scores = segmentation.segmentation_scores(segmentation.segmentation_confusion(true, pred, 2))
  assert np.isclose(scores["global_acc"], 7 / 8)
  assert np.isclose(scores["iou_cls1"], 4 / 5) and np.isclose(scores["iou_cls0"], 3 / 4)


def test_out_of_range_labels_are_rejected():
  with pytest.raises(ValueError, match="pred labels"):
    segmentation.segmentation_confusion(np.zeros((1, 2, 2), int), np.full((1, 2, 2), 3), 3)
