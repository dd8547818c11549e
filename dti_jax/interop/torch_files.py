"""Reads ``torch.save`` files into numpy without importing torch.

Two layouts exist. The legacy one (PyTorch < 1.6, and ``_use_new_zipfile_serialization=
False``; the released DeepCluster checkpoints) is a sequence of pickles in one stream:
magic number, protocol version, system info, the object (tensors refer to storages by
persistent id), the sorted list of storage keys, then for each key an int64 element
count and the raw little-endian bytes. The zip one (PyTorch >= 1.6) stores the object
as ``<archive>/data.pkl`` and each storage as the uncompressed record
``<archive>/data/<key>``.

Unpickling runs arbitrary code, so only the few globals a state dict needs are
resolved (``collections.OrderedDict``, torch's tensor and parameter rebuild functions,
the typed storage classes); any other global is refused by name. Storages are read only
after the object (in the legacy layout they follow it), so tensors are placeholders
until then and are replaced by C-contiguous numpy copies of their view (offset, shape,
strides honoured) before the object is returned.
"""

import collections
import os
import pickle
import struct
import tarfile
import zipfile
from typing import Any

import ml_dtypes
import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32), "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16), "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64), "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16), "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8), "BoolStorage": np.dtype(np.bool_),
}


class _StorageType:
  """Stands for ``torch.FloatStorage`` and the like (CPU or CUDA): only its dtype counts."""

  def __init__(self, name: str):
    self.dtype = STORAGE_DTYPES[name]


class _Storage:
  """A storage named in the pickle; ``data`` (1-D) is filled once the bytes are read.

  A legacy view (``root`` with an element ``offset``) shares its root's bytes.
  """

  def __init__(self, dtype, numel, root=None, offset=0):
    self.dtype, self.numel = dtype, numel
    self.root, self.offset, self.data = root, offset, None

  def array(self) -> np.ndarray:
    if self.root is not None:
      return self.root.array()[self.offset:self.offset + self.numel]
    return self.data


