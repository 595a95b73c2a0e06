"""Reads PyTorch `.pth` / `.pt` state dicts into NumPy arrays, without PyTorch.

`torch.load` is a general `pickle.load`: a checkpoint can run any code. This reader accepts only
what a state dict of tensors needs:

- `torch._utils._rebuild_tensor_v2` (a tensor as a strided view of a storage),
- the typed storage classes (`torch.FloatStorage`, `torch.LongStorage`, ...),
- `collections.OrderedDict`,

plus plain pickle containers (dict, list, tuple, numbers, strings). Any other global
(`os.system`, `builtins.eval`, `torch.nn.Module`, ...) raises `UnsafePickleError` before it is
looked up, so nothing outside this module's own functions is ever called.

Both file layouts are read: the legacy one (`torch.save(..., _use_new_zipfile_serialization=False)`,
default before PyTorch 1.6: a magic number, a protocol version, system info, the pickle, the
storage keys, then the raw storages) and the zip one (`archive/data.pkl` + `archive/data/<key>`).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile

import numpy as np

__all__ = ["UnsafePickleError", "load_torch_state_dict"]

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# Typed storage class name -> NumPy dtype (bfloat16 is widened to float32 when read).
_STORAGE_DTYPES = {
    "DoubleStorage": np.dtype("float64"),
    "FloatStorage": np.dtype("float32"),
    "HalfStorage": np.dtype("float16"),
    "BFloat16Storage": np.dtype("uint16"),
    "LongStorage": np.dtype("int64"),
    "IntStorage": np.dtype("int32"),
    "ShortStorage": np.dtype("int16"),
    "CharStorage": np.dtype("int8"),
    "ByteStorage": np.dtype("uint8"),
    "BoolStorage": np.dtype("bool"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The checkpoint asks for something other than tensor data (possibly code to run)."""


class _StorageType:
    """Stands in for `torch.<X>Storage` inside the pickle."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError(f"The checkpoint calls torch.{self.name}(...): not tensor data.")


class _Storage:
    """A storage referenced by the pickle; its bytes are attached once they have been read."""

    def __init__(self, key: str, storage_type: _StorageType, numel: int):
        self.key = key
        self.storage_type = storage_type
        self.numel = int(numel)
        self.data: np.ndarray | None = None
        self.view_of: tuple[_Storage, int] | None = None  # (root storage, element offset)

    def array(self) -> np.ndarray:
        if self.view_of is not None:
            root, offset = self.view_of
            return root.array()[offset : offset + self.numel]
        if self.data is None:
            raise ValueError(f"Storage {self.key!r} has no data in the checkpoint.")
        return self.data


class _PendingTensor:
    """A tensor whose storage bytes may come after the pickle (legacy layout)."""

    def __init__(self, storage, storage_offset, size, stride):
        if not isinstance(storage, _Storage):
            raise UnsafePickleError("_rebuild_tensor_v2 expects a storage as its first argument.")
        self.storage = storage
        self.storage_offset = _as_int(storage_offset, "storage_offset")
        self.size = tuple(_as_int(s, "size") for s in size)
        self.stride = tuple(_as_int(s, "stride") for s in stride)
        if len(self.size) != len(self.stride):
            raise ValueError(f"Tensor size {self.size} and stride {self.stride} differ in rank.")

    def materialize(self) -> np.ndarray:
        flat = self.storage.array()
        dtype = self.storage.storage_type.dtype
        if any(s == 0 for s in self.size):
            out = np.zeros(self.size, dtype=dtype)
        else:
            last = self.storage_offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if self.storage_offset < 0 or min(self.stride, default=0) < 0 or last >= flat.size:
                raise ValueError(
                    f"Tensor view (offset {self.storage_offset}, size {self.size}, stride "
                    f"{self.stride}) reads outside its storage of {flat.size} elements: the "
                    "checkpoint is corrupt."
                )
            numel = int(np.prod(self.size))
            if numel > flat.size - self.storage_offset:
                raise ValueError(
                    f"Tensor view of {numel} elements over a storage of {flat.size}: overlapping "
                    "or broadcast (stride 0) views are not supported."
                )
            base = flat[self.storage_offset :]
            out = np.lib.stride_tricks.as_strided(
                base,
                shape=self.size,
                strides=tuple(s * base.itemsize for s in self.stride),
                writeable=False,
            ).copy()
        if self.storage.storage_type.name == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


def _as_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UnsafePickleError(f"Expected an integer tensor {what}. Received: {value!r}")
    return value


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    del requires_grad, backward_hooks, metadata  # NumPy arrays carry none of these.
    return _PendingTensor(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a tensor state dict needs."""

    def __init__(self, file, storages: dict[str, _Storage], source: str):
        super().__init__(file)
        self._storages = storages
        self._source = source

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(
            f"Refusing to load global '{module}.{name}' from {self._source}: only tensor state "
            "dicts (torch._utils._rebuild_tensor_v2, torch.*Storage, collections.OrderedDict) "
            "are allowed. A checkpoint that needs other objects may run arbitrary code; load it "
            "with PyTorch only if you trust its source."
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise UnsafePickleError(
                f"Unexpected persistent id {pid!r} in {self._source}: expected a tensor storage."
            )
        if len(pid) == 6:  # legacy: (tag, type, root_key, location, numel, view_metadata)
            _, storage_type, key, _location, numel, view = pid
        elif len(pid) == 5:  # zip: (tag, type, key, location, numel)
            _, storage_type, key, _location, numel = pid
            view = None
        else:
            raise UnsafePickleError(f"Unexpected storage id {pid!r} in {self._source}.")
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"Unexpected storage type {storage_type!r} in {self._source}.")
        key = str(key)
        storage = self._storages.get(key)
        if storage is None:
            storage = self._storages[key] = _Storage(key, storage_type, _as_int(numel, "numel"))
        if view is None:
            return storage
        view_key, offset, view_numel = view
        view_key = str(view_key)
        if view_key not in self._storages:
            view_storage = _Storage(view_key, storage_type, _as_int(view_numel, "numel"))
            view_storage.view_of = (storage, _as_int(offset, "view offset"))
            self._storages[view_key] = view_storage
        return self._storages[view_key]


