"""Evaluation upsampling of part logits: PyTorch's bilinear, align_corners=False."""

import jax.numpy as jnp
import numpy as np

from dti_jax.methods.unsup_parts import part_sampling


def _torch_rule(values, height, width):
  """numpy transcription of PyTorch's upsample_bilinear2d, align_corners=False."""
  def taps(source, target):
    position = np.maximum((np.arange(target) + 0.5) * source / target - 0.5, 0.0)
    index = np.minimum(np.floor(position).astype(int), source - 1)
    return index, np.minimum(index + 1, source - 1), position - index

  y0, y1, wy = taps(values.shape[0], height)
  x0, x1, wx = taps(values.shape[1], width)
  rows = values[y0] * (1 - wy)[:, None, None] + values[y1] * wy[:, None, None]
  return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def test_hand_worked_edges_are_clamped():
  logits = jnp.array([0.0, 10.0]).reshape(1, 2, 1)
  # Sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (reads the last pixel twice).
  np.testing.assert_allclose(part_sampling.upsample_logits(logits, (1, 4))[0, :, 0],
                             [0.0, 2.5, 7.5, 10.0], atol=1e-6)


def test_matches_pytorch_rule_batched_and_unbatched():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 33, 47, 4)).astype(np.float32)
  out = np.asarray(part_sampling.upsample_logits(jnp.asarray(logits), (256, 368)))
  assert out.shape == (2, 256, 368, 4)
  for image, result in zip(logits.astype(np.float64), out):
    np.testing.assert_allclose(result, _torch_rule(image, 256, 368), atol=2e-5)
  single = part_sampling.upsample_logits(jnp.asarray(logits[0, :5, :7]), (12, 9))
  np.testing.assert_allclose(single, _torch_rule(logits[0, :5, :7].astype(np.float64), 12, 9),
                             atol=1e-5)
