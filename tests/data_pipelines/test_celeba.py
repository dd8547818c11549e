"""DVE's CelebA on a tiny fake tree: split membership, the crop, and landmarks that land
where the drawn pixels do."""

import numpy as np
import pytest
from PIL import Image

import data_pipelines
from data_pipelines import celeba

# (x, y) in the 178 x 218 aligned image: eyes, nose, mouth corners.
LANDMARKS = np.array([[60, 80], [120, 80], [90, 120], [65, 150], [115, 150]], np.float32)
PARTITION = {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 1, 7: 2, 8: 0}
MAFL_TRAIN, MAFL_TEST = (7, 2), (8, 3)   # listed out of partition order on purpose


def _name(i):
  return f"{i:06d}.png"


def write_fake_tree(root, with_mafl_test=True):
  """A DVE-layout CelebA of 8 faces (PNG) with 5 landmarks drawn as 3 x 3 white spots."""
  (root / celeba.IMAGE_DIR).mkdir(parents=True)
  for folder in ("Anno", "Eval", "MAFL"):
    (root / folder).mkdir()
  rows = []
  for i in PARTITION:
    points = LANDMARKS + i          # a different face per image
    image = np.zeros((218, 178, 3), np.uint8)
    image[:30] = (255, 0, 0)        # above the crop: must vanish
    image[30:208] = (0, 0, 90)
    for x, y in points.astype(int):
      image[y - 1:y + 2, x - 1:x + 2] = 255   # a 3 x 3 spot centred on the landmark
    Image.fromarray(image).save(root / celeba.IMAGE_DIR / _name(i))
    rows.append(_name(i) + " " + " ".join(str(int(v)) for v in points.ravel()))
  header = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x "
            "leftmouth_y rightmouth_x rightmouth_y")
  (root / celeba.LANDMARKS_FILE).write_text(f"{len(rows)}\n{header}\n" + "\n".join(rows) + "\n")
  (root / celeba.PARTITION_FILE).write_text(
      "".join(f"{_name(i)} {p}\n" for i, p in PARTITION.items()))
  (root / celeba.MAFL_FILES["mafl_train"]).write_text(
      "".join(_name(i) + "\n" for i in MAFL_TRAIN))
  if with_mafl_test:
    (root / celeba.MAFL_FILES["mafl_test"]).write_text(
        "".join(_name(i) + "\n" for i in MAFL_TEST))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("celeba")
  write_fake_tree(root)
  return root


def test_splits_and_shapes(tree):
  train = data_pipelines.load_source("celeba_dve", data_dir=str(tree), split="train")
  # Official train (0) minus every MAFL image, in partition order, border kept.
  assert train.images.shape == (3, 160, 160, 3) and train.landmarks is None
  assert train.images[..., 0].max() == 255      # the spots, ...
  assert np.median(train.images[..., 0]) == 0   # ... but none of the red band above row 30
  for image, i in zip(train.images, (1, 4, 5)):
    with Image.open(tree / celeba.IMAGE_DIR / _name(i)) as original:
      np.testing.assert_array_equal(image, celeba.preprocess(original, keep_border=True))
  mafl = {split: celeba.read(str(tree), split) for split in ("mafl_train", "mafl_test")}
  assert mafl["mafl_train"][0].shape == (2, 128, 128, 3)
  assert mafl["mafl_test"][1].shape == (2, 5, 2)
  # Partition-file order: image 2 before 7, 3 before 8 (image i's landmarks are shifted by i).
  expected = {"mafl_train": (2, 7), "mafl_test": (3, 8)}
  for split, (_, landmarks) in mafl.items():
    firsts = [celeba.transform_landmarks(LANDMARKS + i)[0] for i in expected[split]]
    np.testing.assert_allclose(landmarks[:, 0], firsts, atol=1e-5)
  capped = data_pipelines.load_source("celeba_dve", data_dir=str(tree), split="mafl_test",
                                      num_examples=1)
  assert capped.num_examples == 1 and capped.landmarks.shape == (1, 5, 2)
  assert capped.landmarks.dtype == np.float32


def test_landmark_transform_is_the_spec():
  y, x = celeba.transform_landmarks(np.array([89.0, 119.0]))
  assert (y, x) == pytest.approx(((119 - 30) * 160 / 178 - 16, 89 * 160 / 178 - 16))
  assert celeba.transform_landmarks(np.array([89.0, 119.0]), side=64) == pytest.approx(
      [(119 - 30) * 80 / 178 - 8, 89 * 80 / 178 - 8])


def test_drawn_landmarks_land_where_the_coordinates_say(tree):
  images, landmarks = celeba.read(str(tree), "mafl_test")
  for image, points in zip(images.astype(np.float64), landmarks):
    brightness = image[..., 1]      # the spots are the only green
    for y, x in points:
      top, left = int(round(y)) - 4, int(round(x)) - 4
      window = brightness[top:top + 9, left:left + 9]
      rows, cols = np.indices(window.shape)
      centroid = (np.sum(rows * window) / window.sum() + top,
                  np.sum(cols * window) / window.sum() + left)
      # The original's map ignores PIL's half-pixel centres: 0.5 (160/178 - 1) = -0.05 px.
      assert centroid == pytest.approx((y, x), abs=0.1)


def test_missing_files_and_bad_splits_are_one_line(tmp_path):
  write_fake_tree(tmp_path, with_mafl_test=False)
  with pytest.raises(FileNotFoundError, match=r"MAFL/testing.txt not found; .*DVE.*celeba"):
    celeba.read(str(tmp_path), "train")
  with pytest.raises(FileNotFoundError, match="no data directory"):
    data_pipelines.load_source("celeba_dve", split="train")
  with pytest.raises(ValueError, match=r"config.data.split='eval' is not one of"):
    celeba.read(str(tmp_path), "eval")
  with pytest.raises(ValueError, match="config.data.image_size=100 must be a positive multiple"):
    celeba.read(str(tmp_path), "train", side=100)
