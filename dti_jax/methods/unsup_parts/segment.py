"""Writes part maps of a folder of new images with a trained (or converted) segmenter.

  python -m dti_jax.methods.unsup_parts.segment --workdir=workdirs/parts_toy --images=my_birds \
      --out=part_maps
  python -m dti_jax.methods.unsup_parts.segment --config=configs/unsup_parts_cub.py \
      --weights=cub_model_60000.npz --images=my_birds --out=part_maps [--masks=my_masks]

Each image is resized so that its shorter side is ``--side`` (default: 64 for the toy
segmenter, 256 for DeepLab), centre-cropped to multiples of 16, and segmented in eval
mode. For every input ``NAME.EXT`` the output folder gets ``NAME_parts.png`` (the image
overlaid with the part colours of the PASCAL-VOC palette) and ``NAME_labels.png`` (uint8
labels: 1..K the parts, 0 background where a mask of the same name in ``--masks`` says
so; without masks every pixel gets a part).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = {}  # defined when run as a program, so importing this module defines none
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CUT_MULTIPLE = 16


def default_side(config) -> int:
  """The shorter side new images get: the training side, 64 for the toy segmenter and 256
  for DeepLab."""
  return 64 if config.model.segmenter == "toy" else 256


def restore_state(workdir: str, config):
  """The state of the latest checkpoint of a part-discovery workdir, on the host."""
  import jax  # pylint: disable=import-outside-toplevel
  from dti_jax.methods.unsup_parts import trainer as unsup_parts  # pylint: disable=import-outside-toplevel
  from dti_jax.run import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  state, _ = workdir_lib.restore_trained(workdir, unsup_parts.abstract_state(config))
  return jax.device_get(state)


def load_workdir(workdir: str):
  """(config, state) of the latest checkpoint of a part-discovery workdir."""
  from dti_jax.run import workdir as workdir_lib  # pylint: disable=import-outside-toplevel
  config = workdir_lib.read_config(workdir, "unsup_parts")
  return config, restore_state(workdir, config)


def read_image(path: str, side: int, mode: str = "RGB"):
  """float32 [h, w, C] in [0, 1]: shorter side ``side`` (bilinear), cut to multiples of 16."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  try:
    image = Image.open(path).convert(mode)
  except OSError as error:
    raise ValueError(f"{path}: not a readable image ({error})") from None
  scale = side / min(image.size)
  size = (max(CUT_MULTIPLE, round(image.size[0] * scale)),
          max(CUT_MULTIPLE, round(image.size[1] * scale)))
  array = np.asarray(image.resize(size, Image.BILINEAR), np.float32) / 255.0
  height, width = (s - s % CUT_MULTIPLE for s in array.shape[:2])
  top, left = (array.shape[0] - height) // 2, (array.shape[1] - width) // 2
  array = array[top:top + height, left:left + width]
  return array[..., None] if array.ndim == 2 else array


def create_predictor(config):
  """Jitted (state, images [1, h, w, C]) -> eval-mode part logits [1, h, w, K]."""
  import jax  # pylint: disable=import-outside-toplevel
  from dti_jax.methods.unsup_parts import trainer as unsup_parts  # pylint: disable=import-outside-toplevel
  return jax.jit(lambda state, images: unsup_parts.predict_logits(state, images, config=config))


def label_image(predict, state, image):
  """int [h, w] part labels 1..K (argmax) of one [h, w, C] image."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  return np.asarray(predict(state, image[None]))[0].argmax(-1) + 1


def write_part_maps(out_dir: str, stem: str, image, labels, num_parts: int) -> str:
  """Writes STEM_parts.png (palette overlay) and STEM_labels.png (uint8 labels 0..K);
  returns the label map's path."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  from dti_jax.methods.unsup_parts import part_maps  # pylint: disable=import-outside-toplevel
  from dti_jax.viz import grids  # pylint: disable=import-outside-toplevel
  grids.save_png(os.path.join(out_dir, f"{stem}_parts.png"),
                 part_maps.overlay(image[None], labels[None], num_parts + 1)[0])
  path = os.path.join(out_dir, f"{stem}_labels.png")
  Image.fromarray(labels.astype(np.uint8)).save(path)
  return path


def segment_folder(config, state, images_dir: str, out_dir: str, masks_dir: str | None,
                   side: int) -> list[str]:
  """Writes NAME_parts.png and NAME_labels.png per image; returns the names done."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  if not os.path.isdir(images_dir):
    raise ValueError(f"--images={images_dir!r} is not a folder")
  names = sorted(n for n in os.listdir(images_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
  if not names:
    raise ValueError(f"--images={images_dir!r} holds no .png / .jpg / .jpeg image")
  side = side or default_side(config)
  predict = create_predictor(config)
  os.makedirs(out_dir, exist_ok=True)
  k = config.model.num_parts
  for name in names:
    image = read_image(os.path.join(images_dir, name), side)
    labels = label_image(predict, state, image)
    stem = os.path.splitext(name)[0]
    if masks_dir:
      candidates = [n for n in os.listdir(masks_dir) if os.path.splitext(n)[0] == stem]
      if not candidates:
        raise ValueError(f"--masks={masks_dir!r} has no mask named {stem}.*")
      mask = read_image(os.path.join(masks_dir, candidates[0]), side, mode="L")[..., 0]
      labels = np.where(mask > 0.5, labels, 0)
    write_part_maps(out_dir, stem, image, labels, k)
    print(f"{name}: parts {np.bincount(labels.ravel(), minlength=k + 1)[1:].tolist()} pixels")
  return names


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS["images"].value is None or FLAGS["out"].value is None:
    sys.exit("error: --images and --out are required")
  if (FLAGS["workdir"].value is None) == (FLAGS["weights"].value is None):
    sys.exit("error: give either --workdir or --config with --weights")
  try:
    if FLAGS["workdir"].value is not None:
      config, state = load_workdir(FLAGS["workdir"].value)
    else:
      from dti_jax.methods.unsup_parts import trainer as unsup_parts  # pylint: disable=import-outside-toplevel
      if FLAGS["config"].value is None:
        sys.exit("error: --weights needs --config (the model's config)")
      config = FLAGS["config"].value
      state = unsup_parts.segmenter_state(config, FLAGS["weights"].value)
    segment_folder(config, state, FLAGS["images"].value, FLAGS["out"].value, FLAGS["masks"].value, FLAGS["side"].value)
  except (ValueError, OSError) as error:
    sys.exit(f"error: {str(error).splitlines()[0] if str(error) else type(error).__name__}")


def _define_flags() -> None:
  """The command-line flags (absl), registered once."""
  FLAGS["config"] = config_flags.DEFINE_config_file(
      "config", None, "A part-discovery config (with --weights).", lock_config=True)
  FLAGS["weights"] = flags.DEFINE_string("weights", None,
                                         "Converted segmenter weights (.npz).")
  FLAGS["workdir"] = flags.DEFINE_string("workdir", None, "A trained part-discovery workdir.")
  FLAGS["images"] = flags.DEFINE_string("images", None,
                                        "Folder of images (.png, .jpg, .jpeg).")
  FLAGS["masks"] = flags.DEFINE_string("masks", None, "Optional folder of foreground masks "
                                       "(same names, any image format; > 127 is foreground).")
  FLAGS["out"] = flags.DEFINE_string("out", None, "Output folder.")
  FLAGS["side"] = flags.DEFINE_integer("side", 0, "Shorter side the images are resized to "
                                       "(0: the model's training side).")


if __name__ == "__main__":
  _define_flags()
  app.run(main)