class _PendingTensor:
  """A tensor whose storage bytes are not read yet."""

  def __init__(self, storage, offset, size, stride, metadata=None):
    self.storage, self.offset, self.metadata = storage, int(offset), metadata
    self.size, self.stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)

  def to_numpy(self, path: str) -> np.ndarray:
    if self.metadata:
      raise ValueError(f"{path}: tensor with lazy conjugate/negative bits {self.metadata} is "
                       "not supported")
    data = self.storage.array()
    if len(self.size) != len(self.stride):
      raise ValueError(f"{path}: tensor of shape {self.size} has strides {self.stride}")
    if 0 in self.size:
      return np.zeros(self.size, data.dtype)
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if self.offset < 0 or min(self.stride, default=0) < 0 or last >= len(data):
      raise ValueError(f"{path}: tensor of shape {self.size}, strides {self.stride}, offset "
                       f"{self.offset} reads past its storage of {len(data)} elements")
    view = np.lib.stride_tricks.as_strided(
        data[self.offset:], self.size, [s * data.itemsize for s in self.stride])
    return view.astype(data.dtype.newbyteorder("="), order="C", copy=True)


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None):
  del requires_grad, backward_hooks  # Autograd state, meaningless for numpy arrays.
  return _PendingTensor(storage, storage_offset, size, stride, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
  del requires_grad, backward_hooks
  return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
  """Resolves only ``_ALLOWED_GLOBALS`` and storage classes; records the storages met."""

  def __init__(self, file, path: str, legacy: bool):
    # Python 2 pickles (the 2018 checkpoints) hold byte strings; torch.load decodes them
    # as UTF-8 too.
    super().__init__(file, encoding="utf-8")
    self.path, self.legacy = path, legacy
    self.storages: dict[str, _Storage] = {}

  def find_class(self, module, name):
    if module in ("torch", "torch.cuda") and name in STORAGE_DTYPES:
      return _StorageType(name)
    if (module, name) in _ALLOWED_GLOBALS:
      return _ALLOWED_GLOBALS[(module, name)]
    raise ValueError(f"{self.path}: refusing to load global {module}.{name} (only tensors, "
                     "storages and OrderedDict are allowed)")

  def persistent_load(self, pid):
    if not isinstance(pid, tuple) or not pid:
      raise ValueError(f"{self.path}: unknown persistent id {pid!r}")
    kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    if kind == "module":
      raise ValueError(f"{self.path}: holds a pickled torch.nn.Module ({pid[1]}); only state "
                       "dicts of tensors can be read")
    if kind != "storage" or len(pid) != (6 if self.legacy else 5):
      raise ValueError(f"{self.path}: unknown persistent id {pid!r}")
    storage_type, key, _, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
      raise ValueError(f"{self.path}: storage {key} has unknown type {storage_type!r}")
    key = str(key)
    if key not in self.storages:
      self.storages[key] = _Storage(storage_type.dtype, int(numel))
    root = self.storages[key]
    view = pid[5] if self.legacy else None
    if view is None:
      return root
    view_key, offset, view_numel = view
    return self.storages.setdefault(
        f"view:{view_key}", _Storage(root.dtype, int(view_numel), root, int(offset)))


def _resolve(obj, path, seen):
  """Replaces every pending tensor inside dicts, lists and tuples by its numpy array."""
  if isinstance(obj, _PendingTensor):
    return obj.to_numpy(path)
  if isinstance(obj, (dict, list)):
    if id(obj) in seen:
      return obj
    seen.add(id(obj))
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in list(items):
      obj[key] = _resolve(value, path, seen)
    return obj
  if isinstance(obj, tuple):
    return tuple(_resolve(value, path, seen) for value in obj)
  return obj


class _NoGlobalsUnpickler(pickle.Unpickler):
  """For the plain pickles around the object: numbers, strings, dicts, lists."""

  def find_class(self, module, name):
    raise pickle.UnpicklingError(f"global {module}.{name} where plain data should be")


def _load_plain(f) -> Any:
  return _NoGlobalsUnpickler(f, encoding="utf-8").load()


def _load_object(unpickler, path):
  try:
    return unpickler.load()
  except (EOFError, pickle.UnpicklingError) as e:
    raise ValueError(f"{path}: truncated or corrupt pickle ({e})") from e


def _read_legacy_header(f, path):
  """The magic number, protocol and system info; a clear error if absent."""
  try:
    magic = _load_plain(f)
    protocol, sys_info = _load_plain(f), _load_plain(f)
  except Exception as e:  # Arbitrary bytes fail in arbitrary ways.
    raise ValueError(f"{path}: not a torch file (neither a zip archive nor a legacy "
                     f"torch.save stream: {type(e).__name__})") from e
  if magic != MAGIC_NUMBER:
    raise ValueError(f"{path}: not a torch file (no torch magic number at the start)")
  if protocol != PROTOCOL_VERSION:
    raise ValueError(f"{path}: legacy torch protocol {protocol}, expected {PROTOCOL_VERSION}")
  if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
    raise ValueError(f"{path}: written on a big-endian machine, not supported")


def _load_legacy(path: str) -> Any:
  with open(path, "rb") as f:
    _read_legacy_header(f, path)
    unpickler = _Unpickler(f, path, legacy=True)
    obj = _load_object(unpickler, path)
    keys = _load_object(_NoGlobalsUnpickler(f, encoding="utf-8"), path)
    for key in keys:
      storage = unpickler.storages.get(str(key))
      header = f.read(8)
      if storage is None or len(header) < 8:
        raise ValueError(f"{path}: storage {key} is listed but "
                         f"{'never used' if storage is None else 'truncated'}")
      (numel,) = struct.unpack("<q", header)
      if numel != storage.numel:
        raise ValueError(f"{path}: storage {key} holds {numel} elements, its tensors say "
                         f"{storage.numel}")
      raw = f.read(numel * storage.dtype.itemsize)
      if len(raw) != numel * storage.dtype.itemsize:
        raise ValueError(f"{path}: truncated in storage {key}")
      storage.data = np.frombuffer(raw, storage.dtype.newbyteorder("<"))
  unread = [key for key, storage in unpickler.storages.items()
            if storage.root is None and storage.data is None]
  if unread:
    raise ValueError(f"{path}: storage {unread[0]} is used but not in the storage list")
  return obj


def _load_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [name for name in names if name.split("/")[1:] == ["data.pkl"]]
    if len(pickles) != 1:
      raise ValueError(f"{path}: a zip archive without <archive>/data.pkl: not a torch file")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = "little"
    if f"{prefix}byteorder" in names:
      byteorder = archive.read(f"{prefix}byteorder").decode("ascii")
    unpickler = _Unpickler(archive.open(pickles[0]), path, legacy=False)
    obj = _load_object(unpickler, path)
    for key, storage in unpickler.storages.items():
      name = f"{prefix}data/{key}"
      if name not in names:
        raise ValueError(f"{path}: storage record {name} is missing")
      raw = archive.read(name)
      dtype = storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
      if len(raw) != storage.numel * dtype.itemsize:
        raise ValueError(f"{path}: record {name} has {len(raw)} bytes, its tensors need "
                         f"{storage.numel} x {dtype.itemsize}")
      storage.data = np.frombuffer(raw, dtype)
  return obj


def load_torch_file(path: str) -> Any:
  """The object saved by ``torch.save`` at ``path``, every tensor a numpy array.

  Args:
    path: a legacy (PyTorch < 1.6) or zip (PyTorch >= 1.6) ``torch.save`` file.

  Returns:
    The unpickled object (dicts, ``OrderedDict``s, lists, numbers, strings) with each
    tensor or parameter replaced by a C-contiguous numpy array of the tensor's dtype and
    shape, copied out of its storage (views of a shared storage become separate arrays).

  Raises:
    FileNotFoundError: ``path`` is not a file.
    ValueError: the file is not a torch file, is truncated, or names a global other
      than OrderedDict, tensor rebuilding and storage types.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such file")
  with open(path, "rb") as f:
    start = f.read(4)
  if start == b"PK\x03\x04":  # torch's own test for its zip layout.
    obj = _load_zip(path)
  elif tarfile.is_tarfile(path):
    raise ValueError(f"{path}: torch's tar layout (before PyTorch 0.1.10) is not supported")
  else:
    obj = _load_legacy(path)
  return _resolve(obj, path, set())


def strip_data_parallel(key: str) -> str:
  """A state-dict key without DataParallel's ``module.`` parts, wherever they stand:
  ``module.enc.keymap.weight`` or ``features.module.0.weight`` -> without them."""
  return ".".join(part for part in key.split(".") if part != "module")
