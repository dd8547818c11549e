"""Datasets derived from MNIST: the fixed 1,000-image sample and the coloured digits.

Both are pure functions of the MNIST arrays, so they are tested without any download.
"""

import numpy as np

# The original samples MNIST-1k and its validation subsets under NumPy seed 46.
MNIST_1K_SEED = 46
MNIST_1K_SIZE = 1000
MNIST_TEST_SIZE = 10_000

# Images coloured per chunk: bounds the float64 temporaries to ~60 MB for 28x28x3.
_COLOR_CHUNK = 4096


def mnist_1k_indices(num_test: int = MNIST_TEST_SIZE,
                     size: int = MNIST_1K_SIZE) -> np.ndarray:
  """Indices into the MNIST test split that form MNIST-1k, in the order drawn.

  The original calls `np.random.seed(46)` then
  `np.random.choice(range(10000), 1000, replace=False)`; a fresh legacy
  `RandomState(46)` draws the same numbers without touching the global state.

  Returns:
    int64 [size], distinct values in [0, num_test).
  """
  return np.random.RandomState(MNIST_1K_SEED).choice(num_test, size, replace=False)


def color_parameters(index: int) -> tuple[np.ndarray, np.ndarray]:
  """The per-channel scale a ~ U[-1, 1]^3 and bias b ~ U[0, 1]^3 of image `index`.

  The original seeds torch's global RNG with the dataset index and draws
  `rand(3) * 2 - 1` then `rand(3)`. Torch's generator cannot be reproduced with
  NumPy, so the numbers differ while the distributions, and the property that an
  index always gets the same colours, are kept: `default_rng(index)` draws six
  uniforms, the first three give a and the last three b.

  Returns:
    (a, b), float64 [3] each.
  """
  uniforms = _color_uniforms(index)
  return uniforms[:3] * 2.0 - 1.0, uniforms[3:]


def _color_uniforms(index: int) -> np.ndarray:
  return np.random.default_rng(index).random(6)


def colorize_mnist(gray: np.ndarray, first_index: int = 0) -> np.ndarray:
  """Colours grayscale digits as the original MNIST-color dataset does.

  For image i (dataset index first_index + i) with intensities x in [0, 1]:
  y_c = |a_c * x + b_c| for c in RGB, then y / max(y) over the whole image, so the
  brightest value of every image is 255. Colours are fixed per dataset index,
  so the same index always has the same colours.

  Args:
    gray: uint8 [N, H, W, 1].
    first_index: Dataset index of gray[0].

  Returns:
    uint8 [N, H, W, 3], round(255 * y / max(y)).
  """
  if gray.dtype != np.uint8 or gray.ndim != 4 or gray.shape[-1] != 1:
    raise ValueError(f"colorize_mnist expects uint8 [N, H, W, 1], got "
                     f"{gray.dtype} {gray.shape}")
  num = gray.shape[0]
  # Only the six numbers per image need a per-index generator; the rest is vectorised.
  uniforms = np.array([_color_uniforms(first_index + i) for i in range(num)])
  uniforms = uniforms.reshape(num, 1, 1, 6)
  scale, bias = uniforms[..., :3] * 2.0 - 1.0, uniforms[..., 3:]  # As color_parameters.
  out = np.empty(gray.shape[:3] + (3,), np.uint8)
  for start in range(0, num, _COLOR_CHUNK):
    stop = min(start + _COLOR_CHUNK, num)
    x = gray[start:stop].astype(np.float64) / 255.0
    y = np.abs(scale[start:stop] * x + bias[start:stop])
    peak = y.max(axis=(1, 2, 3), keepdims=True)
    # peak = 0 needs y = 0 at every pixel (probability 0); avoid 0 / 0 all the same.
    y /= np.maximum(peak, np.finfo(np.float64).tiny)
    out[start:stop] = np.rint(y * 255.0).astype(np.uint8)
  return out
