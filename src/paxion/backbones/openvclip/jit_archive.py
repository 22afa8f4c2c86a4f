"""Read the tensors of a TorchScript archive (OpenAI's CLIP ``ViT-B-16.pt``) without running its code.

``torch.jit.load`` compiles and runs the archive's TorchScript. Here only ``data.pkl`` is
unpickled, with an unpickler that knows three things: module objects (``__torch__.*`` classes)
become plain attribute holders, tensors are rebuilt from the archive's ``data/<key>`` records, and
every other global is refused. Walking the module tree then yields every tensor attribute under its
dotted name: the parameters and buffers of ``state_dict()`` plus plain tensor attributes (CLIP's
text ``attn_mask``), which the converter accounts for by name.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from paxion.backbones.base import CheckpointError


STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class ScriptObject:
    """Stand-in for a ``__torch__`` class: keeps the attribute dict it is built with."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.attributes = state


def is_torchscript_archive(path: str | Path) -> bool:
    """A zip whose top folder holds ``data.pkl`` and ``code/`` (a plain ``torch.save`` zip has no ``code/``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, path: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            return ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise CheckpointError(f"'{self.path}': TorchScript archive refers to {module}.{name}, which is not read")

    def persistent_load(self, pid: Any) -> Any:
        kind, storage_type, key, _location, numel = pid
        if kind != "storage":
            raise CheckpointError(f"'{self.path}': unknown persistent record {kind!r}")
        dtype = storage_type  # find_class mapped the storage class to its dtype
        raw = self.archive.read(f"{self.prefix}/data/{key}")
        untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
        storage = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        held = untyped.nbytes() // torch.empty((), dtype=dtype).element_size()
        if held != numel:
            raise CheckpointError(f"'{self.path}': record data/{key} holds {held} elements, expected {numel}")
        return storage


def _walk(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    for name, value in obj.attributes.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, ScriptObject):
            _walk(value, f"{prefix}{name}.", out)


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the archive's module tree, by dotted name (parameters, buffers, others)."""
    path = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise CheckpointError(f"'{path}': not a TorchScript archive (no single <name>/data.pkl)")
            prefix = pickles[0].split("/")[0]
            order = archive.read(f"{prefix}/byteorder").decode().strip() if f"{prefix}/byteorder" in names else "little"
            if order != "little":
                raise CheckpointError(f"'{path}': {order}-endian archive is not supported")
            root = _ArchiveUnpickler(archive.read(pickles[0]), archive, prefix, path).load()
    except (zipfile.BadZipFile, OSError, pickle.UnpicklingError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read TorchScript archive '{path}': {type(exc).__name__}: {exc}") from exc
    if not isinstance(root, ScriptObject):
        raise CheckpointError(f"'{path}': archive root is {type(root).__name__}, not a module")
    tensors: dict[str, torch.Tensor] = {}
    _walk(root, "", tensors)
    return tensors
