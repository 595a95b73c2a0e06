"""The restricted PyTorch checkpoint reader: tensors come back exactly, code never runs."""

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from tlkit.pretrained.torch_pickle import UnsafePickleError, load_torch_state_dict

MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"long": 8}}


class _Storage:
    def __init__(self, key, array):
        self.key = key
        self.array = np.ascontiguousarray(array).ravel()


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (*self.args, False, collections.OrderedDict())


@pytest.fixture
def fake_torch(monkeypatch):
    """Stub `torch` / `torch._utils` modules so `pickle` writes real torch global names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage_types = {}
    for name in ("FloatStorage", "LongStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
        storage_types[name] = cls
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return storage_types


def _pickler(f, storage_types, view_style):
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if not isinstance(obj, _Storage):
                return None
            kind = "LongStorage" if obj.array.dtype == np.int64 else "FloatStorage"
            pid = ("storage", storage_types[kind], obj.key, "cpu", obj.array.size)
            return pid + (None,) if view_style == "legacy" else pid

    return Pickler(f, protocol=2)


def _write_legacy(path, obj, storages, storage_types):
    with open(path, "wb") as f:
        for header in (MAGIC, 1001, SYS_INFO):
            pickle.dump(header, f, protocol=2)
        _pickler(f, storage_types, "legacy").dump(obj)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.array.size))
            f.write(s.array.astype(s.array.dtype.newbyteorder("<")).tobytes())


def _write_zip(path, obj, storages, storage_types):
    buffer = io.BytesIO()
    _pickler(buffer, storage_types, "zip").dump(obj)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        for s in storages:
            archive.writestr(f"archive/data/{s.key}", s.array.tobytes())


def _sample_state():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 3, 2, 2)).astype("float32")
    # Stored transposed (HWIO bytes, OIHW strides), like TensorFlow-converted checkpoints.
    hwio = _Storage("0", np.transpose(weight, (2, 3, 1, 0)))
    bias_and_more = _Storage("1", np.arange(10, dtype="float32"))
    counter = _Storage("2", np.array([7], dtype="int64"))
    state = collections.OrderedDict(
        [
            ("conv.weight", _Tensor(hwio, 0, (4, 3, 2, 2), (1, 4, 24, 12))),
            ("conv.bias", _Tensor(bias_and_more, 2, (4,), (1,))),
            ("bn.num_batches_tracked", _Tensor(counter, 0, (), ())),
        ]
    )
    expected = {
        "conv.weight": weight,
        "conv.bias": np.arange(2, 6, dtype="float32"),
        "bn.num_batches_tracked": np.array(7, dtype="int64"),
    }
    return state, [hwio, bias_and_more, counter], expected


@pytest.mark.parametrize("writer", [_write_legacy, _write_zip], ids=["legacy", "zip"])
def test_reads_strided_tensors_exactly(tmp_path, fake_torch, writer):
    state, storages, expected = _sample_state()
    path = tmp_path / "model.pth"
    writer(path, state, storages, fake_torch)
    loaded = load_torch_state_dict(path)
    assert list(loaded) == list(expected)
    for key, value in expected.items():
        assert loaded[key].dtype == value.dtype
        np.testing.assert_array_equal(loaded[key], value)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("layout", ["legacy", "zip"])
def test_rejects_pickle_that_calls_os_system(tmp_path, layout):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"weight": _RunsCode(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if layout == "legacy":
        with open(path, "wb") as f:
            for header in (MAGIC, 1001, SYS_INFO):
                pickle.dump(header, f, protocol=2)
            f.write(payload)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", payload)
    with pytest.raises(UnsafePickleError, match=r"Refusing to load global '(posix|os|nt)\.system'"):
        load_torch_state_dict(path)
    assert not marker.exists()


def test_rejects_other_torch_globals(tmp_path):
    payload = b"\x80\x02ctorch.nn.modules.linear\nLinear\nq\x00)\x81q\x01."
    path = tmp_path / "module.pth"
    with open(path, "wb") as f:
        for header in (MAGIC, 1001, SYS_INFO):
            pickle.dump(header, f, protocol=2)
        f.write(payload)
    with pytest.raises(UnsafePickleError, match="torch.nn.modules.linear.Linear"):
        load_torch_state_dict(path)


def test_rejects_view_outside_storage(tmp_path, fake_torch):
    storage = _Storage("0", np.zeros(4, dtype="float32"))
    state = {"w": _Tensor(storage, 2, (4,), (1,))}
    path = tmp_path / "bad.pth"
    _write_legacy(path, state, [storage], fake_torch)
    with pytest.raises(ValueError, match="outside its storage"):
        load_torch_state_dict(path)


def test_rejects_broadcast_view(tmp_path, fake_torch):
    storage = _Storage("0", np.zeros(4, dtype="float32"))
    state = {"w": _Tensor(storage, 0, (10**6, 10**6), (0, 0))}
    path = tmp_path / "huge.pth"
    _write_legacy(path, state, [storage], fake_torch)
    with pytest.raises(ValueError, match="broadcast"):
        load_torch_state_dict(path)


def test_clear_errors_for_missing_truncated_and_foreign_files(tmp_path, fake_torch):
    with pytest.raises(FileNotFoundError, match="No PyTorch checkpoint"):
        load_torch_state_dict(tmp_path / "nope.pth")
    foreign = tmp_path / "notes.pth"
    foreign.write_text("hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_torch_state_dict(foreign)
    state, storages, _ = _sample_state()
    path = tmp_path / "model.pth"
    _write_legacy(path, state, storages, fake_torch)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_torch_state_dict(truncated)
