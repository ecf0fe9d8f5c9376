"""Reads pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` into Flax parameters, without PyTorch.

A torch weight file is either a zip archive (``torch.save`` since 1.6: ``<name>/data.pkl`` plus one raw
little-endian record per storage under ``<name>/data/<key>``) or the legacy stream (pickled magic
number, protocol version and system info, the data pickle, the list of storage keys, then per storage an
int64 element count followed by its raw bytes). The data pickle holds an ``OrderedDict`` of tensors,
each rebuilt by ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` from a storage
named by a persistent id. A restricted unpickler rebuilds these as NumPy arrays and refuses every other
global, so no code from the file ever runs.

Keys follow torchvision's ``Inception3``; conversion to the ``FidInceptionV3`` tree: conv ``weight``
OIHW → ``kernel`` HWIO; BatchNorm ``weight``/``bias``/``running_mean``/``running_var`` →
``scale``/``bias``/``mean``/``var``; ``num_batches_tracked`` and ``fc.*`` (the 1008-way classifier)
are dropped. Declared shapes are checked against the loaded arrays.

The file's SHA-256 must start with ``6726825d`` (torch.hub's naming convention); a mismatch raises
``InceptionWeightsError`` unless ``allow_unverified=True``, which only warns (for tests with random
weights; FIDs from such weights are not comparable to published numbers).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import warnings
import zipfile
from typing import Any, Mapping

import numpy as np

from lkgan_jax.evaluation import inception
from lkgan_jax.utils.files import file_sha256, write_atomically

EXPECTED_SHA256_PREFIX = "6726825d"
WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> little-endian NumPy dtype (BFloat16 has no NumPy dtype and is refused).
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


class InceptionWeightsError(ValueError):
    """The Inception weight file is unverified, unreadable or does not fit the network."""


class _StorageType:
    """Stands for ``torch.<Name>Storage`` inside the unpickler."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


def _rebuild_tensor(storage: Any, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *unused: Any) -> Any:
    """``torch._utils._rebuild_tensor_v2`` on a 1-D NumPy storage: a strided view, copied.

    A legacy-format storage whose bytes follow the data pickle gives a ``_DeferredTensor`` instead.
    """
    if isinstance(storage, _PendingStorage):
        return _DeferredTensor(storage.key, (offset, size, stride))
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError("a tensor is not backed by a storage record")
    size, stride, offset = tuple(int(s) for s in size), tuple(int(s) for s in stride), int(offset)
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"invalid tensor layout (size {size}, stride {stride}, offset {offset})")
    if 0 not in size and offset + sum((n - 1) * s for n, s in zip(size, stride)) >= storage.size:
        raise pickle.UnpicklingError(f"tensor of size {size} runs past its storage of {storage.size} elements")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], size, tuple(s * item for s in stride))
    return np.array(view)


class _PendingStorage:
    """A legacy-format storage whose bytes come after the data pickle."""

    def __init__(self, key: str):
        self.key = key


class _DeferredTensor:
    """A legacy-format tensor, rebuilt once its storage's bytes have been read."""

    def __init__(self, key: str, args: tuple[Any, ...]):
        self.key, self.args = key, args


