"""Tiny stand-ins of CUB-200-2011 (official files, CMR's annotation cache, supervised
masks) and DeepFashion in-shop segmentation, in the original layouts, for the part
discovery configs' end-to-end tests. Every image has the same size, so the evaluation
compiles once."""

import json

import numpy as np
import scipy.io
from PIL import Image

from data_pipelines import cub_parts, deepfashion_parts

HEIGHT, WIDTH = 48, 64


def _save(path, pixels):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(pixels).save(path, format="PNG")   # exact pixels under .jpg names


def _bird(rng):
  """uint8 image [H, W, 3] with a coloured ellipse and its 0/1 mask."""
  rows, cols = np.indices((HEIGHT, WIDTH))
  cy, cx = rng.uniform(18, 30), rng.uniform(24, 40)
  mask = ((rows - cy) / 12) ** 2 + ((cols - cx) / 18) ** 2 < 1
  image = np.full((HEIGHT, WIDTH, 3), rng.integers(0, 255, 3), np.uint8)
  image[mask] = rng.integers(0, 255, 3)
  image[mask & (cols > cx)] = rng.integers(0, 255, 3)     # a two-tone body
  return image, mask.astype(np.uint8), (cx, cy)


def write_cmr(root, split: str, records) -> None:
  """CMR's {split}_cub_cleaned.mat: a 1 x N struct array `images` with nested bbox;
  records are (rel_path, (x1, y1, x2, y2) 1-based, mask, parts [3, 15])."""
  fields = [("rel_path", "O"), ("bbox", "O"), ("mask", "O"), ("parts", "O")]
  table = np.zeros((1, len(records)), dtype=fields)
  for i, (rel_path, bbox, mask, parts) in enumerate(records):
    table[0, i]["rel_path"] = rel_path
    table[0, i]["bbox"] = dict(zip(("x1", "y1", "x2", "y2"), map(float, bbox)))
    table[0, i]["mask"] = mask
    table[0, i]["parts"] = parts
  path = root / cub_parts.CMR_ANNOTATIONS.format(split=split)
  path.parent.mkdir(parents=True, exist_ok=True)
  scipy.io.savemat(path, {"images": table})


def write_cub(root, num_images: int = 6, seed: int = 0):
  """CUB_200_2011 under ``root`` (images 1, 2 train, the rest test, boxes = whole image),
  cachedir/cub/data/{train,test}_cub_cleaned.mat and ``root/supervisedlabels``."""
  rng = np.random.default_rng(seed)
  masks_dir = root / "supervisedlabels"
  names, records, lines = {}, [], []
  for image_id in range(1, num_images + 1):
    name = f"001.Black_footed_Albatross/Black_Footed_Albatross_{image_id:04d}_1.jpg"
    names[image_id] = name
    image, mask, (cx, cy) = _bird(rng)
    _save(root / "images" / name, image)
    _save(masks_dir / name.replace(".jpg", ".png"), mask * 255)
    parts = np.zeros((3, cub_parts.NUM_KEYPOINTS))
    for part in range(cub_parts.NUM_KEYPOINTS):
      visible = rng.random() < 0.8
      x, y = cx + rng.uniform(-16, 16), cy + rng.uniform(-10, 10)
      parts[:, part] = (x + 1, y + 1, 1) if visible else (0, 0, 0)
      lines.append(f"{image_id} {part + 1} {x + 1 if visible else 0.0} "
                   f"{y + 1 if visible else 0.0} {int(visible)}\n")
    records.append((name, (1, 1, WIDTH, HEIGHT), mask, parts))
  (root / "images.txt").write_text("".join(f"{i} {n}\n" for i, n in names.items()))
  (root / "train_test_split.txt").write_text(
      "".join(f"{i} {int(i <= 2)}\n" for i in names))
  (root / "bounding_boxes.txt").write_text(
      "".join(f"{i} 0.0 0.0 {WIDTH}.0 {HEIGHT}.0\n" for i in names))
  (root / "parts").mkdir(exist_ok=True)
  (root / cub_parts.PART_LOCS_FILE).write_text("".join(lines))
  write_cmr(root, "train", records)
  write_cmr(root, "test", records[2:])
  return root, masks_dir


def write_deepfashion(root, num_train: int = 6, seed: int = 0):
  """The in-shop folder: Anno/segmentation/ images, *_segment.png maps and the split
  json files (num_train training images, one query and one gallery image), and the
  supervised masks in ``root/supervisedlabels``."""
  rng = np.random.default_rng(seed)
  splits = {"train": [f"img_highres/WOMEN/Dresses/id_{i:08d}/01_1_front.jpg"
                      for i in range(num_train)],
            "query": ["img_highres/MEN/Denim/id_00000080/01_1_front.jpg"],
            "gallery": ["img_highres/MEN/Denim/id_00000080/01_2_side.jpg"]}
  folder = root / deepfashion_parts.SEGMENTATION_DIR
  for split, names in splits.items():
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"DeepFashion_segmentation_{split}.json").write_text(json.dumps(
        {"info": {}, "images": [{"id": i, "file_name": n} for i, n in enumerate(names)]}))
    for name in names:
      labels = np.zeros((HEIGHT, WIDTH // 2), np.uint8)
      labels[8:24, 6:26] = rng.integers(1, 16)
      labels[24:44, 6:26] = rng.integers(1, 16)
      image = rng.integers(0, 255, (HEIGHT, WIDTH // 2, 3)).astype(np.uint8)
      _save(folder / name, image)
      _save(folder / name.replace(".jpg", "_segment.png"),
            deepfashion_parts.PART_COLOURS[labels].astype(np.uint8))
      _save(root / "supervisedlabels" / (name + ".png"), (labels > 0).astype(np.uint8) * 255)
  return root
