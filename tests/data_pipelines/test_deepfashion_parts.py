"""DeepFashion in-shop segmentation on a tiny fake tree: split files, colour codes,
the longer-side resize with padding, and the full-image protocol's label resizes."""

import json

import numpy as np
import pytest
from PIL import Image

import data_pipelines
from data_pipelines import cub_parts
from data_pipelines import deepfashion_parts

NAMES = {"train": ["img_highres/WOMEN/Dresses/id_00000002/02_1_front.jpg"],
         "query": ["img_highres/MEN/Denim/id_00000080/01_1_front.jpg"],
         "gallery": ["img_highres/MEN/Denim/id_00000080/01_2_side.jpg"]}


def _save(path, pixels):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path, format="PNG")   # exact pixels under .jpg names


def _write_example(root, name, image, labels):
  folder = root / deepfashion_parts.SEGMENTATION_DIR
  _save(folder / name, image)
  colours = deepfashion_parts.PART_COLOURS[labels].astype(np.uint8)
  _save(folder / name.replace(".jpg", "_segment.png"), colours)


def _write_split_files(root):
  for split, names in NAMES.items():
    document = {"info": {}, "images": [{"id": i, "file_name": n} for i, n in enumerate(names)]}
    path = root / deepfashion_parts.SEGMENTATION_DIR / f"DeepFashion_segmentation_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))


def _ramp_image(height, width):
  """Column c has grey value 10 c (an exact 2 x 2 average: 20 x + 5)."""
  return np.broadcast_to((10 * np.arange(width, dtype=np.uint8))[None, :, None],
                         (height, width, 3)).copy()


def _all_labels(height, width):
  """Every label 0..15 somewhere, and a different label at every even (row, col)."""
  return (np.arange(height * width).reshape(height, width) % 16).astype(np.uint8)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  root = tmp_path_factory.mktemp("inshop")
  _write_split_files(root)
  _write_example(root, NAMES["train"][0], _ramp_image(40, 22), _all_labels(40, 22))
  _write_example(root, NAMES["query"][0], _ramp_image(40, 20), _all_labels(40, 20))
  halves = np.full((40, 22), 2, np.uint8)
  halves[:, 11:] = 12
  _write_example(root, NAMES["gallery"][0], _ramp_image(40, 22), halves)
  masks = root / "supervisedlabels"
  grey = np.zeros((40, 22), np.uint8)
  grey[:20] = 255
  _save(masks / (NAMES["gallery"][0] + ".png"), grey)
  _save(masks / (NAMES["query"][0] + ".png"), np.zeros((40, 20), np.uint8))
  return root


def test_colour_codes_map_to_labels_by_rgb_sum():
  sums = deepfashion_parts.PART_COLOURS.sum(axis=1)
  assert len(set(sums.tolist())) == 16                 # the sum identifies the code
  segment = deepfashion_parts.PART_COLOURS[None].astype(np.uint8)   # [1, 16, 3]
  np.testing.assert_array_equal(deepfashion_parts.labels_from_colours(segment)[0],
                                np.arange(16))
  red = np.array([[[255, 0, 0], [0, 100, 0]]], np.uint8)
  assert deepfashion_parts.labels_from_colours(red).tolist() == [[11, 1]]
  with pytest.raises(ValueError, match=r"x_segment.png has 1 pixels of no part colour, "
                                       r"e.g. RGB \[1, 2, 3\] at row 0, column 1"):
    deepfashion_parts.labels_from_colours(np.array([[[0, 0, 0], [1, 2, 3]]], np.uint8),
                                          "x_segment.png")


