"""The VOC 2007 reader: class-file labels against the XML, torchvision's crops, batches
that are pure functions of their position, and one-line errors for a broken folder."""

import os

import numpy as np
import pytest
from PIL import Image

from data_pipelines import sources, voc

CLASSES = ("bars_h", "bars_v", "checker")


def _texture(name, rng, side):
  """A 0/1 pattern with random period and phase: horizontal bars, vertical bars, checks."""
  period = int(rng.integers(4, 7))
  y, x = np.mgrid[:side, :side] + rng.integers(0, period, 2)[:, None, None]
  if name == "bars_h":
    return (y % period < 2).astype(np.float32)
  if name == "bars_v":
    return (x % period < 2).astype(np.float32)
  return ((y // 3 + x // 3) % 2).astype(np.float32)


def write_voc(root, counts=(("trainval", 48), ("test", 24)), side=32, seed=0):
  """A VOCdevkit/VOC2007 folder of side x side JPEGs: each image's left and right halves
  hold one texture class each (colours random); about one object in six is marked
  difficult. Writes JPEGImages, Annotations and ImageSets/Main ({split}.txt and
  <class>_{split}.txt as the devkit does). Returns {split: (ids, int8 labels [N, C])}."""
  rng = np.random.default_rng(seed)
  folder = os.path.join(root, "VOCdevkit", "VOC2007")
  for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
    os.makedirs(os.path.join(folder, sub), exist_ok=True)
  written, number = {}, 0
  for split, count in counts:
    ids, labels = [], []
    for _ in range(count):
      number += 1
      image_id = f"{number:06d}"
      halves = rng.choice(len(CLASSES), 2)
      difficult = rng.random(2) < 1 / 6
      pixels = np.zeros((side, side, 3), np.float32)
      for half, (k, hard) in enumerate(zip(halves, difficult)):
        pattern = _texture(CLASSES[k], rng, side)[:, :, None]
        dark, bright = rng.uniform(0, 90, 3), rng.uniform(165, 255, 3)
        part = dark + pattern * (bright - dark)
        columns = slice(0, side // 2) if half == 0 else slice(side // 2, side)
        pixels[:, columns] = part[:, columns]
      Image.fromarray(pixels.astype(np.uint8)).save(
          os.path.join(folder, "JPEGImages", f"{image_id}.jpg"), quality=95)
      objects = "".join(
          f"<object><name>{CLASSES[k]}</name><difficult>{int(hard)}</difficult></object>"
          for k, hard in zip(halves, difficult))
      with open(os.path.join(folder, "Annotations", f"{image_id}.xml"), "w") as f:
        f.write(f"<annotation><filename>{image_id}.jpg</filename>{objects}</annotation>")
      row = np.full(len(CLASSES), -1, np.int8)
      for k, hard in zip(halves, difficult):
        row[k] = max(row[k], 0 if hard else 1)
      ids.append(image_id)
      labels.append(row)
    main = os.path.join(folder, "ImageSets", "Main")
    with open(os.path.join(main, f"{split}.txt"), "w") as f:
      f.write("".join(f"{i}\n" for i in ids))
    for k, name in enumerate(CLASSES):
      with open(os.path.join(main, f"{name}_{split}.txt"), "w") as f:
        f.write("".join(f"{i} {row[k]:2d}\n" for i, row in zip(ids, labels)))
    written[split] = (tuple(ids), np.stack(labels))
  return written


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("voc"))
  written = write_voc(root, counts=(("trainval", 12), ("test", 6)))
  return root, written


def test_labels_come_from_the_class_files_and_agree_with_the_xml(folder):
  root, written = folder
  data = voc.read(root, "trainval", num_classes=3)  # VOCdevkit: finds VOC2007 inside
  ids, labels = written["trainval"]
  assert data.classes == CLASSES and data.ids == ids
  np.testing.assert_array_equal(data.labels, labels)
  assert {-1, 0, 1} <= set(np.unique(data.labels))
  np.testing.assert_array_equal(voc.labels_from_annotations(root, data.ids, data.classes),
                                labels)
  assert data.paths[0].endswith(os.path.join("VOC2007", "JPEGImages", f"{ids[0]}.jpg"))
  assert (data.num_examples, data.num_classes, data.image_shape) == (12, 3, (224, 224, 3))


def test_crops_follow_torchvision():
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
  image = Image.fromarray(pixels)
  # A square of the whole area never fits a 40 x 30 image: the fallback is the centre
  # 30 x 30 square (ratio clamped to 1), resized.
  got = voc.random_resized_crop(image, 16, (1.0, 1.0), (1.0, 1.0), rng)
  expected = image.crop((5, 0, 35, 30)).resize((16, 16), Image.Resampling.BILINEAR)
  np.testing.assert_array_equal(got, np.asarray(expected))
  # Drawn boxes: square, of an area fraction inside the scale range, inside the image.
  boxes = np.array([voc.crop_box(40, 30, (0.1, 0.5), (1.0, 1.0), rng) for _ in range(200)])
  sides = boxes[:, 2:] - boxes[:, :2]
  assert np.all(sides[:, 0] == sides[:, 1])
  assert np.all((sides[:, 0] >= round(np.sqrt(0.1 * 1200))) &
                (sides[:, 0] <= round(np.sqrt(0.5 * 1200))))
  assert boxes[:, :2].min() >= 0 and boxes[:, 2].max() <= 40 and boxes[:, 3].max() <= 30
  assert len(np.unique(boxes[:, 0])) > 5  # offsets vary
  # Resize(20) + TenCrop(16): the 26 x 20 resized image's corners, centre, mirrored.
  crops = voc.ten_crops(image, 20, 16)
  resized = np.asarray(image.resize((26, 20), Image.Resampling.BILINEAR))
  assert crops.shape == (10, 16, 16, 3)
  np.testing.assert_array_equal(crops[0], resized[:16, :16])
  np.testing.assert_array_equal(crops[3], resized[4:, 10:])
  np.testing.assert_array_equal(crops[4], resized[2:18, 5:21])
  np.testing.assert_array_equal(crops[5], resized[:16, 10:][:, ::-1])  # mirror's top left
  np.testing.assert_array_equal(crops[9], resized[2:18, 5:21][:, ::-1])


def test_batches_are_functions_of_their_position(folder):
  root, _ = folder
  data = voc.read(root, "trainval")
  order = np.random.default_rng(3).permutation(data.num_examples)
  kwargs = {"global_batch_size": 4, "size": 16, "scale": (0.1, 0.5), "seed": 5, "epoch": 2,
            "workers": 2}
  full = list(voc.training_batches(data, order, **kwargs))
  resumed = list(voc.training_batches(data, order, start_batch=1, **kwargs))
  assert len(full) == 3 and len(resumed) == 2
  for a, b in zip(full[1:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
  np.testing.assert_array_equal(full[2]["label"], data.labels[order[8:12]])
  halves = list(voc.training_batches(data, order, process_index=1, process_count=2, **kwargs))
  np.testing.assert_array_equal(halves[0]["image"], full[0]["image"][2:])
  test = voc.read(root, "test")
  batches = list(voc.eval_batches(test, global_batch_size=4, size=16, resize=20,
                                  random_crops=False, scale=(0.1, 0.5), seed=0, workers=2))
  assert [b["image"].shape for b in batches] == [(4, 10, 16, 16, 3)] * 2
  np.testing.assert_array_equal(batches[1]["_mask"], [True, True, False, False])
  np.testing.assert_array_equal(batches[1]["image"][1],
                                voc.ten_crops(voc.load_rgb(test.paths[5]), 20, 16))
  assert not batches[1]["image"][2:].any()
  views = list(voc.eval_batches(test, global_batch_size=8, size=16, resize=20,
                                random_crops=True, scale=(0.1, 0.5), seed=0, views=3,
                                workers=2))
  assert views[0]["image"].shape == (8, 3, 16, 16, 3)
  assert not np.array_equal(views[0]["image"][0, 0], views[0]["image"][0, 1])


def test_the_in_memory_source_holds_centre_crops(folder):
  root, written = folder
  source = sources.load_source("voc2007", data_dir=root, split="test", image_size=16)
  assert source.images.shape == (6, 16, 16, 3) and source.num_classes is None
  path = os.path.join(root, "VOCdevkit", "VOC2007", "JPEGImages", f"{written['test'][0][0]}.jpg")
  expected = Image.open(path).convert("RGB").resize((16, 16), Image.Resampling.BILINEAR)
  np.testing.assert_array_equal(source.images[0], np.asarray(expected))


def _break(root, what):
  folder = os.path.join(root, "VOCdevkit", "VOC2007")
  main = os.path.join(folder, "ImageSets", "Main")
  if what == "images":
    os.rename(os.path.join(folder, "JPEGImages"), os.path.join(folder, "gone"))
    return os.path.join(folder, "JPEGImages")
  if what == "jpeg":
    first = min(os.listdir(os.path.join(folder, "JPEGImages")))
    os.remove(os.path.join(folder, "JPEGImages", first))
    return first
  if what == "line":
    with open(os.path.join(main, "bars_v_trainval.txt"), "a") as f:
      f.write("000099 2\n")
    return "bars_v_trainval.txt line 13"
  if what == "list":
    with open(os.path.join(main, "trainval.txt"), "a") as f:
      f.write("000777\n")
    return "000777"
  for name in os.listdir(main):
    if name.endswith("_trainval.txt"):
      os.remove(os.path.join(main, name))
  return "no <class>_trainval.txt files"


@pytest.mark.parametrize("what, error", [
    ("images", FileNotFoundError), ("jpeg", FileNotFoundError), ("line", ValueError),
    ("list", ValueError), ("class_files", FileNotFoundError)])
def test_a_broken_folder_is_one_line_naming_what(tmp_path, what, error):
  write_voc(str(tmp_path), counts=(("trainval", 12),))
  named = _break(str(tmp_path), what)
  with pytest.raises(error) as info:
    voc.read(str(tmp_path), "trainval")
  assert named in str(info.value) and "\n" not in str(info.value)


def test_wrong_class_count_and_split_are_refused(folder):
  root, _ = folder
  with pytest.raises(ValueError, match=r"holds 3 <class>_trainval.txt files, "
                                       r"config.voc.num_classes=20"):
    voc.read(root, "trainval", num_classes=20)
  with pytest.raises(ValueError, match="split 'eval' is not one of"):
    voc.read(root, "eval")
  with pytest.raises(FileNotFoundError, match="nowhere not found"):
    voc.read(os.path.join(root, "nowhere"), "test")
