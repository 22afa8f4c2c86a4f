"""README.md and docs/**/*.md: every relative link resolves (file and, for a page, its heading), every
module path they name exists, and the README keeps its shape (short, one pointer per differences section)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
GUIDES = ["paxion", "singularity", "alpro", "vit_llm_block", "openvclip"]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]{1,2}(?=\S)|(?<=\S)[`*_]{1,2}", lambda m: "" if "_" not in m.group() else m.group(), heading)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    found: set[str] = set()
    for heading in re.findall(r"^\s*#{1,6} (.+)$", text, flags=re.M):
        base, n = slug(heading.replace("`", "")), 0
        while (name := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(name)
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"^[a-z]+:", t)]


LINKS = [(p.relative_to(REPO).as_posix(), t) for p in PAGES for t in links(p)]


def resolve(page: str, target: str) -> None:
    path, _, anchor = target.partition("#")
    file = (REPO / page).parent / path if path else REPO / page
    assert file.exists(), f"{page}: link to {target}: {file.relative_to(REPO)} does not exist"
    if anchor:
        assert file.suffix == ".md", f"{page}: anchor on a non-page {target}"
        assert anchor in anchors(file), f"{page}: {target}: no heading '#{anchor}' in {path or page}"


@pytest.mark.parametrize("page,target", LINKS, ids=[f"{p}->{t}" for p, t in LINKS])
def test_relative_link_resolves(page, target):
    resolve(page, target)


def test_a_broken_link_fails():
    with pytest.raises(AssertionError, match="does not exist"):
        resolve("README.md", "docs/systems/paxoin.md")
    with pytest.raises(AssertionError, match="no heading"):
        resolve("README.md", "docs/systems/paxion.md#diferences-from-the-original")


def module_names(page: Path) -> set[str]:
    """Module paths in inline code: ``paxion/...``, ``src/...py``, ``paxion.a.b`` and bare ``*.py`` names."""
    names = set()
    for span in re.findall(r"`([^`\n]+)`", page.read_text()):
        for token in re.findall(r"(?<![\w./~-])(?:src/)?paxion/[\w/<>]+(?:\.\w+)?|(?<![\w./])paxion(?:\.\w+)+|^[\w/]+\.py$", span):
            names.add(token)
    return names


def exists(name: str) -> bool:
    if "/" in name or name.endswith(".py") and "." not in name[:-3]:
        if "<" in name:
            return True
        path = name.removeprefix("src/")
        return any((root / path).exists() for root in (REPO, REPO / "src", REPO / "src" / "paxion")) or (
            "/" not in path and any(REPO.joinpath("src").rglob(path)))
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO).as_posix() for p in PAGES])
def test_module_paths_named_exist(page):
    missing = sorted(n for n in module_names(page) if not exists(n))
    assert missing == [], f"{page.relative_to(REPO)} names modules that do not exist: {missing}"


def test_a_stale_module_path_fails():
    assert not exists("paxion/runner_state.py") and not exists("paxion.engine.run_guards")
    assert not exists("run_guards.py") and exists("paxion/engine/guards.py") and exists("paxion.api.load_model")


def test_readme_is_short_and_points_to_every_differences_section():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    section = text.split("## Differences from the original", 1)[1].split("\n## ", 1)[0]
    for guide in GUIDES:
        assert f"docs/systems/{guide}.md#differences-from-the-original" in section, guide
        assert "differences-from-the-original" in anchors(REPO / "docs" / "systems" / f"{guide}.md"), guide
    assert "docs/differences.md#differences-from-the-original" in section
    assert "python -m pytest -q              #" in text and "python -m pytest -q -m slow      #" in text


def design_picture() -> dict[int, str]:
    """docs/DESIGN.md's opening picture, as layer rank (test_layers.LAYERS's numbers) -> its text."""
    block = re.search(r"```\n(.*?)```", (REPO / "docs" / "DESIGN.md").read_text(), flags=re.S).group(1)
    order = ["entry", "engine", "tasks", "systems", "parts", "foundation"]
    layers: dict[int, str] = {}
    current = None
    for line in block.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in order:
            current = 5 - order.index(word)
        if current is not None:
            layers[current] = layers.get(current, "") + line + "\n"
    return layers


def test_design_picture_matches_the_folders_and_the_layer_test():
    from test_layers import LAYERS

    picture = design_picture()
    assert sorted(picture) == [0, 1, 2, 3, 4, 5]
    for name, rank in LAYERS.items():
        if name != "paxion":
            last = name.split(".")[-1]
            assert re.search(rf"\b{last}\b", picture[rank]), f"{name} is not drawn in layer {rank} of DESIGN.md"
    for path in re.findall(r"paxion/[\w/]+(?:\.py)?", "".join(picture.values())):
        assert (REPO / "src" / path).exists(), f"DESIGN.md's picture names {path}, which does not exist"
