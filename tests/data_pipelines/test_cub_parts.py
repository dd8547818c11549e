"""CUB for part discovery on tiny fake trees: the CMR crop (rounding, fill, keypoints),
cv2's resize rules, the notebook's evaluation geometry and keypoint sampling."""

import numpy as np
import pytest
from PIL import Image

import data_pipelines
from data_pipelines import cub_eval, cub_parts
from tests.trainers.parts_standins import write_cmr

ALBATROSS = "001.Black_footed_Albatross/Black_Footed_Albatross_{:04d}_1.jpg"
LAYSAN = "002.Laysan_Albatross/Laysan_Albatross_{:04d}_2.jpg"


def _save(root, relative, pixels):
  """PNG content under the original's .jpg names: exact pixels, original file names."""
  path = root / relative
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path, format="PNG")


def _pattern(height, width):
  """uint8 [H, W, 3] with pixel (r, c) = (r, c, 7): the crop's origin can be read off."""
  rows, cols = np.indices((height, width))
  return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def _parts(points):
  """{keypoint index: (x, y)} 1-based visible keypoints -> CMR's [3, 15]."""
  parts = np.zeros((3, cub_parts.NUM_KEYPOINTS))
  for index, (x, y) in points.items():
    parts[:, index] = (x, y, 1)
  return parts


# Image 0 (40 x 50): box x 0..19, y 10..39 (0-based). Grown by 5 %: x -1..20, y 8.5..40.5,
# rounded half-to-even to -1..20 and 8..40 (22 x 33), squared by round(5.5) = 6 columns
# before: the crop is x -7..25, y 8..40, 7 columns left of and one row below the image.
CROP_LEFT, CROP_TOP, CROP_SIDE = -7, 8, 33


@pytest.fixture(scope="module")
def cmr_tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("CUB_200_2011")
  image = _pattern(40, 50)
  mask = np.zeros((40, 50), np.uint8)
  mask[20:30, 5:15] = 1
  _save(root / "images", ALBATROSS.format(1), image)
  # Image 1: a 64 x 64 square box (grown by 3.2 px per side -> 70 x 70 after rounding),
  # values chosen so that averaging and truncation differ from rounding.
  blocks = np.full((80, 80, 3), 11, np.uint8)
  blocks[::2, ::2] = 10
  _save(root / "images", LAYSAN.format(2), blocks)
  records = [
      (ALBATROSS.format(1), (1, 11, 20, 40), mask,
       _parts({0: (11, 21), 4: (1, 40)})),
      (LAYSAN.format(2), (9, 9, 72, 72), np.ones((80, 80), np.uint8), _parts({})),
  ]
  write_cmr(root, "train", records)
  write_cmr(root, "test", records[:1])   # a single record: loadmat squeezes it
  return root


def test_crop_box_rounding_is_the_originals():
  assert cub_parts.square_crop_box((1, 11, 20, 40)) == (CROP_LEFT, CROP_TOP, CROP_SIDE)


def test_train_crop_lands_where_the_box_says(cmr_tree):
  crops = cub_parts.read_train(str(cmr_tree), "train", side=CROP_SIDE)
  image, mask = crops.images[0], crops.masks[0]
  assert crops.images.shape == (2, CROP_SIDE, CROP_SIDE, 3) and crops.images.dtype == np.uint8
  # Scale 1: the crop itself. Crop pixel (i, j) is image pixel (i + 8, j - 7).
  np.testing.assert_array_equal(image[:32, 7:], _pattern(40, 50)[8:40, 0:26])
  assert (image[:, :7] == 1).all() and (image[32] == 1).all()   # outside: 1, uint8 scale
  expected_mask = np.zeros((CROP_SIDE, CROP_SIDE), np.uint8)
  expected_mask[12:22, 12:22] = 1                              # rows 20..29, cols 5..14
  np.testing.assert_array_equal(mask, expected_mask)
  # Keypoint 0 at 1-based (11, 21): 0-based (10, 20), crop (17, 12); keypoint 4 at
  # (1, 40): (0, 39) -> (7, 31). Invisible ones are 0.5 (the original's zeroed [-1, 1]).
  assert crops.keypoints[0, 0] == pytest.approx([17 / 33, 12 / 33])
  assert crops.keypoints[0, 4] == pytest.approx([7 / 33, 31 / 33])
  assert crops.visible[0].tolist() == [i in (0, 4) for i in range(15)]
  assert (crops.keypoints[0, ~crops.visible[0]] == 0.5).all()
  assert crops.class_ids.tolist() == [1, 2] and crops.rel_paths[1] == LAYSAN.format(2)


def test_train_resize_truncates_and_nearest_takes_the_first_pixel(cmr_tree):
  # Image 1's box 8..71 grows to 4.8..74.2 -> 5..74 (70 px); side 35 halves it exactly.
  assert cub_parts.square_crop_box((9, 9, 72, 72)) == (5, 5, 70)
  crops = cub_parts.read_train(str(cmr_tree), "train", side=35)
  # Rows and columns 5, 6 start even/odd pairs: each 2 x 2 block holds 10, 11, 11, 11,
  # mean 10.75, truncated to 10 (rounding would give 11).
  assert (crops.images[1] == 10).all()
  np.testing.assert_array_equal(crops.masks[1], 1)   # 70 x 70 inside the 80 x 80 mask


