"""Part discovery on stand-ins of the real datasets, in the original layouts: the CUB and
DeepFashion configs train and score, and a released checkpoint (the original's key names,
narrow) is converted and scored on CUB end to end, its keypoint NMI / ARI recomputed
independently with scikit-learn."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as sk_metrics

from dti_jax import methods
from configs import unsup_parts_cub, unsup_parts_deepfashion
from data_pipelines import cub_eval
from dti_jax.methods.unsup_parts import evaluate as evaluate_parts, segment as segment_parts
from dti_jax.methods.unsup_parts import deeplab_resnet
from scripts import convert_torch_weights
from tests.interop import torch_writer
from tests.interop.test_unsup_parts_weights import K, WIDTH, segmenter_state_dict
from tests.trainers import parts_standins


@pytest.fixture(scope="module")
def cub_tree(tmp_path_factory):
  return parts_standins.write_cub(tmp_path_factory.mktemp("cub") / "CUB_200_2011")


@pytest.fixture(scope="module")
def released(tmp_path_factory):
  """A model_60000.pth with the original's layout (width 4, K = 3), converted."""
  root = tmp_path_factory.mktemp("released")
  state = segmenter_state_dict(head=True)
  torch_writer.save_zip(str(root / "model_60000.pth"), {
      "model_state_dict": {f"module.{name}": value for name, value in state.items()}})
  convert_torch_weights.main(["--kind=unsup_parts", f"--input={root / 'model_60000.pth'}",
                              f"--output={root / 'model_60000.npz'}"])
  return str(root / "model_60000.npz")


def _cub_config(data_dir, masks_dir):
  config = unsup_parts_cub.get_config("smoke")
  with config.unlocked():
    config.data.data_dir = str(data_dir)
    config.eval.masks_dir = str(masks_dir)
    config.model.width = WIDTH
    config.model.num_parts = K
  return config


def _reference_keypoint_scores(weights, data_dir):
  """FG-NMI / FG-ARI recomputed without the evaluator: flax forward, PyTorch's
  align_corners=False resize written out in numpy, nearest = round half even (x - 0.5)."""
  model = deeplab_resnet.DeepLabV2ResNet50(num_parts=K, width=WIDTH)
  flat = dict(np.load(weights))
  variables = {}
  for key, value in flat.items():
    node = variables
    *parents, leaf = key.split("/")
    for name in parents:
      node = node.setdefault(name, {})
    node[leaf] = value
  truth, predicted = [], []
  for sample in cub_eval.keypoint_eval_samples(str(data_dir), "test"):
    logits = np.asarray(model.apply(variables, sample["image"][None], train=False))[0]
    height, width = sample["image"].shape[:2]

    def taps(out, size):
      source = np.maximum((np.arange(out) + 0.5) * size / out - 0.5, 0)
      low = np.minimum(np.floor(source).astype(int), size - 1)
      return low, np.minimum(low + 1, size - 1), source - low

    (y0, y1, fy), (x0, x1, fx) = taps(height, logits.shape[0]), taps(width, logits.shape[1])
    rows = logits[y0] * (1 - fy)[:, None, None] + logits[y1] * fy[:, None, None]
    full = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    labels = full.argmax(-1)
    for index in np.flatnonzero(sample["visible"]):
      x, y = sample["keypoints"][index]
      truth.append(index)
      predicted.append(labels[int(np.rint(y - 0.5)), int(np.rint(x - 0.5))])
  return (100 * sk_metrics.normalized_mutual_info_score(truth, predicted),
          100 * sk_metrics.adjusted_rand_score(truth, predicted))


def test_released_checkpoint_converts_and_scores_on_cub(cub_tree, released, tmp_path):
  data_dir, masks_dir = cub_tree
  config = _cub_config(data_dir, masks_dir)
  out = str(tmp_path / "scores")
  scores = evaluate_parts.evaluate(config, released, out)
  nmi, ari = _reference_keypoint_scores(released, data_dir)
  assert nmi > 1.0                                   # the parts are not all one label
  np.testing.assert_allclose(scores["fg_nmi"], nmi, atol=1e-6)
  np.testing.assert_allclose(scores["fg_ari"], ari, atol=1e-6)
  assert 0 <= scores["nmi_full"] <= 100 and np.isfinite(scores["keypoint_error"])
  with open(os.path.join(out, "final_scores.json")) as f:
    assert json.load(f)["fg_nmi"] == scores["fg_nmi"]
  assert os.path.exists(os.path.join(out, "part_maps.png"))
  # The same weights segment a folder of new images.
  images = tmp_path / "new"
  images.mkdir()
  Image.fromarray(np.full((40, 70, 3), 120, np.uint8)).save(images / "a.png")
  segment_parts.segment_folder(config, jax.device_get(
      __import__("dti_jax.methods.unsup_parts.trainer", fromlist=["x"]).segmenter_state(
          config, released)), str(images), str(tmp_path / "maps"), None, 64)
  labels = np.asarray(Image.open(tmp_path / "maps" / "a_labels.png"))
  assert labels.shape == (64, 112) and 1 <= labels.min() and labels.max() <= K


