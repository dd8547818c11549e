"""Readers for file datasets: USPS, affNIST, FRGC, GTSRB-8, Weizmann Horse.

Image folders are read by `data_pipelines.image_folder` with the helpers here
(`resize_and_center_crop`, `convert_image`), which `read_model_input` shares.

Each reader returns host numpy arrays (images uint8 [N, H, W, C], labels int32 [N],
or for Weizmann Horse masks uint8 [N, H, W]); `sources.load_source` wraps them. Nothing here downloads: a missing file raises
FileNotFoundError naming the exact path and the command that fetches it.
"""

import bz2
import os

import numpy as np
from PIL import Image

# Where each file-based source looks when no data directory is given.
DEFAULT_DIRS = {
    "usps": os.path.join("data", "usps"),
    "affnist_test": os.path.join("data", "affnist"),
    "frgc": os.path.join("data", "frgc"),
    "gtsrb8": os.path.join("data", "gtsrb"),
    "weizmann_horse": os.path.join("data", "weizmann_horse"),
}
# libsvm files, as fetched by torchvision's USPS: 7,291 train and 2,007 test digits.
USPS_FILES = {"train": "usps.bz2", "test": "usps.t.bz2"}
AFFNIST_FILE = "affNIST_test.mat"
FRGC_FILE = "data4torch.h5"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# GTSRB-8: the eight traffic-sign classes DTI-Sprites keeps, relabelled 0..7 in order.
GTSRB8_CLASSES = (3, 7, 9, 11, 17, 18, 25, 35)
# Where the official training archive puts the class folders 00000..00042.
GTSRB_IMAGES_SUBDIR = os.path.join("GTSRB", "Final_Training", "Images")
GTSRB_EXTENSIONS = (".ppm", ".png", ".jpg", ".jpeg")
GTSRB8_SIDE = 28
WEIZMANN_HORSE_SIDE = 128

_USPS_SIDE = 16
_AFFNIST_SIDE = 40


def open_tfds_split(builder, name: str, split: str, how_to_prepare: str = ""):
  """``builder.as_dataset(split)`` in file order; a dataset that is not prepared is a
  FileNotFoundError naming the directory and the command that prepares it (never a
  download). ``how_to_prepare`` replaces the default command."""
  try:
    # as_dataset never downloads; it raises AssertionError when nothing is prepared.
    return builder.as_dataset(split=split, shuffle_files=False)
  except AssertionError as error:
    if "could not find data" not in str(error):
      raise
    root = builder.data_dir_root
    how_to_prepare = how_to_prepare or (
        f"fetch it once with `tfds build {name} --data_dir={root}` or "
        f"`python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder('{name}', data_dir='{root}').download_and_prepare()\"`")
    raise FileNotFoundError(f"tfds dataset {name!r} is not prepared: no data in "
                            f"{builder.data_dir}; {how_to_prepare}") from None


def _fetch_command(name: str, data_dir: str) -> str:
  return f"`python scripts/download_data.py {name} --data_dir={data_dir}`"


def _require_file(path: str, name: str, data_dir: str) -> None:
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{name}: {path} not found; fetch it with {_fetch_command(name, data_dir)}")