def _rebuild_parameter(data: np.ndarray, requires_grad: bool, backward_hooks: Any, *state: Any) -> np.ndarray:
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that allows only OrderedDict, tensor rebuilds and storage types; storages via a callback."""

    _GLOBALS = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }

    def __init__(self, file: Any, load_storage: Any):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._GLOBALS:
            return self._GLOBALS[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only plain tensors are supported)")

    def persistent_load(self, saved_id: Any) -> Any:
        if not isinstance(saved_id, tuple) or not saved_id or _ascii(saved_id[0]) != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {saved_id!r:.80}")
        return self._load_storage(saved_id[1:])


def _ascii(value: Any) -> Any:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _storage_type(value: Any) -> _StorageType:
    if not isinstance(value, _StorageType):
        raise pickle.UnpicklingError(f"unsupported storage type {value!r:.80}")
    return value


def _read_zip(data: bytes) -> Any:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise pickle.UnpicklingError("zip archive without exactly one <name>/data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = archive.read(prefix + "byteorder") if prefix + "byteorder" in names else b"little"
        if byteorder != b"little":
            raise pickle.UnpicklingError(f"unsupported byte order {byteorder!r}")
        storages: dict[str, np.ndarray] = {}

        def load_storage(record: tuple[Any, ...]) -> np.ndarray:
            if len(record) != 4:
                raise pickle.UnpicklingError(f"unexpected storage record {record!r:.80}")
            storage_type, key, _, numel = _storage_type(record[0]), str(_ascii(record[1])), record[2], int(record[3])
            if key not in storages:
                raw = archive.read(f"{prefix}data/{key}")
                if len(raw) < numel * storage_type.dtype.itemsize:
                    raise pickle.UnpicklingError(f"storage {key} is truncated")
                storages[key] = np.frombuffer(raw, storage_type.dtype, count=numel)
            return storages[key]

        with archive.open(pickles[0]) as file:
            return _RestrictedUnpickler(file, load_storage).load()


def _read_legacy(data: bytes) -> Any:
    file = io.BytesIO(data)
    def no_storages(record: tuple[Any, ...]) -> Any:
        raise pickle.UnpicklingError("storage reference outside the data pickle")

    if _RestrictedUnpickler(file, no_storages).load() != LEGACY_MAGIC_NUMBER:
        raise pickle.UnpicklingError("not a torch file (bad magic number)")
    if _RestrictedUnpickler(file, no_storages).load() != LEGACY_PROTOCOL_VERSION:
        raise pickle.UnpicklingError("unsupported legacy torch protocol version")
    sys_info = _RestrictedUnpickler(file, no_storages).load()
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise pickle.UnpicklingError("unsupported legacy system info (big-endian file?)")
    records: dict[str, tuple[_StorageType, int]] = {}
    views: list[tuple[str, str, int, int]] = []
    placeholders: dict[str, _PendingStorage] = {}

    def load_storage(record: tuple[Any, ...]) -> np.ndarray:
        if len(record) != 5:
            raise pickle.UnpicklingError(f"unexpected storage record {record!r:.80}")
        storage_type, root_key, numel, view = _storage_type(record[0]), str(_ascii(record[1])), int(record[3]), record[4]
        records.setdefault(root_key, (storage_type, numel))
        key = root_key
        if view is not None:
            view_key, view_offset, view_size = str(_ascii(view[0])), int(view[1]), int(view[2])
            views.append((view_key, root_key, view_offset, view_size))
            key = view_key
        # Tensors are rebuilt before the storage bytes are read: hand out a marker resolved below.
        return placeholders.setdefault(key, _PendingStorage(key))

    result = _RestrictedUnpickler(file, load_storage).load()
    keys = _RestrictedUnpickler(file, no_storages).load()
    arrays: dict[str, np.ndarray] = {}
    for key in keys:
        key = str(_ascii(key))
        if key not in records:
            raise pickle.UnpicklingError(f"storage {key} listed but never used")
        storage_type, numel = records[key]
        (stored_numel,) = struct.unpack("<q", file.read(8))
        nbytes = stored_numel * storage_type.dtype.itemsize
        raw = file.read(nbytes)
        if stored_numel != numel or len(raw) != nbytes:
            raise pickle.UnpicklingError(f"storage {key} is truncated or has the wrong size")
        arrays[key] = np.frombuffer(raw, storage_type.dtype)
    for view_key, root_key, offset, size in views:
        arrays[view_key] = arrays[root_key][offset: offset + size]
    return _resolve_legacy(result, arrays)


def _resolve_legacy(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, _DeferredTensor):
        if obj.key not in arrays:
            raise pickle.UnpicklingError(f"storage {obj.key} has no data")
        return _rebuild_tensor(arrays[obj.key], *obj.args)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve_legacy(v, arrays)) for k, v in obj.items())
    return obj


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a torch ``state_dict`` file as NumPy arrays (zip or legacy format), torch-free.

    Raises InceptionWeightsError (one line) for anything that is not a plain mapping of tensors.
    """
    with open(path, "rb") as file:
        data = file.read()
    try:
        state = _read_zip(data) if data[:4] == b"PK\x03\x04" else _read_legacy(data)
    except Exception as error:  # malformed pickles raise many types; all mean "not a readable file"
        raise InceptionWeightsError(f"{path} is not a readable PyTorch state_dict file ({error})") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise InceptionWeightsError(f"{path} does not hold a plain state_dict (a mapping of tensors)")
    return {str(k): v for k, v in state.items()}


def params_from_state_dict(state_dict: Mapping[str, np.ndarray], source: str = "state_dict") -> dict[str, Any]:
    """torchvision-named FID Inception tensors → the ``FidInceptionV3`` parameter tree (float32, checked)."""
    flat: dict[str, np.ndarray] = {}
    torch_key_of: dict[str, str] = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if parts[0] == "fc" or parts[-1] == "num_batches_tracked":
            continue
        if len(parts) < 3 or parts[-2] not in ("conv", "bn"):
            raise InceptionWeightsError(f"{source}: unexpected key {key} for the FID Inception network")
        module, layer, kind = parts[:-2], parts[-2], parts[-1]
        if layer == "conv" and kind == "weight":
            if value.ndim != 4:
                raise InceptionWeightsError(f"{source}: {key} has shape {value.shape}, expected a 4-d OIHW kernel")
            name, array = "kernel", np.transpose(value, (2, 3, 1, 0))
        elif layer == "bn" and kind in _BN_NAMES:
            name, array = _BN_NAMES[kind], value
        else:
            raise InceptionWeightsError(f"{source}: unexpected key {key} for the FID Inception network")
        flax_name = "/".join([*module, layer, name])
        flat[flax_name] = np.ascontiguousarray(array, np.float32)
        torch_key_of[flax_name] = key
    declared = inception.declared_param_shapes()
    for name, shape in declared.items():
        if name not in flat:
            raise InceptionWeightsError(f"{source}: missing weights for {name} (declared shape {shape})")
        if flat[name].shape != shape:
            raise InceptionWeightsError(
                f"{source}: {torch_key_of[name]} → {name} has shape {flat[name].shape} (after OIHW→HWIO) "
                f"but the network declares {shape}")
    for name in flat:
        if name not in declared:
            raise InceptionWeightsError(f"{source}: unexpected key {torch_key_of[name]} for the FID Inception network")
    return inception.unflatten_params(flat)


