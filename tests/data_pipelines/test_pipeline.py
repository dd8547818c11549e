"""Train and eval batches: order, coverage, resume and process slices, by value."""

import numpy as np
import pytest

from data_pipelines import pipeline
from data_pipelines.sources import ArraySource

N = 50


@pytest.fixture(scope="module")
def source():
  # Every image is distinct, so a row identifies its dataset index.
  pixels = (np.arange(N)[:, None] * 5 + np.arange(12)[None, :]) % 256
  return ArraySource(
      name="toy",
      images=pixels.astype(np.uint8).reshape(N, 2, 3, 2),
      labels=(np.arange(N) % 7).astype(np.int32),
      num_classes=7)


def _train(source, **kwargs):
  return list(pipeline.train_batches(source, **kwargs))


def _expected_image(source, index):
  return source.images[index].astype(np.float32) / 255


def test_train_batches_values_and_coverage(source):
  batches = _train(source, global_batch_size=8, seed=3, epoch=0)
  assert len(batches) == pipeline.num_train_batches(source, 8) == 6
  for batch in batches:
    assert set(batch) == {"image", "label", "_index"}
    assert batch["image"].dtype == np.float32 and batch["image"].shape == (8, 2, 3, 2)
    assert batch["label"].dtype == np.int32 and batch["_index"].dtype == np.int64
    np.testing.assert_array_equal(batch["image"], _expected_image(source, batch["_index"]))
    np.testing.assert_array_equal(batch["label"], source.labels[batch["_index"]])
  seen = np.concatenate([b["_index"] for b in batches])
  assert len(seen) == 48 and len(np.unique(seen)) == 48
  # The order is the documented permutation, with the incomplete batch dropped.
  expected = np.random.default_rng([3, 0]).permutation(N)[:48]
  np.testing.assert_array_equal(seen, expected)


def test_train_order_is_a_function_of_seed_and_epoch(source):
  def order(seed, epoch):
    batches = _train(source, global_batch_size=10, seed=seed, epoch=epoch)
    return np.concatenate([b["_index"] for b in batches])

  np.testing.assert_array_equal(order(1, 2), order(1, 2))
  assert not np.array_equal(order(1, 2), order(1, 3))
  assert not np.array_equal(order(1, 2), order(2, 2))


def test_start_batch_yields_the_tail_of_the_epoch(source):
  full = _train(source, global_batch_size=8, seed=5, epoch=4)
  for start in (0, 2, 6):
    tail = _train(source, global_batch_size=8, seed=5, epoch=4, start_batch=start)
    assert len(tail) == len(full) - start
    for got, want in zip(tail, full[start:]):
      for key in want:
        np.testing.assert_array_equal(got[key], want[key])
  with pytest.raises(ValueError, match="start_batch"):
    _train(source, global_batch_size=8, seed=5, epoch=4, start_batch=7)


def test_process_slices_concatenate_to_the_global_batch(source):
  kwargs = dict(global_batch_size=8, seed=9, epoch=1)
  whole = _train(source, **kwargs)
  parts = [_train(source, process_index=p, process_count=2, **kwargs)
           for p in range(2)]
  assert len(parts[0]) == len(parts[1]) == len(whole)
  for batch, first, second in zip(whole, *parts):
    assert first["image"].shape[0] == 4
    for key in batch:
      np.testing.assert_array_equal(
          np.concatenate([first[key], second[key]]), batch[key])


def test_batch_not_divisible_by_processes(source):
  with pytest.raises(ValueError, match="global_batch_size"):
    pipeline.train_batches(source, global_batch_size=9, seed=0, epoch=0,
                           process_count=2)
  with pytest.raises(ValueError, match="global_batch_size"):
    pipeline.eval_batches(source, global_batch_size=9, process_count=2)


def test_eval_batches_cover_all_with_padding_masked(source):
  batches = list(pipeline.eval_batches(source, global_batch_size=16))
  assert len(batches) == pipeline.num_eval_batches(source, 16) == 4
  mask = np.concatenate([b["_mask"] for b in batches])
  index = np.concatenate([b["_index"] for b in batches])
  assert mask.dtype == bool and mask.shape == (64,)
  np.testing.assert_array_equal(mask, np.arange(64) < N)
  np.testing.assert_array_equal(index[mask], np.arange(N))
  for batch in batches:
    real = batch["_mask"]
    np.testing.assert_array_equal(batch["image"][real],
                                  _expected_image(source, batch["_index"][real]))
    np.testing.assert_array_equal(batch["label"][real],
                                  source.labels[batch["_index"][real]])
    assert not batch["image"][~real].any() and not batch["label"][~real].any()
    assert not batch["_index"][~real].any()


def test_eval_limit_and_processes(source):
  kwargs = dict(global_batch_size=6, limit=20)
  whole = list(pipeline.eval_batches(source, **kwargs))
  parts = [list(pipeline.eval_batches(source, process_index=p, process_count=3,
                                      **kwargs)) for p in range(3)]
  assert len(whole) == 4 and all(len(part) == 4 for part in parts)
  for batch, *slices in zip(whole, *parts):
    for key in batch:
      np.testing.assert_array_equal(np.concatenate([s[key] for s in slices]),
                                    batch[key])
  index = np.concatenate([b["_index"] for b in whole])
  mask = np.concatenate([b["_mask"] for b in whole])
  np.testing.assert_array_equal(index[mask], np.arange(20))
  assert mask.sum() == 20
  with pytest.raises(ValueError, match="limit"):
    pipeline.eval_batches(source, global_batch_size=6, limit=N + 1)
