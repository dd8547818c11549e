"""DeepCluster on streamed images: an AlexNet run from an image folder, and the feature
pass that keeps the features on the devices."""

import re

import jax
import numpy as np
from PIL import Image

from dti_jax import methods
from configs import deepcluster_alexnet, deepcluster_mnist
import data_pipelines
from dti_jax.ops import kmeans as kmeans_lib
from dti_jax.ops import pca as pca_lib
from dti_jax.methods.deepcluster import clustering, data as deepcluster_data, trainer
from dti_jax.run import partition


def _striped_folder(root, per_class=16, side=72):
  """Three classes (horizontal stripes, vertical stripes, checkerboard), random colours."""
  rng = np.random.default_rng(0)
  grid = np.indices((side, side))
  patterns = {"h": grid[0] // 6 % 2, "v": grid[1] // 6 % 2,
              "x": (grid[0] // 6 + grid[1] // 6) % 2}
  for name, pattern in patterns.items():
    (root / name).mkdir(parents=True)
    for i in range(per_class):
      colours = rng.integers(0, 256, (2, 3))
      image = np.where(pattern[..., None] == 1, colours[0], colours[1]).astype(np.uint8)
      Image.fromarray(image).save(root / name / f"{i:02d}.jpg", quality=95)


def test_alexnet_trains_from_an_image_folder(tmp_path, capsys):
  _striped_folder(tmp_path / "images")
  config = deepcluster_alexnet.get_config("smoke")
  config.data.name = "image_folder_stream"
  config.data.data_dir = str(tmp_path / "images")
  config.data.resize_size = 72
  config.cluster.k = 3
  config.cluster.pca_dim = 8
  config.train.batch_size = 16
  config.eval.batch_size = 16
  methods.train_and_evaluate(config, str(tmp_path / "run"), num_devices=2)
  log = capsys.readouterr().out
  assert "images/h" not in log and "48 images" in log
  nmi = float(re.search(r"epoch 1/1 .*nmi_labels (\S+)", log).group(1))
  assert 0.0 <= nmi <= 1.0
  # 48 images over 16-image batches: 3 training steps, every image clustered.
  assignment = np.asarray(_assignment(tmp_path / "run"))
  assert assignment.shape == (48,) and set(assignment) <= {0, 1, 2}


def _assignment(workdir):
  import orbax.checkpoint as ocp
  from dti_jax.run import checkpointing
  manager = checkpointing.create_manager(str(workdir))
  state = manager.restore(manager.latest_step(), args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))["state"]
  manager.close()
  return state["assignment"]


def test_feature_pass_stays_sharded_and_clusters_as_on_the_host():
  config = deepcluster_mnist.get_config("smoke")
  source = data_pipelines.load_source("digits_embedded")
  mesh = partition.create_mesh(4)
  run = clustering.FeatureExtractor(config, mesh)
  variables = jax.device_put(trainer.init_arrays(config, source)["variables"],
                             partition.replicated(mesh))
  features = run.feature_pass(variables, deepcluster_data.ordered_image_batches(config, source),
                              source.num_examples)
  np.testing.assert_array_equal(features.labels, source.labels)
  for chunk in features.chunks:  # each device holds only its quarter of a 504-row batch
    assert len(chunk.addressable_shards) == 4
    assert {shard.data.shape for shard in chunk.addressable_shards} == {(126, 256)}
  assignment, loss = clustering.cluster(config, run, features, seed=5)
  host = features.to_host()
  assert host.shape == (1797, 256)
  whitening = pca_lib.fit(pca_lib.statistics(host), config.cluster.pca_dim)
  points = pca_lib.l2_normalize(pca_lib.whiten(whitening, host))
  reference = kmeans_lib.kmeans(points, config.cluster.k, num_iters=config.cluster.niter,
                                seed=5)
  agree = np.mean(assignment == np.asarray(reference.assignment))
  assert agree > 0.99, agree  # float32 sums in another order may move a boundary point
  assert abs(loss - float(reference.objectives[-1])) < 1e-3 * abs(loss)