def read_usps(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """USPS digits: split "test" is the test file, any other split test then train.

  Returns:
    images uint8 [N, 16, 16, 1] and labels int32 [N] in 0..9.
  """
  parts = ("test",) if split == "test" else ("test", "train")
  paths = [os.path.join(data_dir, USPS_FILES[part]) for part in parts]
  for path in paths:
    _require_file(path, "usps", data_dir)
  images, labels = zip(*(parse_usps_file(path) for path in paths))
  return np.concatenate(images), np.concatenate(labels)


def parse_usps_file(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Parses one libsvm USPS file: lines "label 1:v1 2:v2 ... 256:v256".

  Labels 1..10 become 0..9. Values in [-1, 1] become uint8 as torchvision's USPS
  does, truncating (v + 1) / 2 * 255 computed in float32 (0 -> 127, 1 -> 255), so
  the pixels equal those the original trained on. Every line must list all 256
  features in order (the USPS files are dense).

  Returns:
    images uint8 [N, 16, 16, 1] and labels int32 [N].
  """
  expected_indices = [str(i) for i in range(1, _USPS_SIDE * _USPS_SIDE + 1)]
  labels, rows = [], []
  with bz2.open(path, "rt") as f:
    for line_number, line in enumerate(f, start=1):
      tokens = line.split()
      if not tokens:
        continue
      pairs = [token.partition(":") for token in tokens[1:]]
      if [index for index, _, _ in pairs] != expected_indices:
        raise ValueError(f"{path} line {line_number}: expected features 1:..256: in "
                         f"order, got {len(pairs)} features")
      labels.append(int(tokens[0]))
      rows.append([value for _, _, value in pairs])
  if not rows:
    raise ValueError(f"{path}: no examples")
  values = np.asarray(rows, dtype=np.float32)
  labels = np.asarray(labels, dtype=np.int64)
  if values.min() < -1 or values.max() > 1:
    raise ValueError(f"{path}: pixel values outside [-1, 1] "
                     f"({values.min()}..{values.max()})")
  if labels.min() < 1 or labels.max() > 10:
    raise ValueError(f"{path}: labels outside 1..10 ({labels.min()}..{labels.max()})")
  pixels = ((values + 1) / 2 * 255).astype(np.uint8)
  return (pixels.reshape(-1, _USPS_SIDE, _USPS_SIDE, 1),
          (labels - 1).astype(np.int32))


def read_affnist(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
  """affNIST test set: struct `affNISTdata` with `image` (1600 x N) and `label_int`.

  As the original, column n of `image` is image n, reshaped row-major to 40x40.
  Whether this gives the digits in MNIST's orientation (rather than transposed,
  had the file been written column-major) is unverified; clustering scores do not
  depend on it, prototype pictures do.

  Returns:
    images uint8 [N, 40, 40, 1] and labels int32 [N] in 0..9.
  """
  import scipy.io  # Imported here: only this source needs it.

  path = os.path.join(data_dir, AFFNIST_FILE)
  _require_file(path, "affnist_test", data_dir)
  mat = scipy.io.loadmat(path)  # A MATLAB struct loads as a [1, 1] record array.
  if "affNISTdata" not in mat:
    raise ValueError(f"{path}: no variable 'affNISTdata' "
                     f"(has {sorted(k for k in mat if not k.startswith('__'))})")
  record = mat["affNISTdata"]
  fields = record.dtype.names or ()
  if "image" not in fields or "label_int" not in fields:
    raise ValueError(f"{path}: affNISTdata needs fields image and label_int, has {fields}")
  image = np.asarray(record["image"][0, 0])
  labels = np.asarray(record["label_int"][0, 0]).reshape(-1)
  if image.ndim != 2 or image.shape[0] != _AFFNIST_SIDE ** 2:
    raise ValueError(f"{path}: affNISTdata.image must be 1600 x N, got {image.shape}")
  if len(labels) != image.shape[1]:
    raise ValueError(f"{path}: {len(labels)} labels for {image.shape[1]} images")
  images = _to_uint8(image, path, "affNISTdata.image")
  images = np.ascontiguousarray(images.T).reshape(-1, _AFFNIST_SIDE, _AFFNIST_SIDE, 1)
  return images, labels.astype(np.int32)


def read_frgc(data_dir: str) -> tuple[np.ndarray, np.ndarray, int]:
  """FRGC faces from JULE's `data4torch.h5`: datasets `data` and `labels`.

  `data` is stored channels-first; as the original, axes 1 and 3 are swapped to
  get channels-last ([N, C, A, B] -> [N, B, A, C]) with no further transpose.
  Labels are mapped to 0..n-1 in sorted order; the original maps them to 1..n and
  subtracts 1, which is the same.

  Returns:
    images uint8 [N, H, W, C], labels int32 [N] and the number of classes n.
  """
  import h5py  # Imported here: only this source needs it.

  path = os.path.join(data_dir, FRGC_FILE)
  _require_file(path, "frgc", data_dir)
  with h5py.File(path, "r") as f:
    missing = [key for key in ("data", "labels") if key not in f]
    if missing:
      raise ValueError(f"{path}: missing datasets {missing} (has {sorted(f.keys())})")
    data, labels = f["data"][()], f["labels"][()]
  labels = np.asarray(labels).reshape(-1)
  if data.ndim != 4 or len(labels) != data.shape[0]:
    raise ValueError(f"{path}: expected 4-d data [N, C, A, B] and N labels, got "
                     f"{data.shape} and {labels.shape}")
  images = np.ascontiguousarray(_to_uint8(data, path, "data").swapaxes(1, 3))
  classes, consecutive = np.unique(labels, return_inverse=True)
  return images, consecutive.reshape(-1).astype(np.int32), len(classes)


def read_gtsrb8(data_dir: str, image_size: int = GTSRB8_SIDE
                ) -> tuple[np.ndarray, np.ndarray]:
  """GTSRB-8: the GTSRB training images of the classes in `GTSRB8_CLASSES`.

  `data_dir` holds the class folders 00000..00042, or is a parent holding them
  under GTSRB/Final_Training/Images (the unzipped official archive). Images are
  read in class order, then by file name, and resized to image_size x image_size
  ignoring the aspect ratio (PIL bilinear, which antialiases when downscaling as
  torchvision's `Resize` did).

  Returns:
    images uint8 [N, image_size, image_size, 3] and labels int32 [N] in 0..7,
    label i for class `GTSRB8_CLASSES[i]`.
  """
  nested = os.path.join(data_dir, GTSRB_IMAGES_SUBDIR)
  root = nested if os.path.isdir(nested) else data_dir
  if not os.path.isdir(root):
    raise FileNotFoundError(f"gtsrb8: {data_dir} not found; fetch it with "
                            f"{_fetch_command('gtsrb8', data_dir)}")
  paths, labels = [], []
  for label, class_id in enumerate(GTSRB8_CLASSES):
    folder = os.path.join(root, f"{class_id:05d}")
    if not os.path.isdir(folder):
      raise FileNotFoundError(f"gtsrb8: class folder {folder} not found; fetch the "
                              f"set with {_fetch_command('gtsrb8', data_dir)}")
    class_paths = _image_paths(folder, GTSRB_EXTENSIONS)
    if not class_paths:
      raise ValueError(f"gtsrb8: no {'/'.join(GTSRB_EXTENSIONS)} images in {folder}")
    paths += class_paths
    labels += [label] * len(class_paths)
  images = np.empty((len(paths), image_size, image_size, 3), np.uint8)
  for i, path in enumerate(paths):
    images[i] = _read_resized(path, "gtsrb8", "RGB", image_size,
                              Image.Resampling.BILINEAR)
  return images, np.asarray(labels, np.int32)


def read_weizmann_horse(data_dir: str, image_size: int = WEIZMANN_HORSE_SIDE
                        ) -> tuple[np.ndarray, np.ndarray]:
  """Weizmann Horse: `data_dir`/images/*.jpg (or png) with `data_dir`/masks/*.png.

  Images and masks are each sorted by file name and paired in that order. Images
  are resized to image_size x image_size ignoring the aspect ratio (PIL
  bilinear); masks with nearest neighbour, then any non-zero value becomes 1.

  Returns:
    images uint8 [N, image_size, image_size, 3] and masks uint8
    [N, image_size, image_size] (0 = background, 1 = horse).
  """
  image_dir = os.path.join(data_dir, "images")
  mask_dir = os.path.join(data_dir, "masks")
  for folder in (image_dir, mask_dir):
    if not os.path.isdir(folder):
      raise FileNotFoundError(f"weizmann_horse: {folder} not found; see how to get it "
                              f"with {_fetch_command('weizmann_horse', data_dir)}")
  image_paths = _image_paths(image_dir, (".jpg", ".jpeg", ".png"))
  mask_paths = _image_paths(mask_dir, (".png",))
  if len(image_paths) != len(mask_paths):
    raise ValueError(f"weizmann_horse: {len(image_paths)} images in {image_dir} but "
                     f"{len(mask_paths)} masks in {mask_dir}")
  if not image_paths:
    raise ValueError(f"weizmann_horse: no .jpg/.jpeg/.png images in {image_dir}")
  images = np.empty((len(image_paths), image_size, image_size, 3), np.uint8)
  masks = np.empty((len(mask_paths), image_size, image_size), np.uint8)
  for i, (image_path, mask_path) in enumerate(zip(image_paths, mask_paths)):
    images[i] = _read_resized(image_path, "weizmann_horse", "RGB", image_size,
                              Image.Resampling.BILINEAR)
    mask = _read_resized(mask_path, "weizmann_horse", "L", image_size,
                         Image.Resampling.NEAREST)
    masks[i] = mask > 0
  return images, masks


def read_model_input(path: str, image_shape: tuple[int, int, int],
                     crop_size: int = 0) -> np.ndarray:
  """[H, W, C] float32 in [0, 1]: grey or RGB as the model, resized as the config's data.

  With ``crop_size`` (photo collections) the shorter side is resized to it and the
  centre cropped as the training loader does; otherwise the image is resized
  to H x W (bilinear).
  """
  height, width, channels = image_shape
  with Image.open(path) as image:
    image = convert_image(image, 1 if channels == 1 else 3)
    if crop_size:
      image = Image.fromarray(resize_and_center_crop(image, crop_size))
    if image.size != (width, height):
      image = image.resize((width, height), Image.BILINEAR)
    pixels = np.asarray(image, np.float32) / 255.0
  return pixels.reshape(height, width, channels)


def convert_image(image: Image.Image, channels: int) -> Image.Image:
  """`image` as PIL "L" (channels 1) or "RGB" (channels 3); alpha is dropped.

  16-bit grey ("I;16*", and "I" as Pillow may open 16-bit PNGs) is scaled to 0..255
  by v / 257 (rounded), since Pillow's own conversion clips every value above 255 to
  white; "I" values outside 0..65535 are a ValueError.
  """
  if image.mode == "I" or image.mode.startswith("I;16"):
    pixels = np.asarray(image).astype(np.int64)
    if pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
      raise ValueError(f"mode {image.mode} values {pixels.min()}..{pixels.max()} are "
                       "outside 0..65535; save it as 8- or 16-bit")
    image = Image.fromarray(np.rint(pixels / 257.0).astype(np.uint8))
  return image.convert("L" if channels == 1 else "RGB")


def _image_paths(folder: str, extensions: tuple[str, ...]) -> list[str]:
  """Files directly in `folder` whose lower-cased name ends with one of `extensions`."""
  return sorted(
      os.path.join(folder, entry) for entry in os.listdir(folder)
      if entry.lower().endswith(extensions)
      and os.path.isfile(os.path.join(folder, entry)))


def _read_resized(path: str, name: str, mode: str, size: int,
                  resample: Image.Resampling) -> np.ndarray:
  """Reads one image in PIL `mode`, resized to size x size; unreadable -> ValueError."""
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert(mode).resize((size, size), resample))
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
    reason = str(error).splitlines()[0] if str(error) else ""
    raise ValueError(f"{name}: cannot read image {path} "
                     f"({type(error).__name__}: {reason})") from error


def resize_and_center_crop(image: Image.Image, size: int) -> np.ndarray:
  """torchvision `Resize(size)` (PIL bilinear) then `CenterCrop(size)`.

  The shorter side becomes `size`, the longer int(size * long / short); the crop
  offset is round((extent - size) / 2) with Python's round, as torchvision's.

  Returns:
    uint8 [size, size, C].
  """
  width, height = image.size
  if width <= height:
    new_size = (size, int(size * height / width))
  else:
    new_size = (int(size * width / height), size)
  if new_size != image.size:
    image = image.resize(new_size, Image.Resampling.BILINEAR)
  left = int(round((new_size[0] - size) / 2.0))
  top = int(round((new_size[1] - size) / 2.0))
  return np.asarray(image.crop((left, top, left + size, top + size)))


def _to_uint8(array: np.ndarray, path: str, what: str) -> np.ndarray:
  """Casts to uint8, refusing values outside 0..255 (the original casts unchecked)."""
  if array.dtype == np.uint8:
    return array
  if array.size and (not np.isfinite(array).all() or array.min() < 0 or array.max() > 255):
    raise ValueError(f"{path}: {what} values outside 0..255 ({array.dtype})")
  return array.astype(np.uint8)
