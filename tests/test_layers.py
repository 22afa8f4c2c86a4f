"""The layers of docs/DESIGN.md, checked on every import in the package (function-level imports included).

    entry (cli/, api, the command modules)  ->  engine/  ->  tasks/  ->  systems/  ->  parts  ->  foundation

A module imports from its own layer or below. ``data/`` never imports the model side, and the engine's
leaves (``engine.dist``, ``engine.checkpoint``, ``engine.optim``) the backbone contract (``backbones.base``,
home of the one ``CheckpointError``) and the safe file loaders (``backbones.safe_load``) are foundation: any layer may use them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "paxion"

ENGINE_LEAVES = ("paxion.engine.dist", "paxion.engine.checkpoint", "paxion.engine.optim")
FOUNDATION = ("paxion.registry", "paxion.config", "paxion.config_schema", "paxion.backbones.base",
              "paxion.backbones.safe_load", *ENGINE_LEAVES)
LAYERS = {  # prefix -> rank; higher may import lower
    "paxion": 5, "paxion.cli": 5, "paxion.api": 5, "paxion.train": 5, "paxion.evaluate": 5, "paxion.quickstart": 5,
    "paxion.inference": 5, "paxion.report": 5, "paxion.assets": 5, "paxion.tools": 5,
    "paxion.engine": 4,
    "paxion.tasks": 3,
    "paxion.systems": 2,
    "paxion.backbones": 1, "paxion.modules": 1, "paxion.techniques": 1, "paxion.data": 1,
    **{name: 0 for name in FOUNDATION},
}
MODEL_SIDE = ("paxion.backbones", "paxion.modules", "paxion.techniques", "paxion.systems", "paxion.tasks")


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def rank(name: str) -> int | None:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len, default=None)
    if best == "paxion" and name != "paxion":
        return None  # ``from paxion import x`` names a subpackage, ranked by its own entry
    return None if best is None else LAYERS[best]


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.startswith("paxion.")}


def violations() -> list[str]:
    found = []
    for path in sorted(PKG.rglob("*.py")):
        me = module_name(path)
        my_rank = rank(me)
        assert my_rank is not None, f"{me} is in no layer: add it to tests/test_layers.py and docs/DESIGN.md"
        for target in imported(path):
            their = rank(target)
            if their is None:
                continue  # a package's own name (``paxion.systems`` itself) or a symbol of the root
            if their > my_rank and not target.startswith(me):
                found.append(f"{me} imports {target} (a higher layer)")
            if me.startswith("paxion.data") and target.startswith(MODEL_SIDE):
                found.append(f"{me} imports {target} (data never imports the model side)")
    return found


def test_imports_point_down_the_layers():
    assert violations() == []


def test_engine_leaves_import_nothing_above_foundation():
    for leaf in ENGINE_LEAVES:
        path = PKG / (leaf.removeprefix("paxion.").replace(".", "/") + ".py")
        above = [t for t in imported(path) if (rank(t) or 0) > 0]
        assert above == [], f"{leaf} imports {above}"


@pytest.mark.parametrize("source,target", [("paxion.tasks.retrieval", "paxion.engine.runner"),
                                           ("paxion.data.base", "paxion.systems.paxion.model")])
def test_the_check_catches_an_upward_import(tmp_path, monkeypatch, source, target):
    path = PKG / (source.removeprefix("paxion.").replace(".", "/") + ".py")
    original = path.read_text
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (original() + f"\nimport {target}\n")
                        if self == path else Path.read_bytes(self).decode())
    assert any(source in v and target in v for v in violations())