def test_longer_side_resize_and_padding(tree):
  images, labels = deepfashion_parts.read(str(tree), "train", side=20)
  assert images.shape == (1, 20, 20, 3) and labels.shape == (1, 20, 20)
  # 40 x 22 halves to 20 x 11; 9 columns of padding, 4 before and 5 after.
  image, label = images[0, :, :, 0], labels[0]
  np.testing.assert_array_equal(image[:, 4:15], np.broadcast_to(20 * np.arange(11) + 5,
                                                                (20, 11)))
  assert (image[:, :4] == 5).all() and (image[:, 15:] == 205).all()   # edges repeated
  # cv2's nearest takes source pixel (2 y, 2 x); padding is label 0.
  np.testing.assert_array_equal(label[:, 4:15], _all_labels(40, 22)[::2, ::2])
  assert (label[:, :4] == 0).all() and (label[:, 15:] == 0).all()
  test_images, test_labels = deepfashion_parts.read(str(tree), "test", side=20)
  assert test_images.shape == (2, 20, 20, 3)   # query, then gallery
  np.testing.assert_array_equal(test_labels[0][:, 5:15], _all_labels(40, 20)[::2, ::2])
  assert set(np.unique(test_labels[1])) == {0, 2, 12}


def test_source_registration(tree):
  source = data_pipelines.load_source("deepfashion_parts", data_dir=str(tree), split="test",
                                      image_size=32, num_examples=1)
  assert source.images.shape == (1, 32, 32, 3) and source.masks.dtype == np.uint8
  assert source.masks.max() == 15 and source.labels.tolist() == [-1]


def test_full_protocol_resizes_and_legacy_labels(tree):
  masks = tree / "supervisedlabels"
  nearest = list(deepfashion_parts.full_eval_samples(str(tree), str(masks), side=16))
  legacy = list(deepfashion_parts.full_eval_samples(str(tree), str(masks), side=16,
                                                    legacy_label_resize=True))
  assert [s["file_name"] for s in nearest] == NAMES["query"] + NAMES["gallery"]
  sample = nearest[1]
  # Shorter side 22 -> 16, the longer int(16 * 40 / 22) = 29; no padding.
  assert sample["image"].shape == (29, 16, 3) and sample["image"].dtype == np.float32
  assert sample["labels"].shape == (29, 16) and sample["mask"].shape == (29, 16)
  assert set(np.unique(sample["labels"])) == {2, 12}
  assert set(np.unique(legacy[1]["labels"])) - {2, 12}   # invented in-between labels
  expected = Image.fromarray(_ramp_image(40, 22)).resize((16, 29), Image.Resampling.BILINEAR)
  np.testing.assert_allclose(sample["image"], np.asarray(expected) - cub_parts.CAFFE_MEAN)
  assert sample["mask"][:13].all() and not sample["mask"][16:].any()   # top half: 255
  assert not nearest[0]["mask"].any()
  no_mask = next(deepfashion_parts.full_eval_samples(str(tree), limit=1))
  assert "mask" not in no_mask


def test_missing_files_are_one_line_errors(tmp_path, tree):
  _write_split_files(tmp_path)
  cases = [
      (lambda: deepfashion_parts.read(str(tmp_path / "nowhere"), "train"),
       r"DeepFashion_segmentation_train.json not found; .*In-shop Clothes Retrieval"),
      (lambda: data_pipelines.load_source("deepfashion_parts", split="test"),
       "no data directory"),
      (lambda: deepfashion_parts.read(str(tmp_path), "train"),
       r"Anno/segmentation/img_highres/WOMEN/Dresses/id_00000002/02_1_front.jpg not found"),
      (lambda: deepfashion_parts.full_eval_samples(str(tree), str(tmp_path / "nothing")),
       r"nothing not found; masks_dir must hold the supervised"),
  ]
  for call, message in cases:
    with pytest.raises(FileNotFoundError, match=message) as info:
      call()
    assert "\n" not in str(info.value)
  name = NAMES["query"][0]
  _write_example(tmp_path, name, _ramp_image(4, 4), np.zeros((4, 4), np.uint8))
  (tmp_path / deepfashion_parts.SEGMENTATION_DIR / name.replace(".jpg", "_segment.png")
   ).unlink()
  with pytest.raises(FileNotFoundError, match=r"01_1_front_segment.png not found"):
    deepfashion_parts.read(str(tmp_path), "test")
  with pytest.raises(ValueError, match=r"split='val' is not one of"):
    deepfashion_parts.read(str(tree), "val")
