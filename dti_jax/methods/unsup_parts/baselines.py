"""Reference partitions for the articulated-figure benchmark (spec section 12).

A part-discovery method on the toy benchmark is read against four partitions of the
ground-truth foreground that use no learning beyond k-means: two geometric ones
(a 2x2 grid and 4 vertical strips of each image's foreground bounding box) and two
colour ones (k-means on Lab colour per image, or once over the training set). All
are scored by `parts.foreground_scores`, the code that scores the method.
"""

import numpy as np
import threadpoolctl
from sklearn import cluster

from dti_jax.methods.unsup_parts import part_metrics as parts
from dti_jax.methods.unsup_parts import lab

NUM_PARTS = 4  # K of every published experiment.
PER_IMAGE_KMEANS_IMAGES = 100
GLOBAL_KMEANS_PIXELS = 200_000
_SEED = 0


def _box_bins(labels: np.ndarray, rows: int, cols: int) -> np.ndarray:
  """int64 [N, H, W]: cell (row * cols + col) of the foreground box's rows x cols grid.

  The box spans the foreground pixels' extent [r0, r1 + 1) x [c0, c1 + 1); a pixel
  belongs to the cell holding its centre (ties go to the later cell); pixels
  outside the box get the nearest cell (only foreground pixels are scored).
  """
  fg = np.asarray(labels) > 0
  num, height, width = fg.shape
  cells = np.zeros(fg.shape, np.int64)
  for axis, count, size in ((1, rows, height), (2, cols, width)):
    present = fg.any(axis=3 - axis)  # [N, size] rows (cols) holding foreground.
    first = np.argmax(present, axis=1)
    last = size - 1 - np.argmax(present[:, ::-1], axis=1)
    centres = np.arange(size) + 0.5
    relative = (centres[None] - first[:, None]) / (last - first + 1)[:, None]
    index = np.clip(np.floor(relative * count), 0, count - 1).astype(np.int64)
    shape = (num, size, 1) if axis == 1 else (num, 1, size)
    cells = cells * count + index.reshape(shape)
  return cells


def grid_baseline(labels: np.ndarray) -> np.ndarray:
  """int64 [N, H, W] in 0..3: the 2x2 grid over each image's foreground bounding box."""
  return _box_bins(labels, 2, 2)


def strip_baseline(labels: np.ndarray) -> np.ndarray:
  """int64 [N, H, W] in 0..3: 4 vertical strips (column ranges) of the foreground box."""
  return _box_bins(labels, 1, 4)


def _lab_pixels(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """float64 [M, 3] Lab colour of the masked pixels of uint8 RGB images."""
  return lab.rgb_to_lab(np.asarray(images)[mask] / 255.0, xp=np)


def per_image_colour_kmeans(images: np.ndarray, labels: np.ndarray,
                            num_parts: int = NUM_PARTS) -> np.ndarray:
  """int64 [N, H, W]: k-means on the Lab colours of each image's foreground alone.

  Cluster ids are arbitrary per image (nothing matches them across images),
  background pixels get 0.
  """
  predictions = np.zeros(np.shape(labels), np.int64)
  for i, (image, label) in enumerate(zip(images, labels)):
    fg = label > 0
    if np.count_nonzero(fg) >= num_parts:
      kmeans = cluster.KMeans(num_parts, n_init=3, random_state=_SEED)
      predictions[i][fg] = kmeans.fit_predict(_lab_pixels(image, fg))
  return predictions


def fit_colour_kmeans(images: np.ndarray, labels: np.ndarray,
                      num_parts: int = NUM_PARTS,
                      max_pixels: int = GLOBAL_KMEANS_PIXELS) -> cluster.KMeans:
  """One k-means on the Lab colours of (at most max_pixels random) foreground pixels."""
  pixels = _lab_pixels(images, np.asarray(labels) > 0)
  if len(pixels) > max_pixels:
    rng = np.random.default_rng(_SEED)
    pixels = pixels[rng.choice(len(pixels), max_pixels, replace=False)]
  return cluster.KMeans(num_parts, n_init=3, random_state=_SEED).fit(pixels)


def global_colour_kmeans(kmeans: cluster.KMeans, images: np.ndarray,
                         labels: np.ndarray) -> np.ndarray:
  """int64 [N, H, W]: foreground pixels labelled by their nearest centre, background 0."""
  fg = np.asarray(labels) > 0
  predictions = np.zeros(fg.shape, np.int64)
  predictions[fg] = kmeans.predict(_lab_pixels(images, fg))
  return predictions


def all_baselines(train_images: np.ndarray, train_labels: np.ndarray,
                  test_images: np.ndarray, test_labels: np.ndarray,
                  num_parts: int = NUM_PARTS) -> dict[str, dict[str, float]]:
  """FG-NMI / FG-ARI (x100) of every baseline on the test split.

  Args:
    train_images, test_images: uint8 [N, H, W, 3].
    train_labels, test_labels: int [N, H, W] part labels, 0 = background.

  Returns:
    {"grid", "strips", "per_image_kmeans", "global_kmeans"} -> {"fg_nmi", "fg_ari"};
    per_image_kmeans uses the first PER_IMAGE_KMEANS_IMAGES test images, and
    global_kmeans is fitted on the training foreground.
  """
  first = slice(0, PER_IMAGE_KMEANS_IMAGES)
  # One thread: k-means' OpenMP workers slow down many times over when another
  # process holds a core, and these problems are too small to gain from more.
  with threadpoolctl.threadpool_limits(limits=1):
    kmeans = fit_colour_kmeans(train_images, train_labels, num_parts)
    runs = {
        "grid": (test_labels, grid_baseline(test_labels)),
        "strips": (test_labels, strip_baseline(test_labels)),
        "per_image_kmeans": (test_labels[first], per_image_colour_kmeans(
            test_images[first], test_labels[first], num_parts)),
        "global_kmeans": (test_labels, global_colour_kmeans(kmeans, test_images,
                                                            test_labels)),
    }
  results = {}
  for name, (labels, predictions) in runs.items():
    scores = parts.foreground_scores(labels, predictions, num_parts)
    results[name] = {"fg_nmi": 100 * scores["nmi"], "fg_ari": 100 * scores["ari"]}
  return results
