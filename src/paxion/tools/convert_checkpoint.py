"""Convert a trusted pickled checkpoint into one the project loads: tensors and plain containers only.

    python -m paxion.tools.convert_checkpoint OLD.pth NEW.pth

The project reads checkpoints with ``torch.load(weights_only=True)``, which never runs code from a
file. Older files (a plain ``pickle``, or a ``torch.save`` holding ``argparse.Namespace``, a config
object, numpy arrays, ...) are refused with a message pointing here. This tool unpickles ``OLD.pth``
**with arbitrary code execution** — run it only on a file whose origin you trust — and writes
``NEW.pth`` with the same structure, where:

* tensors, ``str``/``int``/``float``/``bool``/``None`` and dicts, lists and tuples of them are kept;
* numpy arrays become tensors, numpy scalars Python numbers, ``argparse.Namespace`` and other
  mappings dicts (an OmegaConf config too);
* any other object is dropped, and listed.

The new file is then read back with the safe loader, so it is known to load. A name ending in
``.safetensors`` writes a flat tensor file instead (the input must hold a flat dict of tensors, or
one under ``model`` / ``state_dict``).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from paxion.backbones.safe_load import load_safetensors, torch_load

PLAIN = (str, int, float, bool, type(None))


def load_trusted(path: Path) -> Any:
    """Unpickle ``path`` with code execution: a ``torch.save`` file of any age, or a plain pickle."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError):  # not a torch.save file: torch's magic number is missing
        if zipfile.is_zipfile(path):
            raise
        with open(path, "rb") as f:
            return pickle.load(f)


def to_plain(obj: Any, where: str, dropped: list[str]) -> Any:
    """``obj`` with every entry a tensor or plain container; ``dropped`` collects what could not be kept."""
    if torch.is_tensor(obj) or isinstance(obj, PLAIN):
        return obj
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    elif not isinstance(obj, Mapping) and hasattr(obj, "items") and callable(obj.items):
        obj = dict(obj.items())  # OmegaConf DictConfig and similar mapping-like objects
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, PLAIN):
                dropped.append(f"{where}[{key!r}] (key of type {type(key).__name__})")
                continue
            kept = to_plain(value, f"{where}.{key}" if where else str(key), dropped)
            if kept is not _DROP:
                out[key] = kept
        return out
    if isinstance(obj, (list, tuple)):
        items = [to_plain(v, f"{where}[{i}]", dropped) for i, v in enumerate(obj)]
        items = [v for v in items if v is not _DROP]
        return items if isinstance(obj, list) else tuple(items)
    dropped.append(f"{where or '<top>'} ({type(obj).__module__}.{type(obj).__qualname__})")
    return _DROP


_DROP = object()


def convert(src: Path, dst: Path) -> list[str]:
    """Write ``dst`` from the trusted ``src``; -> the entries dropped. The result is checked by loading it."""
    dropped: list[str] = []
    plain = to_plain(load_trusted(src), "", dropped)
    if plain is _DROP:
        raise SystemExit(f"error: {src}: the whole file is one {dropped[0]}: nothing to keep")
    if dst.suffix == ".safetensors":
        from safetensors.torch import save_file

        state = next((plain[k] for k in ("model", "state_dict") if isinstance(plain, dict) and k in plain), plain)
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise SystemExit(f"error: {src}: not a flat dict of tensors (or one under 'model'); write a .pth instead")
        save_file({k: v.contiguous() for k, v in state.items()}, str(dst))
        load_safetensors(dst)
    else:
        torch.save(plain, dst)
        torch_load(dst)
    return dropped


def main(argv: Optional[Sequence[str]] = None) -> Path:
    parser = argparse.ArgumentParser(
        description="Convert a TRUSTED pickled checkpoint into a tensors-only file the project loads safely."
    )
    parser.add_argument("src", type=Path, help="the old file (unpickled with code execution: trust it first)")
    parser.add_argument("dst", type=Path, help="the new file (.pth, or .safetensors for a flat state dict)")
    args = parser.parse_args(argv)
    if not args.src.is_file():
        raise SystemExit(f"error: {args.src}: file not found")
    if args.dst.resolve() == args.src.resolve():
        raise SystemExit(f"error: {args.dst}: write the converted file next to the original, not over it")
    dropped = convert(args.src, args.dst)
    for entry in dropped:
        print(f"dropped: {entry}", file=sys.stderr)
    print(f"wrote {args.dst} (tensors and plain containers; {len(dropped)} entries dropped)")
    return args.dst


if __name__ == "__main__":
    main()
