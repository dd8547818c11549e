"""VOC 2007 classification from DeepCluster weights, end to end on a VOC-format stand-in:
the scorer against scikit-learn, the trained and frozen parts, learning, converted weights."""

import json
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics

from configs import deepcluster_voc07
from dti_jax import methods
from dti_jax.methods.deepcluster import network as network_lib
from dti_jax.methods.deepcluster import voc_classification, voc_evaluation
from dti_jax.nets import alexnet
from scripts import convert_deepcluster_checkpoint
from tests.data_pipelines.test_voc import write_voc
from tests.interop import torch_writer
from tests.interop.test_deepcluster_weights import alexnet_state_dict


def _sklearn_map(labels, scores):
  """The original's scoring: per class, the non-difficult images, sklearn's AP of the
  scores minus 1e-5 x the 0/1 label; the mean over classes."""
  aps = []
  for k in range(labels.shape[1]):
    kept = labels[:, k] != 0
    truth = (labels[kept, k] == 1).astype(np.int64)
    aps.append(metrics.average_precision_score(truth, scores[kept, k] - 1e-5 * truth))
  return np.asarray(aps)


def test_average_precision_is_sklearns_with_difficult_images_left_out():
  rng = np.random.default_rng(0)
  labels = rng.choice(np.array([-1, 0, 1], np.int8), size=(60, 4), p=[0.5, 0.2, 0.3])
  scores = np.round(rng.normal(size=(60, 4)) + labels, 1)  # rounded: many ties
  np.testing.assert_allclose(voc_evaluation.class_average_precisions(labels, scores),
                             _sklearn_map(labels, scores), rtol=1e-12)
  truth = rng.random(40) < 0.4
  values = rng.normal(size=40)
  assert voc_evaluation.average_precision(truth, values) == pytest.approx(
      metrics.average_precision_score(truth, values), rel=1e-12)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory, fast_compile_module):
  del fast_compile_module
  root = tmp_path_factory.mktemp("voc_run")
  write_voc(str(root))
  network = alexnet.MiniAlexNet(sobel=True, width=32)
  variables = jax.jit(lambda: network.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)),
                                           False))()
  weights = root / "mini.msgpack"
  weights.write_bytes(flax.serialization.msgpack_serialize(jax.device_get(dict(variables))))
  return root, str(weights)


def _config(root, weights, variant, steps):
  config = deepcluster_voc07.get_config(variant)
  config.data.data_dir = str(root)
  config.voc.weights = weights
  config.train.num_steps = steps
  config.log.checkpoint_every_steps = 1000  # only the final checkpoint
  return config


def test_eval_forward_is_the_networks_and_the_schedule_halves(stand_in):
  root, weights = stand_in
  config = _config(root, weights, "mnist", 1)
  arch, network, variables = voc_classification.loaded(weights)
  assert arch == "mini_alexnet"
  params = dict(variables["params"])
  params["top"] = {"kernel": np.random.default_rng(1).normal(size=(32, 3)).astype(np.float32),
                   "bias": np.ones(3, np.float32)}
  images = jnp.asarray(np.random.default_rng(2).normal(size=(2, 28, 28, 3)), jnp.float32)
  fc7 = jax.jit(lambda v, x: network.apply(v, x, False))(variables, images)
  expected = np.maximum(fc7, 0) @ params["top"]["kernel"] + 1.0
  got = jax.jit(lambda p, s, x: voc_classification.logits(network, arch, p, s, x))(
      params, variables["batch_stats"], images)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  rates = [float(voc_classification.learning_rate(config, jnp.int32(t))) for t in
           (0, 199, 200, 450)]
  np.testing.assert_allclose(rates, [0.01, 0.01, 0.005, 0.0025], rtol=1e-6)