def state_dict_from_params(params: Any) -> dict[str, np.ndarray]:
    """Inverse of ``params_from_state_dict`` (HWIO → OIHW, torchvision names), float32 NumPy."""
    inverse_bn = {v: k for k, v in _BN_NAMES.items()}
    state = {}
    for name, value in inception.flatten_params(params).items():
        *module, layer, kind = name.split("/")
        value = np.asarray(value, np.float32)
        if kind == "kernel":
            key, value = "weight", np.transpose(value, (3, 2, 0, 1))
        else:
            key = inverse_bn[kind]
        state[".".join([*module, layer, key])] = np.ascontiguousarray(value)
    return state


def load_inception_params(path: str | os.PathLike | None, allow_unverified: bool = False) -> tuple[dict[str, Any], str]:
    """(Flax params, SHA-256 hex) from pytorch-fid's weight file at ``path`` (a local file; no downloads).

    Raises FileNotFoundError when the file is missing, InceptionWeightsError when its SHA-256 does not
    start with ``6726825d`` (unless ``allow_unverified``: then a warning), when it cannot be parsed, or
    when a tensor's shape does not fit the network.
    """
    where = "No FID Inception weights file was given" if path is None else \
        f"FID Inception weights not found at {os.fspath(path)!r}"
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(
            f"{where}: download pytorch-fid's {WEIGHTS_FILENAME} ({WEIGHTS_URL}) "
            "and pass its local path (nothing is downloaded automatically).")
    sha256 = file_sha256(path)
    if not sha256.startswith(EXPECTED_SHA256_PREFIX):
        message = (f"{path} has SHA-256 {sha256[:16]}…, not pytorch-fid's FID Inception weights "
                   f"(expected prefix {EXPECTED_SHA256_PREFIX})")
        if not allow_unverified:
            raise InceptionWeightsError(message + "; --allow-unverified-weights accepts other weights (for tests only: FIDs are then not comparable)")
        warnings.warn(message + "; accepted because allow_unverified=True (FIDs are not comparable).", stacklevel=2)
    params = params_from_state_dict(read_torch_state_dict(path), source=str(path))
    return params, sha256


class _Global:
    """A global reference that ``_TorchPickler`` writes as a pickle GLOBAL opcode (``torch`` need not exist)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle requires reduce functions to be callable; never called
        raise NotImplementedError


class _StorageRef:
    def __init__(self, key: str, array: np.ndarray, storage_name: str):
        self.key, self.array, self.storage_name = key, array, storage_name


class _TensorRef:
    def __init__(self, storage: _StorageRef):
        self.storage = storage

    def __reduce__(self) -> Any:
        shape = self.storage.array.shape
        args = (self.storage, 0, shape, _contiguous_strides(shape), False, collections.OrderedDict())
        return _Global("torch._utils", "_rebuild_tensor_v2"), args


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler's dispatch table can emit foreign globals
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_global_ref(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))

    dispatch[_Global] = _save_global_ref

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _StorageRef):
            return ("storage", _Global("torch", obj.storage_name), obj.key, "cpu", obj.array.size)
        return None


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def write_torch_state_dict(path: str | os.PathLike, state_dict: Mapping[str, np.ndarray]) -> None:
    """Writes ``state_dict`` (float32/float64/int64 arrays) as a zip-format file that ``torch.load`` reads.

    Torch-free; for tests and tools (e.g. random-weight files). Written atomically.
    """
    storage_names = {np.dtype("<f4"): "FloatStorage", np.dtype("<f8"): "DoubleStorage",
                     np.dtype("<i8"): "LongStorage"}
    state: collections.OrderedDict[str, _TensorRef] = collections.OrderedDict()
    for index, (key, value) in enumerate(state_dict.items()):
        array = np.asarray(value)
        array = np.array(array, dtype=array.dtype.newbyteorder("<"), order="C")  # keeps 0-d arrays 0-d
        if array.dtype not in storage_names:
            raise ValueError(f"write_torch_state_dict supports float32/float64/int64, got {array.dtype} for {key}")
        state[key] = _TensorRef(_StorageRef(str(index), array, storage_names[array.dtype]))
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(state)

    def write(file: Any) -> None:
        with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr("archive/data.pkl", buffer.getvalue())
            archive.writestr("archive/byteorder", "little")
            for tensor in state.values():
                archive.writestr(f"archive/data/{tensor.storage.key}", tensor.storage.array.tobytes())
            archive.writestr("archive/version", "3\n")

    write_atomically(path, write)
