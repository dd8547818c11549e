"""The benchmark scripts: records of the JAX one, stage arithmetic of the originals' driver."""

import glob
import importlib
import os

import pytest

from configs import digits, mnist, multi_dsprites, tetrominoes
from scripts import benchmark, benchmark_original

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_benchmark_records_both_stages_sharded_and_with_pipeline():
  config = digits.get_config()
  config.train.batch_size = 16
  records = benchmark.benchmark(config, "digits", steps=2, stages=["first", "last"],
                                num_devices=2, pipeline=True)
  first, last = records
  assert first["stage"].startswith("first") and last["stage"].startswith("last")
  assert first["stage"] != last["stage"]
  for record in records:
    assert (record["devices"], record["batch_size"], record["image_shape"]) == (2, 16, [8, 8, 1])
    assert record["step_ms_p90"] >= record["step_ms_median"] > 0
    assert record["images_per_s"] == pytest.approx(16e3 / record["step_ms_median"], rel=0.01)
    assert record["images_per_s_with_pipeline"] > 0 and record["compile_s"] > 0


def test_image_shapes_follow_the_configs_data():
  assert benchmark.image_shape(mnist.get_config()) == (28, 28, 1)
  assert benchmark.image_shape(tetrominoes.get_config("procedural")) == (35, 35, 3)
  assert benchmark.image_shape(multi_dsprites.get_config()) == (64, 64, 3)
  assert benchmark.image_shape(mnist.get_config(), "32,32,3") == (32, 32, 3)
  config = mnist.get_config()
  config.data.name = "nowhere"
  with pytest.raises(ValueError, match="config.data.name='nowhere'.*--image_shape"):
    benchmark.image_shape(config)


def test_all_mode_covers_every_dti_experiment_config():
  files = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))}
  modules = {f: importlib.import_module(f"configs.{f}") for f in files}
  experiments = {f for f, module in modules.items() if hasattr(module, "get_config")
                 and module.get_config().method in ("dti_clustering", "dti_sprites")}
  # image_collection is the generic recipe behind instagram.py and megadepth.py;
  # image_folder reuses the recipes of mnist.py, image_collection, sprites_svhn.py and
  # sprites_instagram.py on the user's images.
  assert experiments - {"image_collection", "image_folder"} == {
      name for name, _ in benchmark.ALL_CONFIGS}


def test_every_config_of_all_mode_loads():
  for name, variant in benchmark.ALL_CONFIGS:
    config = benchmark._load_config(name, variant)
    assert config.method in ("dti_clustering", "dti_sprites")
    assert len(benchmark.image_shape(config)) == 3


def test_original_driver_counts_epochs_to_the_full_sequence():
  assert benchmark_original._epochs_to_last_stage(
      {"curriculum_learning": [5, 15, 20]}) == 20  # dti-clustering configs/mnist.yml
  assert benchmark_original._epochs_to_last_stage(
      {"freeze_sprite": 10, "curriculum_learning": [20], "curriculum_learning_bkg": False}) == 20
  assert benchmark_original._epochs_to_last_stage({"freeze_sprite": 1}) == 1


def test_original_driver_names_a_wrong_checkout(tmp_path):
  with pytest.raises(SystemExit, match="no src/model folder"):
    benchmark_original._import_original(str(tmp_path))