def test_single_record_file_and_source_registration(cmr_tree):
  source = data_pipelines.load_source("cub_parts", data_dir=str(cmr_tree), split="test",
                                      image_size=64)
  assert source.images.shape == (1, 64, 64, 3) and source.masks.shape == (1, 64, 64)
  assert source.masks.dtype == np.uint8 and set(np.unique(source.masks)) == {0, 1}
  assert source.labels.tolist() == [-1] and source.num_classes is None
  capped = data_pipelines.load_source("cub_parts", data_dir=str(cmr_tree), split="train",
                                      num_examples=1)
  assert capped.images.shape == (1, 256, 256, 3)


def test_cv2_resize_rules():
  ramp = np.array([[0.0, 10.0, 20.0, 30.0]])
  # Half-pixel centres, clamped at the edges, no antialiasing.
  np.testing.assert_allclose(cub_parts.resize_linear_cv2(ramp, 1, 8)[0],
                             [0, 2.5, 7.5, 12.5, 17.5, 22.5, 27.5, 30])
  np.testing.assert_allclose(cub_parts.resize_linear_cv2(np.arange(6.0)[None], 1, 2)[0],
                             [1.0, 4.0])
  # cv2's legacy nearest: floor(d * S / T), not PIL's floor((d + 0.5) * S / T).
  np.testing.assert_array_equal(cub_parts.resize_nearest_cv2(np.arange(4)[None], 1, 8)[0],
                                [0, 0, 1, 1, 2, 2, 3, 3])
  np.testing.assert_array_equal(cub_parts.resize_nearest_cv2(np.arange(8)[None], 1, 3)[0],
                                [0, 2, 5])


# ------------------------------ evaluation protocol ------------------------------------

COLOUR = np.array([200, 100, 50], np.uint8)


@pytest.fixture(scope="module")
def official_tree(tmp_path_factory):
  """Official-release files for three images: 1 and 3 test, 2 train."""
  root = tmp_path_factory.mktemp("official") / "CUB_200_2011"
  masks = root.parent / "supervisedlabels"
  names = {1: ALBATROSS.format(1), 2: ALBATROSS.format(2), 3: LAYSAN.format(3)}
  image = np.zeros((60, 100, 3), np.uint8)
  image[5:45, 10:57] = COLOUR                      # exactly the box of image 1
  _save(root / "images", names[1], image)
  _save(root / "images", names[2], np.zeros((30, 30, 3), np.uint8))
  _save(root / "images", names[3], np.full((50, 70, 3), 90, np.uint8))
  grey = np.zeros((50, 70), np.uint8)
  grey[:, :35] = 255                               # left half: bird
  _save(masks, names[3].replace(".jpg", ".png"), grey)
  _save(masks, names[1].replace(".jpg", ".png"), np.zeros((60, 100), np.uint8))
  (root / "images.txt").write_text("".join(f"{i} {n}\n" for i, n in names.items()))
  (root / "train_test_split.txt").write_text("1 0\n2 1\n3 0\n")
  (root / "bounding_boxes.txt").write_text(
      "1 10.0 5.0 47.0 40.0\n2 0.0 0.0 30.0 30.0\n3 0.0 0.0 70.0 50.0\n")
  points = {1: {0: (30, 25), 1: (10.5, 10), 2: (5, 20), 4: (56, 44), 5: (55, 44)},
            2: {}, 3: {0: (20, 25), 1: (69, 3)}}
  lines = []
  for image_id, visible in points.items():
    for part in range(15):
      x, y = visible.get(part, (0.0, 0.0))
      lines.append(f"{image_id} {part + 1} {x} {y} {int(part in visible)}\n")
  (root / cub_parts.PART_LOCS_FILE).parent.mkdir()
  (root / cub_parts.PART_LOCS_FILE).write_text("".join(lines))
  return root, masks


def test_box_crop_resize_cut_and_keypoints(official_tree):
  root, _ = official_tree
  samples = list(cub_eval.keypoint_eval_samples(str(root)))
  assert [s["image_id"] for s in samples] == [1, 3]
  assert [s["class_id"] for s in samples] == [1, 2]
  sample = samples[0]
  # Box 47 x 40 -> Resize(256): 256 x int(256 * 47 / 40) = 300 -> cut 12 columns, 6 left.
  assert sample["image"].shape == (256, 288, 3) and sample["image"].dtype == np.float32
  # The crop is exactly the coloured box (no black row or column creeps in).
  np.testing.assert_allclose(sample["image"], np.broadcast_to(
      COLOUR - cub_parts.CAFFE_MEAN, (256, 288, 3)), atol=1e-4)
  # Factor 256 / 40 = 6.4, no -1 shift. (30, 25) -> (20, 20) -> (128, 128) -> x - 6.
  # (10.5, 10) -> 0.5 * 6.4 - 6 < 0 and (5, 20) -> clamped to x = 0 -> -6: invisible.
  # (56, 44) -> 294.4 - 6 = 288.4 >= 288: invisible; (55, 44) -> 282, 249.6 stays.
  assert sample["visible"].tolist() == [i in (0, 5) for i in range(15)]
  np.testing.assert_allclose(sample["keypoints"][0], [122, 128], atol=1e-4)
  np.testing.assert_allclose(sample["keypoints"][5], [282, 249.6], atol=1e-4)
  assert (sample["keypoints"][~sample["visible"]] == 0).all()
  assert sample["keypoints"].dtype == np.float32
  train = list(cub_eval.keypoint_eval_samples(str(root), split="train"))
  assert [s["image_id"] for s in train] == [2] and not train[0]["visible"].any()
  assert len(list(cub_eval.keypoint_eval_samples(str(root), limit=1))) == 1