def test_fc6_8_learns_the_stand_in_scores_like_sklearn_and_resumes(stand_in, capsys):
  root, weights = stand_in
  untrained = methods.train_and_evaluate(_config(root, weights, "mnist", 0),
                                         str(root / "untrained"), num_devices=2)
  workdir = root / "fc6_8"
  final = methods.train_and_evaluate(_config(root, weights, "mnist", 30), str(workdir),
                                     num_devices=2)
  # Stopped after 21 steps (inside an epoch of 6), then resumed: the same run.
  methods.train_and_evaluate(_config(root, weights, "mnist", 21), str(root / "resumed"),
                             num_devices=2)
  resumed = methods.train_and_evaluate(
      _config(root, weights, "mnist", 30), str(root / "resumed"), num_devices=2)
  assert f"resumed from {root / 'resumed'} at step 21" in capsys.readouterr().out
  assert resumed == final
  with open(workdir / "final_scores.json") as f:
    assert json.load(f) == final
  saved = np.load(workdir / "voc_scores_test.npz")
  aps = _sklearn_map(saved["labels"], saved["scores"])
  assert final["map"] == pytest.approx(aps.mean(), abs=1e-12)
  assert [final[f"ap_{name}"] for name in saved["classes"]] == pytest.approx(aps, abs=1e-12)
  assert 0 in saved["labels"]  # difficult images were there, and left out above
  chance = np.mean([np.mean(saved["labels"][saved["labels"][:, k] != 0, k] == 1)
                    for k in range(3)])
  assert untrained["map"] < 0.8 and final["map"] > max(untrained["map"] + 0.15, chance + 0.3)
  # fc6-8 and every BN trained; the convs and BN statistics are the weights'.
  trained = network_lib.load_variables(str(workdir))
  given = network_lib.load_variables(weights)
  for layer in (1, 2, 3):
    np.testing.assert_array_equal(trained["params"][f"conv{layer}"]["kernel"],
                                  given["params"][f"conv{layer}"]["kernel"])
    np.testing.assert_array_equal(trained["batch_stats"][f"bn{layer}"]["var"],
                                  given["batch_stats"][f"bn{layer}"]["var"])
    assert not np.array_equal(trained["params"][f"bn{layer}"]["scale"],
                              given["params"][f"bn{layer}"]["scale"])
  events = [name for name in os.listdir(workdir) if name.startswith("events")]
  assert events


def test_converted_alexnet_fine_tunes_every_layer(tmp_path, stand_in):
  root, _ = stand_in
  checkpoint = str(tmp_path / "checkpoint.pth.tar")
  torch_writer.save_legacy(checkpoint, {"epoch": 3, "arch": "alexnet",
                                        "state_dict": alexnet_state_dict()}, location="cuda:0")
  weights = str(tmp_path / "alexnet.msgpack")
  convert_deepcluster_checkpoint.convert(checkpoint, weights, None)
  config = _config(root, weights, "all,frozen_bn,ten_crops", 2)
  config.data.resize_size, config.data.crop_size = 72, 64
  config.voc.num_classes, config.voc.score_train = 3, True
  config.train.batch_size = config.eval.batch_size = 8
  workdir = tmp_path / "all"
  final = methods.train_and_evaluate(config, str(workdir), num_devices=1)
  for split, key in (("test", "map"), ("trainval", "train_map")):
    saved = np.load(workdir / f"voc_scores_{split}.npz")
    assert final[key] == pytest.approx(_sklearn_map(saved["labels"], saved["scores"]).mean(),
                                       abs=1e-12)
  trained = network_lib.load_variables(str(workdir))
  given = network_lib.load_variables(weights)
  assert trained["params"]["fc6"]["kernel"].shape == (256, 16)  # re-created for 64 x 64
  assert not np.array_equal(trained["params"]["conv1"]["kernel"],
                            given["params"]["conv1"]["kernel"])
  np.testing.assert_array_equal(trained["batch_stats"]["bn5"]["mean"],
                                given["batch_stats"]["bn5"]["mean"])


@pytest.mark.parametrize("change, message", [
    ({"weights": ""}, r"config.voc.weights is empty"),
    ({"train_from": "pool5"}, r"config.voc.train_from='pool5'"),
    ({"train_from": "conv4"}, r"config.voc.train_from='conv4': mini_alexnet has conv1..conv3"),
    ({"min_scale": 0.0}, r"config.voc.min_scale=0.0"),
    ({"num_classes": 20}, r"holds 3 <class>_trainval.txt files, config.voc.num_classes=20"),
])
def test_bad_settings_are_one_line_before_anything_is_written(stand_in, tmp_path, change,
                                                              message):
  root, weights = stand_in
  config = _config(root, weights, "mnist", 1)
  config.voc.update(change)
  with pytest.raises(ValueError, match=message) as info:
    methods.train_and_evaluate(config, str(tmp_path / "run"))
  assert "\n" not in str(info.value)
  assert not (tmp_path / "run").exists()
