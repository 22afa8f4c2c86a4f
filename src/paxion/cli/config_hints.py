"""What a config says about a failure: the keys that set a path an error names, and the commands that make its data.

Used by the command line (``paxion.cli.train``) to end an error with where to fix it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from paxion.config import PATH_ENV_VARS, read_layers


def data_commands(cfg_path: str | Path) -> list[str]:
    """The commands that make a config's data, as its header comment gives them (lines running
    ``python -m paxion.data...`` or ``python -m paxion.quickstart --data-only``); else as the nearest base's does."""
    for source, _ in reversed(read_layers(Path(cfg_path))):
        commands: list[str] = []
        header = []
        for line in Path(source).read_text().splitlines():
            if not line.startswith("#"):
                break
            header.append(line.lstrip("#").strip())
        for i, line in enumerate(header):
            if re.match(r"python -m paxion\.(data\S*|quickstart --data-only)", line):
                command = line
                while command.endswith("\\") and i + 1 < len(header):
                    i += 1
                    command = command[:-1].rstrip() + " " + header[i]
                if command not in commands:
                    commands.append(command)
        if commands:
            return commands
    return []


def keys_naming(cfg: DictConfig, message: str) -> str:
    """Which config keys hold a file path that ``message`` names: ``"set by model.pretrained"``, '' if none.

    A key whose value was built from a ``paths.*`` root also names that root and its environment
    variable (``model.pretrained = ${paths.ckpt_root}/kp.pth``, ``PAXION_CKPT_ROOT``), so that a
    missing file can be fixed where it was set.
    """
    raw = OmegaConf.to_container(cfg, resolve=False)
    found = []
    for key, value in _leaves(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)):
        if not isinstance(value, str) or len(value) < 3 or not ("/" in value or "." in value):
            continue
        if not re.search(rf"(?<![\w./-]){re.escape(value)}(?![\w/-]|\.\w)", message):
            continue  # a whole path only: run.output_dir does not name output_dir/latest.pth
        note = key
        unresolved = _select_raw(raw, key)
        roots = re.findall(r"\$\{paths\.(\w+)\}", unresolved) if isinstance(unresolved, str) else []
        for root in roots:
            var = PATH_ENV_VARS.get(root)
            note += f" = {unresolved} with paths.{root}={cfg.paths[root]}" + (f" (or ${var})" if var else "")
        found.append(note)
    return f"set by {'; '.join(found)}" if found else ""


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}.{k}" if prefix else str(k))]
    return [(prefix, node)]


def _select_raw(raw: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(raw, dict) or part not in raw:
            return None
        raw = raw[part]
    return raw
