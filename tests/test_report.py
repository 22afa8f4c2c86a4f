"""The results report renders from a tiny real run (SynthAction clips, a 2-step Knowledge Patcher)."""

import base64

import pytest

from paxion import quickstart, report
from paxion.data.synthetic import generate

TINY_DATA = {"seed": 1, "num_train": 16, "num_val": 12, "num_test": 0, "frames": 8, "size": 32}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = root / "cache" / "synthaction_embedded"
    generate(data, workers=1, **TINY_DATA)
    overrides = [f"paths.cache_root={root / 'cache'}", f"paths.output_root={root / 'out'}",
                 "run.max_epoch=1", "run.max_iters_per_epoch=2", "run.batch_size_train=4", "run.log_freq=1"]
    summary = quickstart.run(root / "run", overrides, data_spec=TINY_DATA)
    return root / "run", summary


def test_report_has_every_chart(tiny_run):
    run_dir, summary = tiny_run
    out = report.main([str(run_dir)])
    page = out.read_text()
    assert out == run_dir / "report.html"
    images = page.count("data:image/png;base64,")
    # probes chart + AA and VR per template + training curves = 4 charts, then one strip per worst example
    assert images >= 4 + 1
    for title in ("Accuracy per probe", "AA per action template", "VR per action template", "Training curves", "Worst examples"):
        assert title in page
    first = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(summary["rows"]) == {"backbone (frozen)", "+ Knowledge Patcher (VTC+DVDM)"}


def test_report_without_runs_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run folder"):
        report.render(tmp_path)