def test_a_backbone_file_is_refused_as_a_trained_model(cub_tree, tmp_path):
  state = segmenter_state_dict(head=False)
  torch_writer.save_legacy(str(tmp_path / "caffe.pth"), state)
  convert_torch_weights.main(["--kind=resnet50_caffe", f"--input={tmp_path / 'caffe.pth'}",
                              f"--output={tmp_path / 'caffe.npz'}"])
  with pytest.raises(ValueError, match="no part head"):
    evaluate_parts.evaluate(_cub_config(*cub_tree), str(tmp_path / "caffe.npz"),
                            str(tmp_path / "out"))


def test_cub_smoke_config_trains_and_scores(cub_tree, tmp_path, fast_compile):
  del fast_compile
  data_dir, masks_dir = cub_tree
  config = unsup_parts_cub.get_config("smoke")
  with config.unlocked():
    config.data.data_dir = str(data_dir)
    config.eval.masks_dir = str(masks_dir)
    config.data.num_examples = 6
    config.train.num_steps = 1
    config.model.width = 4
  final = methods.train_and_evaluate(config, str(tmp_path / "cub"), num_devices=1)
  assert {"fg_nmi", "fg_ari", "nmi_full", "ari_full", "keypoint_error"} <= set(final)


def test_deepfashion_smoke_config_trains_and_scores(tmp_path, fast_compile):
  del fast_compile
  root = parts_standins.write_deepfashion(tmp_path / "inshop")
  config = unsup_parts_deepfashion.get_config("smoke")
  with config.unlocked():
    config.data.data_dir = str(root)
    config.data.num_examples = 6
    config.train.num_steps = 1
    config.model.width = 4
    config.eval.batch_size = 2
    config.eval.masks_dir = str(root / "supervisedlabels")
  final = methods.train_and_evaluate(config, str(tmp_path / "df"), num_devices=1)
  assert 0 <= final["fg_nmi"] <= 100 and 0 <= final["nmi_full"] <= 100


def test_paper_configs_carry_the_released_hyper_parameters():
  """The released config.yaml (spec 6-7), shared by CUB and DeepFashion."""
  for get_config, steps in ((unsup_parts_cub.get_config, 60_000),
                            (unsup_parts_deepfashion.get_config, 100_000)):
    c = get_config()
    assert (c.model.segmenter, c.model.num_parts, c.model.width) == ("deeplab", 4, 64)
    assert (c.loss.w_feature, c.loss.w_visual, c.loss.w_contrastive, c.loss.w_equiv,
            c.loss.w_concentration) == (5.0, 30.0, 2300.0, 5700.0, 0.0)
    assert (c.loss.temperature, c.loss.feature_reduction) == (0.19, "sum")
    assert (c.perceptual.kind, tuple(c.perceptual.tap_weights)) == ("vgg19", (0.33, 1.0))
    assert (c.warp.sigma, c.warp.max_rotation_degrees, tuple(c.warp.scale_range),
            c.warp.max_translation) == (0.01, 60.0, (0.7, 2.0), 0.1)
    assert (c.jitter.brightness, c.jitter.contrast, c.jitter.saturation, c.jitter.hue,
            c.jitter.p_jitter, c.jitter.p_grayscale) == (0.3, 0.3, 0.2, 0.2, 0.8, 0.2)
    assert (c.optim.kind, c.optim.lr, c.optim.head_lr_multiplier, c.optim.momentum,
            c.optim.weight_decay, c.optim.clip_norm, c.optim.poly_power,
            c.optim.poly_total_steps) == ("sgd", 1e-5, 10.0, 0.9, 5e-4, 5.0, 0.9, 100_000)
    assert (c.train.batch_size, c.train.num_steps, c.data.random_flip) == (6, steps, True)
    assert not c.model.allow_random_init


@pytest.mark.parametrize("change, error, message", [
    ({}, ValueError, "config.model.backbone_weights is empty"),
    ({"model.backbone_weights": "missing.npz"}, FileNotFoundError,
     "config.model.backbone_weights='missing.npz': no such file"),
    ({"model.allow_random_init": True, "perceptual.weights": "vgg.npz"}, FileNotFoundError,
     "config.perceptual.weights='vgg.npz': no such file"),
    ({"data.data_dir": "/nonexistent/CUB_200_2011"}, FileNotFoundError, "/nonexistent"),
])
def test_bad_input_fails_in_one_line_before_writing(cub_tree, tmp_path, change, error,
                                                    message):
  config = unsup_parts_cub.get_config()
  with config.unlocked():
    config.data.data_dir = str(cub_tree[0])
    for key, value in change.items():
      section, name = key.split(".")
      config[section][name] = value
  workdir = tmp_path / "run"
  with pytest.raises(error, match=message) as raised:
    methods.train_and_evaluate(config, str(workdir), num_devices=1)
  assert "\n" not in str(raised.value)
  assert not workdir.exists()
