"""The retrieval benchmark end to end, through the loop, on Oxford- and Paris-format
stand-ins: a few "landmarks" (scenes of coloured shapes) seen in shifted crops, queries
with boxes, good / ok / junk lists. Weights: a saved MNIST-sized network, and an AlexNet
state dict in the original's key layout converted by the project's script."""

import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageDraw

from configs import deepcluster_retrieval
from data_pipelines import retrieval_datasets
from dti_jax import methods
from dti_jax.methods.deepcluster import retrieval
from dti_jax.metrics import retrieval as retrieval_metrics
from dti_jax.nets import alexnet
from scripts import convert_deepcluster_checkpoint
from tests.interop import test_deepcluster_weights, torch_writer

LANDMARKS, VIEWS, DISTRACTORS = 4, 6, 6


def _scene(rng, size=160):
  texture = rng.integers(0, 256, (size // 8, size // 8, 3)).astype(np.uint8)
  canvas = Image.fromarray(texture).resize((size, size), Image.BILINEAR)
  draw = ImageDraw.Draw(canvas)
  for _ in range(14):
    x, y = (int(v) for v in rng.integers(0, size - 16, 2))
    w, h = (int(v) for v in rng.integers(14, 64, 2))
    fill = tuple(int(c) for c in rng.integers(0, 256, 3))
    (draw.rectangle if rng.random() < 0.5 else draw.ellipse)([x, y, x + w, y + h], fill=fill)
  return canvas


def _view(scene, rng):
  """A shifted 4:3 crop of the scene, landscape 120 x 90 or portrait 90 x 120."""
  wide = rng.random() < 0.7
  w, h = (int(rng.integers(130, 152)),) * 2
  w, h = (w, w * 3 // 4) if wide else (h * 3 // 4, h)
  x, y = int(rng.integers(0, 160 - w)), int(rng.integers(0, 160 - h))
  return scene.crop((x, y, x + w, y + h)).resize((120, 90) if wide else (90, 120),
                                                 Image.BILINEAR)


def write_standin(root, prefix, seed, oxford):
  """Writes root/jpg and root/lab; returns {query: (positives, junk)}."""
  rng = np.random.default_rng(seed)
  os.makedirs(root / "jpg")
  os.makedirs(root / "lab")
  truth = {}
  for landmark in range(LANDMARKS):
    scene = _scene(rng)
    names = [f"{prefix}_l{landmark}_{i:06d}" for i in range(VIEWS)]
    for name in names:
      _view(scene, rng).save(root / "jpg" / f"{name}.jpg", quality=92)
    for q in range(2):
      query = f"l{landmark}_{q + 1}"
      image = names[q]
      width, height = Image.open(root / "jpg" / f"{image}.jpg").size
      box = (0.15 * width, 0.1 * height, 0.9 * width, 0.95 * height)
      label = f"oxc1_{image}" if oxford else image
      (root / "lab" / f"{query}_query.txt").write_text(
          f"{label} " + " ".join(f"{v:.1f}" for v in box) + "\n")
      good, ok, junk = [names[q], *names[2:5]], [names[5]], [names[1 - q]]
      for kind, listed in (("good", good), ("ok", ok), ("junk", junk)):
        (root / "lab" / f"{query}_{kind}.txt").write_text("\n".join(listed) + "\n")
      truth[query] = (set(good) | set(ok), set(junk))
  for i in range(DISTRACTORS):
    _view(_scene(rng), rng).save(root / "jpg" / f"{prefix}_other_{i:06d}.jpg", quality=92)
  return truth


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
  root = tmp_path_factory.mktemp("retrieval")
  oxford = write_standin(root / "oxford", "ox", 0, oxford=True)
  paris = write_standin(root / "paris", "paris", 1, oxford=False)
  return root, {"oxford": oxford, "paris": paris}


def _random_map(truth, names, rng, draws=200):
  """The expected mAP of random rankings of ``names``."""
  return np.mean([retrieval_metrics.mean_average_precision(
      [list(rng.permutation(names)) for _ in truth], [p for p, _ in truth.values()],
      [j for _, j in truth.values()])[0] for _ in range(draws)])


def _check_run(config, workdir, truth, num_devices):
  final = methods.train_and_evaluate(config, str(workdir), num_devices=num_devices)
  stage = config.retrieval.dataset
  with open(workdir / "final_scores.json") as f:
    assert json.load(f) == final
  with open(workdir / "rankings.json") as f:
    saved = json.load(f)
  images = sorted(os.path.splitext(n)[0] for n in os.listdir(config.data.data_dir + "/jpg"))
  assert saved["images"] == images and saved["queries"] == sorted(truth)
  ranked = [[images[i] for i in row] for row in saved["rankings"]]
  assert all(sorted(row) == images for row in ranked)
  recomputed, aps = retrieval_metrics.mean_average_precision(
      ranked, [truth[q][0] for q in saved["queries"]], [truth[q][1] for q in saved["queries"]])
  assert final[f"{stage}_map"] == pytest.approx(recomputed, abs=1e-12)
  for query, ap in zip(saved["queries"], aps):
    assert final[f"{stage}_ap/{query}"] == pytest.approx(ap, abs=1e-12)
  chance = _random_map(truth, images, np.random.default_rng(0))
  assert chance < 0.35
  # Random weights still rank crops of the same scene first: over twice the chance level.
  assert final[f"{stage}_map"] > max(2 * chance, chance + 0.25), (final[f"{stage}_map"], chance)
  return final


def test_mnist_sized_network_multiscale_on_oxford(standins, tmp_path, fast_compile,
                                                  monkeypatch):
  root, truth = standins
  learned_on = []
  fit = retrieval.whitening
  monkeypatch.setattr(retrieval, "whitening", lambda extractor, dataset: (
      learned_on.append(dataset.image_dir), fit(extractor, dataset))[1])
  config = deepcluster_retrieval.get_config("oxford,smoke,multiscale")
  network = alexnet.MiniAlexNet(sobel=True, width=16)
  variables = jax.jit(lambda key: network.init(key, jnp.zeros((1, 28, 28, 1)), False))(
      jax.random.key(0))
  weights = tmp_path / "mini.msgpack"
  weights.write_bytes(flax.serialization.msgpack_serialize(jax.device_get(dict(variables))))
  config.retrieval.weights = str(weights)
  config.data.data_dir = str(root / "oxford")
  config.retrieval.whitening_data_dir = str(root / "paris")
  config.retrieval.pad_multiple = 80        # sides 48, 64, 80: one padded shape
  _check_run(config, tmp_path / "run", truth["oxford"], num_devices=None)
  assert learned_on == [str(root / "paris" / "jpg")]   # the whitening: the other dataset


def test_converted_alexnet_checkpoint_on_paris(standins, tmp_path, fast_compile):
  root, truth = standins
  checkpoint = str(tmp_path / "checkpoint.pth.tar")
  torch_writer.save_legacy(checkpoint, {"epoch": 3, "arch": "alexnet",
                                        "state_dict": test_deepcluster_weights.alexnet_state_dict()})
  weights = str(tmp_path / "alexnet.msgpack")
  convert_deepcluster_checkpoint.convert(checkpoint, weights, None)
  config = deepcluster_retrieval.get_config("paris,smoke,alexnet")
  config.retrieval.weights = weights
  config.data.data_dir = str(root / "paris")
  config.retrieval.whitening_data_dir = str(root / "oxford")
  config.data.crop_size = config.retrieval.max_side = config.retrieval.pad_multiple = 128
  _check_run(config, tmp_path / "run", truth["paris"], num_devices=1)


def test_bad_input_is_one_line(standins, tmp_path):
  root, _ = standins
  config = deepcluster_retrieval.get_config("oxford,smoke")
  config.data.data_dir = str(root / "oxford")
  config.retrieval.whitening_data_dir = str(root / "paris")
  with pytest.raises(ValueError, match="config.retrieval.weights is empty"):
    methods.train_and_evaluate(config, str(tmp_path / "run"), num_devices=1)
  config.retrieval.weights = str(tmp_path / "none")
  config.data.data_dir = str(tmp_path / "missing")
  with pytest.raises(FileNotFoundError, match=r"missing does not exist \(the dataset folder\)"):
    methods.train_and_evaluate(config, str(tmp_path / "run"), num_devices=1)
  broken = tmp_path / "broken"
  os.makedirs(broken / "jpg")
  os.makedirs(broken / "lab")
  Image.new("RGB", (8, 8)).save(broken / "jpg" / "a.jpg")
  (broken / "lab" / "q_query.txt").write_text("oxc1_a 0 0 4 4\n")
  (broken / "lab" / "q_good.txt").write_text("a\n")
  with pytest.raises(FileNotFoundError, match=r"q_ok.txt does not exist"):
    retrieval_datasets.load(str(broken))
  (broken / "lab" / "q_query.txt").write_text("oxc1_b 0 0 4 4\n")
  with pytest.raises(ValueError, match=r"q_query.txt names b, which is not in"):
    retrieval_datasets.load(str(broken))
  with pytest.raises(ValueError, match="unknown variant"):
    deepcluster_retrieval.get_config("tokyo")


def test_reader_crops_queries_after_the_resize(standins):
  root, truth = standins
  dataset = retrieval_datasets.load(str(root / "oxford"))
  assert dataset.query_names == tuple(sorted(truth["oxford"]))
  assert dataset.positives[0] == frozenset(truth["oxford"][dataset.query_names[0]][0])
  path = dataset.image_path(dataset.query_images[0])
  whole = retrieval_datasets.read_image(path, 64)
  assert max(whole.shape[:2]) == 64
  ratio = 64 / max(Image.open(path).size)
  x1, y1, x2, y2 = np.round(dataset.query_boxes[0] * np.float32(ratio)).astype(int)
  crop = retrieval_datasets.read_image(path, 64, dataset.query_boxes[0])
  np.testing.assert_array_equal(crop, whole[y1:y2, x1:x2])
  assert retrieval_datasets.output_shape(path, 64, dataset.query_boxes[0]) == crop.shape[:2]