def test_full_image_with_supervised_mask(official_tree):
  root, masks = official_tree
  sample, = list(cub_eval.full_image_eval_samples(str(root), str(masks)))[1:]
  # 70 x 50 -> 358 x 256 (int(256 * 70 / 50) = 358) -> 352 wide, 3 columns off the left.
  assert sample["image"].shape == (256, 352, 3) and sample["mask"].shape == (256, 352)
  np.testing.assert_allclose(sample["image"], np.broadcast_to(
      90 - cub_parts.CAFFE_MEAN, (256, 352, 3)), atol=1e-4)
  np.testing.assert_allclose(sample["keypoints"][:2], [[20 * 5.12 - 3, 128],
                                                       [69 * 5.12 - 3, 3 * 5.12]], atol=1e-4)
  assert sample["visible"][:2].all() and sample["mask"].dtype == np.uint8
  # Mask columns 0..34 of 70 are bird: the boundary near 35 x 5.12 - 3 = 176.
  assert sample["mask"][:, :170].all() and not sample["mask"][:, 183:].any()


def test_binarize_mask_reads_both_png_conventions():
  for high in (1, 255):
    grey = np.zeros((4, 8), np.uint8)
    grey[:, :3] = high
    mask = cub_eval.binarize_mask(Image.fromarray(grey), (8, 4))
    np.testing.assert_array_equal(mask[0], [1, 1, 1, 0, 0, 0, 0, 0])


def test_cut_borders_centre_crops_to_multiples_of_16():
  array = np.arange(37 * 21).reshape(37, 21)   # 5 rows (2 above), 5 columns (2 left) go
  cut, xy, visible = cub_eval.cut_borders(
      array, np.array([[2.0, 2.0], [1.9, 5.0], [17.9, 33.9], [18.0, 5.0]]),
      np.array([True, True, True, True]))
  np.testing.assert_array_equal(cut, array[2:34, 2:18])
  assert visible.tolist() == [True, False, True, False]
  np.testing.assert_allclose(xy, [[0, 0], [0, 0], [15.9, 31.9], [0, 0]], atol=1e-5)


def test_sample_nearest_reads_round_half_even_of_x_minus_half():
  label_map = np.arange(4)[:, None] * 100 + np.arange(16)[None, :]
  keypoints = np.array([[10.0, 1.0],    # 9.5 -> 10, 0.5 -> 0 (halves to even)
                        [11.0, 2.0],    # 10.5 -> 10, 1.5 -> 2
                        [0.0, 0.0],     # -0.5 -> 0
                        [15.99, 3.99],  # 15.49 -> 15, 3.49 -> 3
                        [12.6, 0.4]])   # 12.1 -> 12, -0.1 -> 0
  np.testing.assert_array_equal(cub_eval.sample_nearest(label_map, keypoints),
                                [10, 210, 0, 315, 12])
  with pytest.raises(ValueError, match=r"keypoint \[16.0, 0.0\] lies outside the 4x16 map"):
    cub_eval.sample_nearest(label_map, np.array([[16.0, 0.0]]))


def test_missing_files_are_one_line_errors(tmp_path, cmr_tree, official_tree):
  cases = [
      (lambda: cub_parts.read_train(str(tmp_path), "train"),
       r"cachedir/cub/data/train_cub_cleaned.mat not found; .*CMR"),
      (lambda: data_pipelines.load_source("cub_parts", split="train"), "no data directory"),
      (lambda: list(cub_eval.keypoint_eval_samples(str(tmp_path))),
       r"images.txt not found; .*CUB_200_2011.tgz"),
      (lambda: cub_eval.full_image_eval_samples(str(official_tree[0]),
                                                 str(tmp_path / "nothing")),
       r"nothing not found; masks_dir must hold the supervised"),
  ]
  (tmp_path / "renamed").mkdir()
  (tmp_path / "renamed" / "cachedir").symlink_to(cmr_tree / "cachedir")
  cases.append((lambda: cub_parts.read_train(str(tmp_path / "renamed"), "train"),
                r"images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_1.jpg not found"))
  for call, message in cases:
    with pytest.raises(FileNotFoundError, match=message) as info:
      call()
    assert "\n" not in str(info.value)
  with pytest.raises(ValueError, match=r"split='val' is not one of"):
    cub_parts.read_train(str(cmr_tree), "val")
