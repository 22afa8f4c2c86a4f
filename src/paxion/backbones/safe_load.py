"""Reading checkpoint files without running code from them, and saying what a refused file is.

Every checkpoint the project reads goes through :func:`torch_load` (``torch.load(weights_only=True)``:
tensors and plain containers, no arbitrary unpickling) or :func:`load_safetensors`. When a file is
refused, the :class:`CheckpointError` says in one line what the file is: missing, empty, a truncated or
corrupt ``torch.save`` archive, a pickle that needs code to rebuild its objects (with the command that
converts a trusted file once: ``python -m paxion.tools.convert_checkpoint``), a safetensors file under
another suffix, a Git LFS pointer, a text or HTML page, or bytes of no known checkpoint format. It never
suggests ``weights_only=False``.

Loaded tensors are checked for NaN/inf: a file holding any is refused unless the environment variable
:data:`ALLOW_NONFINITE_ENV` is set, and then loads with a warning naming the tensors.

Lives next to :mod:`paxion.backbones.base` (which holds :class:`CheckpointError`) because a backbone's
converter may import nothing but the registry and this package's base modules.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from paxion.backbones.base import CheckpointError

logger = logging.getLogger(__name__)

ALLOW_NONFINITE_ENV = "PAXION_ALLOW_NONFINITE_WEIGHTS"
CONVERT_COMMAND = "python -m paxion.tools.convert_checkpoint"
_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def torch_load(path: str | Path, mmap: bool = False, safe_globals: Iterable[Any] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, or a :class:`CheckpointError` saying what the file is.

    ``safe_globals``: classes a known release format pickles (e.g. OmegaConf's config classes), allowed
    on top of tensors and plain containers. ``mmap`` applies to ``torch.save`` zip archives only.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    is_zip = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except Exception as exc:
        raise CheckpointError(f"{path}: {describe_refusal(path, exc)}") from exc
    check_finite(obj, path)
    return obj


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, checked like :func:`torch_load`'s."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors names neither the file nor the format ("header too large")
        raise CheckpointError(f"{path}: not a readable safetensors file ({_file_kind(path) or _first_line(exc)})") from exc
    check_finite(state, path)
    return state


def read_state_dict(path: str | Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a torch file: a bare state dict or its ``["model"]`` entry."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    obj: Any = torch_load(path, mmap=mmap)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors (or one under 'model')")
    return dict(obj)


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file's header (read after :func:`load_safetensors` checked it)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def describe_refusal(path: Path, exc: BaseException) -> str:
    """What a file that ``torch.load(weights_only=True)`` refused is, and what to do, in one sentence."""
    kind = _file_kind(path)
    if kind:
        return kind
    text = str(exc)
    needs_code = _GLOBAL.search(text)
    head = path.read_bytes()[:2] if path.stat().st_size else b""
    if needs_code or (head[:1] == b"\x80" and "Unsupported operand" in text):
        what = f"pickles the Python object '{needs_code.group(1)}'" if needs_code else "is a plain Python pickle"
        return (
            f"{what}, which only running code from the file can rebuild; this project loads tensors and "
            f"plain containers only. If you trust the file, convert it once: {CONVERT_COMMAND} {path} "
            f"{path.with_name(path.stem + '_tensors.pth')}"
        )
    if zipfile.is_zipfile(path):
        damaged = _zip_damage(path)
        if damaged:
            return damaged
    return f"cannot be read as a tensors-only torch file ({_first_line(exc)})"


def _file_kind(path: Path) -> str:
    """A file that is not a loadable checkpoint whatever the loader: why, or '' when it may be one."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes): an interrupted download or copy"
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") and not zipfile.is_zipfile(path):
        return f"truncated torch.save archive ({size} bytes, the zip directory at its end is missing): copy or download it again"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself: run 'git lfs pull' (or download the file)"
    if path.suffix != ".safetensors" and len(head) > 9 and head[8:10] == b'{"':
        return "a safetensors file under another suffix: rename it to end in .safetensors"
    if path.suffix == ".safetensors" and head.startswith(b"PK\x03\x04"):
        return "a torch.save archive under the .safetensors suffix: rename it to end in .pth"
    if head.lstrip()[:1] == b"<":
        return "an HTML/XML text file, not a checkpoint (a failed download's error page?)"
    if head[:1] != b"\x80" and not head.startswith(b"PK") and path.suffix != ".safetensors":
        if _is_text(head):
            return "a text file, not a checkpoint"
        return "not a checkpoint: neither a torch.save archive, a pickle nor a safetensors file"
    return ""


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _zip_damage(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        return f"corrupt torch.save archive ({_first_line(exc)}): copy or download it again"
    return f"corrupt torch.save archive (CRC mismatch in '{bad}'): copy or download it again" if bad else ""


def _first_line(exc: BaseException) -> str:
    """The exception's first sentence, without torch's advice to turn safe loading off."""
    text = " ".join(str(exc).split())
    text = re.split(r"(?<=\.) (?:In PyTorch 2\.6|Re-running|This file can still be loaded)", text)[0]
    return f"{type(exc).__name__}: {text[:200]}"


def _float_tensors(obj: Any, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if torch.is_tensor(obj):
        if obj.is_floating_point() or obj.is_complex():
            yield prefix or "<tensor>", obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _float_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _float_tensors(value, f"{prefix}[{i}]")


def check_finite(obj: Any, path: str | Path) -> None:
    """Refuse a file whose floating tensors hold NaN/inf (warn instead under ``PAXION_ALLOW_NONFINITE_WEIGHTS=1``)."""
    bad = [(name, t) for name, t in _float_tensors(obj) if not t.is_meta and not bool(torch.isfinite(t).all())]
    if not bad:
        return
    name, tensor = bad[0]
    count = int((~torch.isfinite(tensor)).sum())
    detail = f"{len(bad)} tensor(s) hold NaN/inf (first: '{name}', {count} of {tensor.numel()} values)"
    if os.environ.get(ALLOW_NONFINITE_ENV, "") not in ("", "0"):
        logger.warning(
            "%s: %s; loaded anyway because %s is set: every score computed from them may be NaN", path, detail,
            ALLOW_NONFINITE_ENV)
        return
    raise CheckpointError(
        f"{path}: {detail}: a diverged or damaged save; refused (set {ALLOW_NONFINITE_ENV}=1 to load it anyway)"
    )
