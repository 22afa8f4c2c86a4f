"""Figures that drift (run times, CPU times, test counts) live in docs/results.md with a date, not in help texts."""

from __future__ import annotations

import re

import pytest

from paxion.cli import quickstart

from conftest import REPO

DRIFTING = re.compile(r"\d+(\.\d+)? CPU[- ](minutes|seconds)|\d+ min \d+ s\b|\b\d+ (default )?tests in \d+ s")


def test_quickstart_help_has_no_timing_figure(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        quickstart.main(["--help"])
    text = capsys.readouterr().out
    assert "docs/results.md" in text and not DRIFTING.search(text) and "minutes" not in text


PAGES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md") if p.name != "results.md")]


@pytest.mark.parametrize("path", [*PAGES, "benchmarks/alpro_demo.py", "src/paxion/cli/quickstart.py"])
def test_drifting_figures_only_in_the_results_page(path: str) -> None:
    found = DRIFTING.findall((REPO / path).read_text())
    assert not found, f"{path}: move {found} to docs/results.md (Measured figures)"


def test_results_page_dates_every_measured_figure() -> None:
    text = (REPO / "docs" / "results.md").read_text()
    section = text.split("## Measured figures", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what")]
    assert len(rows) >= 10
    assert all(re.search(r"\| (by )?\d{4}-\d\d-\d\d \|$", row) for row in rows), rows
