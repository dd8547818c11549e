"""The interactive particle demo of Deep Latent Particles (the original's
interactive_demo_dlp.py): move particles with the mouse and see the decoded image follow.

  python -m dti_jax.methods.dlp.demo --workdir=workdirs/dlp_shapes --image=scene.png
  python -m dti_jax.methods.dlp.demo --weights=dlp_celeba.msgpack --image=face.png

``--weights`` takes a converted checkpoint of the original
(scripts/convert_dlp_weights.py) instead of a trained workdir; exactly one is given.

A matplotlib window shows the image with its particles (left) and the decoding of the
particle set (right). Controls:
  drag a particle     move it; the decoded image follows
  t                   turn the selected particle off / on (obj_on 0 or its value;
                      object model only)
  j                   jitter the selected particle's features (Gaussian, std 1)
  s                   swap the selected particle's features with the nearest other
                      particle's
  r                   reset every particle to the image's encoding
The image is encoded deterministically with the stored BN statistics (as
`dti_jax.infer`), so no training data is needed.
"""

import sys

from absl import app
from absl import flags
import jax
import numpy as np

PICK_RADIUS_PIXELS = 4.0   # a press this close to a particle (model pixels) selects it
FLAGS = {}                 # defined when run as a program


class ParticleDemo:
  """The demo's state and event handlers on one matplotlib figure (any backend)."""

  def __init__(self, model, state, config, image: np.ndarray, seed: int = 0):
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    from dti_jax.methods.dlp import edit  # pylint: disable=import-outside-toplevel
    self.model, self.state, self.config = model, state, config
    self.side = config.model.image_size
    self.count = config.model.num_particles
    self.image = image
    self.encoded = jax.device_get(edit.encode(model, state, image[None]))
    self.particles = {name: np.array(value) for name, value in self.encoded.items()}
    self.selected, self.dragging = None, False
    self.rng = np.random.default_rng(seed)
    self.figure, (self.left, self.right) = plt.subplots(1, 2, figsize=(8, 4))
    for axes, title in ((self.left, "image and particles"), (self.right, "decoded")):
      axes.set_title(title)
      axes.set_axis_off()
    self.left.imshow(np.clip(image, 0, 1))
    self.markers = self.left.scatter(*self.positions().T[::-1], s=60, facecolors="none",
                                     edgecolors="yellow", linewidths=1.5)
    self.decoded = self.right.imshow(self.decode())
    canvas = self.figure.canvas
    canvas.mpl_connect("button_press_event", self.on_press)
    canvas.mpl_connect("motion_notify_event", self.on_motion)
    canvas.mpl_connect("button_release_event", self.on_release)
    canvas.mpl_connect("key_press_event", self.on_key)

  def positions(self) -> np.ndarray:
    """[K, 2] (row, col) pixels of the foreground particles."""
    return (np.asarray(self.particles["z"][0, :self.count], np.float64) + 1.0) / 2.0 * (
        self.side - 1)

  def decode(self) -> np.ndarray:
    from dti_jax.methods.dlp import edit  # pylint: disable=import-outside-toplevel
    out = jax.device_get(edit.decode(self.model, self.state, self.particles))
    return np.clip(np.asarray(out["reconstruction"][0]), 0, 1)

  def redraw(self) -> None:
    self.markers.set_offsets(self.positions()[:, ::-1])
    if "obj_on" in self.particles:
      on = np.asarray(self.particles["obj_on"][0, :self.count])
      self.markers.set_alpha(None)
      self.markers.set_edgecolors([(1.0, 1.0, 0.0, 0.2 + 0.8 * float(v)) for v in on])
    self.decoded.set_data(self.decode())
    self.figure.canvas.draw_idle()

  def on_press(self, event) -> None:
    if event.inaxes is not self.left or event.xdata is None:
      return
    distances = np.linalg.norm(self.positions() - [event.ydata, event.xdata], axis=1)
    nearest = int(distances.argmin())
    if distances[nearest] <= PICK_RADIUS_PIXELS:
      self.selected, self.dragging = nearest, True

  def on_motion(self, event) -> None:
    if not self.dragging or event.inaxes is not self.left or event.xdata is None:
      return
    z = self.particles["z"]
    z[0, self.selected] = np.array([event.ydata, event.xdata]) * 2.0 / (self.side - 1) - 1.0
    self.redraw()

  def on_release(self, event) -> None:
    del event
    self.dragging = False

  def on_key(self, event) -> None:
    if event.key == "r":
      self.particles = {name: np.array(value) for name, value in self.encoded.items()}
    elif self.selected is None:
      return
    elif event.key == "t" and "obj_on" in self.particles:
      on = self.particles["obj_on"]
      original = self.encoded["obj_on"][0, self.selected]
      on[0, self.selected] = original if on[0, self.selected] == 0 else 0.0
    elif event.key == "j":
      features = self.particles["z_features"]
      features[0, self.selected] += self.rng.normal(size=features.shape[-1])
    elif event.key == "s":
      positions = self.positions()
      distances = np.linalg.norm(positions - positions[self.selected], axis=1)
      distances[self.selected] = np.inf
      other = int(distances.argmin())
      features = self.particles["z_features"]
      features[0, [self.selected, other]] = features[0, [other, self.selected]]
    else:
      return
    self.redraw()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if not FLAGS["image"].value:
    sys.exit("error: --image is required")
  from dti_jax.methods.dlp import edit  # pylint: disable=import-outside-toplevel
  try:
    edit.check_model_source(FLAGS["workdir"].value, FLAGS["weights"].value)
  except ValueError as error:
    sys.exit(f"error: {error}")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from data_pipelines import files  # pylint: disable=import-outside-toplevel
  try:
    config, state, model = edit.load_any(FLAGS["workdir"].value, FLAGS["weights"].value)
    side = config.model.image_size
    image = files.read_model_input(FLAGS["image"].value, (side, side, 3))
  except (ValueError, OSError) as error:
    sys.exit(f"error: {error}")
  ParticleDemo(model, state, config, image)
  plt.show()


def _define_flags() -> None:
  FLAGS["workdir"] = flags.DEFINE_string("workdir", None, "A trained DLP workdir.")
  FLAGS["weights"] = flags.DEFINE_string("weights", None, "Instead of --workdir: a "
                                         "converted checkpoint of the original "
                                         "(scripts/convert_dlp_weights.py).")
  FLAGS["image"] = flags.DEFINE_string("image", None, "The image to encode.")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