def _materialize(obj):
    if isinstance(obj, _PendingTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _materialize(value)
        return out
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    return obj


def _read_exactly(f, n: int, source: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"{source} ends early: the checkpoint is truncated.")
    return data


def _load_legacy(f, source: str):
    storages: dict[str, _Storage] = {}

    def load_one():
        return _RestrictedUnpickler(f, storages, source).load()

    try:
        magic = load_one()
    except pickle.UnpicklingError as err:
        if isinstance(err, UnsafePickleError):
            raise
        raise ValueError(f"{source} is not a PyTorch checkpoint ({err}).") from err
    if magic != _LEGACY_MAGIC_NUMBER:
        raise ValueError(
            f"{source} is not a PyTorch checkpoint (no legacy magic number, not a zip file)."
        )
    protocol = load_one()
    if protocol != _LEGACY_PROTOCOL_VERSION:
        raise ValueError(f"Unsupported legacy PyTorch protocol {protocol!r} in {source}.")
    sys_info = load_one()
    little_endian = (
        bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    )
    result = load_one()
    keys = load_one()
    if not isinstance(keys, list):
        raise ValueError(f"{source}: expected the list of storage keys after the pickle.")
    order = "<" if little_endian else ">"
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise ValueError(f"{source}: storage {key!r} is listed but never referenced.")
        numel = int(np.frombuffer(_read_exactly(f, 8, source), dtype=order + "i8")[0])
        dtype = storage.storage_type.dtype.newbyteorder(order)
        raw = _read_exactly(f, numel * dtype.itemsize, source)
        storage.data = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        storage.numel = numel
    return _materialize(result)


def _load_zip(path, source: str):
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError(f"{source}: expected one data.pkl in the zip. Found: {pickles}")
        prefix = pickles[0][: -len("data.pkl")]
        order = "<"
        if prefix + "byteorder" in names and archive.read(prefix + "byteorder") == b"big":
            order = ">"
        result = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), storages, source).load()
        for key, storage in storages.items():
            if storage.view_of is not None:
                continue
            member = f"{prefix}data/{key}"
            if member not in names:
                raise ValueError(f"{source}: storage {key!r} is missing ({member}).")
            dtype = storage.storage_type.dtype.newbyteorder(order)
            storage.data = np.frombuffer(archive.read(member), dtype=dtype).astype(
                dtype.newbyteorder("=")
            )
    return _materialize(result)


def load_torch_state_dict(path) -> dict:
    """Reads a PyTorch state dict file into NumPy arrays, without importing PyTorch.

    Args:
        path: a `.pth` / `.pt` file written by `torch.save(model.state_dict(), path)`, in the
            legacy or the zip layout.

    Returns:
        The unpickled object with every tensor replaced by a `np.ndarray` (for a state dict: an
        `OrderedDict` from parameter name to array, in the file's order).

    Raises:
        FileNotFoundError: `path` does not exist.
        UnsafePickleError: the file references anything but tensors and plain containers.
        ValueError: the file is not a PyTorch checkpoint or is truncated.

    Example:
    ```python
    state = load_torch_state_dict("efficientnet-lite0.pth")
    state["_conv_stem.weight"].shape  # (32, 3, 3, 3)
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No PyTorch checkpoint at {path!r}.")
    if zipfile.is_zipfile(path):
        return _load_zip(path, path)
    with open(path, "rb") as f:
        return _load_legacy(f, path)
