"""The results report renders from a tiny real run (SynthAction clips, a 2-step Knowledge Patcher): every
chart, the run metadata, Object Shuffle, frames as the model saw them, and a red warning for bad numbers."""

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from paxion.cli import quickstart
from paxion.cli import report
from paxion.data.synthetic import generate

# clips larger than the model's 32 px, so the decoded frames and the model's input differ in size
TINY_DATA = {"seed": 1, "num_train": 16, "num_val": 12, "num_test": 0, "frames": 8, "size": 48}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    generate(root / "cache" / "synthaction_embedded", workers=1, **TINY_DATA)
    overrides = [f"paths.cache_root={root / 'cache'}", f"paths.output_root={root / 'out'}", "run.seed=7",
                 "run.max_epoch=1", "run.max_iters_per_epoch=2", "run.batch_size_train=4", "run.log_freq=1"]
    summary = quickstart.run(root / "run", overrides, data_spec=TINY_DATA)
    return root / "run", summary


def _table_rows(page: str, first_header: str) -> list[dict[str, str]]:
    """The rows of the table whose first header is ``first_header``, as {header: cell html}."""
    table = re.search(rf"<table><tr><th>{first_header}</th>(.*?)</table>", page, flags=re.S).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
    head = re.findall(r"<th>(.*?)</th>", rows[0])
    return [dict(zip(head, re.findall(r"<td>(.*?)</td>", row, flags=re.S))) for row in rows[1:]]


def _text(cell: str) -> str:
    """A cell as the reader sees it: tags (links, word-break hints) dropped."""
    return re.sub(r"<[^>]+>", "", cell)


def _png(data: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def test_report_has_every_chart(tiny_run):
    run_dir, summary = tiny_run
    out = report.main([str(run_dir)])
    page = out.read_text()
    assert out == run_dir / "report.html"
    for title in ("Accuracy per probe", "AA per action template", "VR per action template", "OS per action template",
                  "Object Shuffle by object", "Training curves", "Worst examples"):
        assert title in page, title
    first = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(summary["rows"]) == {"backbone (frozen)", "+ Knowledge Patcher (VTC+DVDM)"}
    assert "class='alert'" not in page, "a healthy run gets no warning"


def test_report_metadata_one_column_per_fact(tiny_run):
    run_dir, _ = tiny_run
    rows = {r["run"]: r for r in _table_rows(report.render(run_dir), "run</th><th>config")}
    patcher = {k: _text(v) for k, v in rows["patcher"].items()}
    assert patcher["seed"] == "7" and patcher["backbone"] == "internvideo_synth_pretrained"
    assert patcher["model"] == "paxion" and patcher["precision"] == "fp32" and patcher["processes"] == "1"
    assert patcher["device"] == "cpu" and f"torch {torch.__version__}" in patcher["versions"]
    assert re.fullmatch(r"\d+ s", patcher["duration"])
    env = json.loads((run_dir / "patcher" / "environment.json").read_text())
    assert f"python {env['python']}" in patcher["versions"]
    href = re.search(r"href='(.*?)'", rows["patcher"]["config"]).group(1)
    assert (run_dir / href).resolve() == (run_dir / "patcher" / "config.yaml").resolve()  # relative: the page moves
    assert patcher["weights"] == "none"  # the patcher trained from scratch


def test_report_backbone_row_shows_the_backbone_not_the_patcher(tiny_run):
    """The backbone-only score uses neither run.seed nor the patcher file its config inherits."""
    run_dir, _ = tiny_run
    backbone = {k: _text(v) for k, v in _table_rows(report.render(run_dir), "run</th><th>config")[0].items()}
    assert backbone["run"] == "backbone" and backbone["seed"] == "–"
    assert backbone["weights"] == "built into internvideo_synth_pretrained"
    assert "kp_synth" not in backbone["weights"]


def test_report_runs_table_fits_a_1400_px_window(tiny_run):
    """Estimated narrowest width of the Runs table (longest unbreakable word per column at 8 px a character,
    plus padding and border) within the page's 1100 px column, which fits a 1400 px window."""
    run_dir, _ = tiny_run
    page = report.render(run_dir)
    table = re.search(r"<table><tr><th>run</th><th>config.*?</table>", page, flags=re.S).group(0)
    rows = [re.findall(r"<t[hd]>(.*?)</t[hd]>", row, flags=re.S) for row in re.findall(r"<tr>(.*?)</tr>", table)]

    def longest_word(cell: str) -> int:
        pieces = re.split(r"<wbr>|<br>|\s+", cell)
        return max(len(_text(piece)) for piece in pieces)

    widths = [max(longest_word(row[i]) for row in rows) * 8 + 13 for i in range(len(rows[0]))]
    assert sum(widths) <= 1100, dict(zip(rows[0], widths))
    assert "max-width:1100px" in page and "overflow-wrap:anywhere" in page


def test_report_object_shuffle_counts_every_clip(tiny_run):
    run_dir, _ = tiny_run
    rows = _table_rows(report.render(run_dir), "object")
    predictions = (run_dir / "patcher" / "result" / "val_object_shuffle_predictions.jsonl").read_text().splitlines()
    assert rows and sum(int(r["clips"]) for r in rows) == len(predictions)  # 12 clips: every object listed
    runs = report.find_runs(run_dir)
    ann = report.annotations(runs[0])
    table = report.per_group(runs[-1], "object_shuffle", ann, "object")
    assert sum(n for _, n in table.values()) == len(predictions)
    hits = sum(round(acc * n / 100) for acc, n in table.values())
    assert hits / len(predictions) == pytest.approx(runs[-1].metrics["object_shuffle_accuracy"], abs=1e-6)


def test_report_shows_the_frames_the_model_saw(tiny_run):
    run_dir, _ = tiny_run
    runs = report.find_runs(run_dir)
    patched = runs[-1]
    ann = report.annotations(patched)
    examples = report.worst_examples(patched, ann, per_probe=1)
    assert [e["probe"] for e in examples] == ["AA", "VR", "OS"]
    example = examples[0]
    preprocess = report.model_input(patched)
    assert (preprocess.num_frames, preprocess.image_size) == (8, 32)
    video = Path(str(patched.cfg.datasets.actionbench_ssv2.videos)) / f"{example['video_id']}.mp4"
    clip = preprocess(video)[0]  # (T, C, 32, 32) as the model got it
    seen, original = _png(example["seen"]), _png(example["original"])
    scale = seen.shape[0] // 32
    assert np.array_equal(seen[::scale, : 32 * scale : scale], clip[0].permute(1, 2, 0).numpy())
    assert original.shape[0] // (96 // 48) == 48, "the decoded clip keeps the file's 48 px"


def _planted(run_dir: Path, tmp_path: Path) -> Path:
    bad = tmp_path / "bad"
    shutil.copytree(run_dir / "patcher", bad / "patcher")
    return bad / "patcher"


def test_report_warns_in_red_about_nonfinite_scores(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    patcher = _planted(run_dir, tmp_path)
    output = patcher / "result" / "val_output.json"
    metrics = json.loads(output.read_text())
    metrics.update(nonfinite_scores=3, video_reversal_accuracy=float("nan"))
    output.write_text(json.dumps(metrics))
    page = report.render(patcher.parent)
    alert = re.search(r"<div class='alert'>(.*?)</div>", page, flags=re.S).group(1)
    assert "nonfinite_scores = 3" in alert and "video_reversal_accuracy is nan" in alert
    row = _table_rows(page, "run</th><th>scored by")[0]
    assert "class='bad'" in row["non-finite scores"] and "class='bad'" in row["VR (%)"]


def test_report_names_unreadable_and_missing_videos(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    patcher = _planted(run_dir, tmp_path)
    output = patcher / "result" / "val_output.json"
    output.write_text(json.dumps({**json.loads(output.read_text()), "skipped_videos": 4, "missing_videos": 2}))
    entries = [{"split": "val", "path": f"/data/videos/{i}.mp4", "kind": kind, "phases": ["eval val"]}
               for i, kind in [(11, "unreadable"), (12, "unreadable"), (13, "unreadable"), (14, "unreadable"),
                               (21, "missing"), (22, "missing")]]
    (patcher / "skipped_videos.json").write_text(json.dumps(entries))
    page = report.render(patcher.parent)
    banner = re.search(r"<div class='warn'>(.*?)</div>", page, flags=re.S).group(1)
    assert "4 unreadable videos (replaced by other clips): 11, 12, 13, 14" in banner
    assert "2 missing videos (left out of the scores): 21, 22" in banner
    row = _table_rows(page, "run</th><th>scored by")[0]
    assert row["unreadable / missing videos"] == "4 / 2"


def test_report_warns_about_a_diverged_run(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    patcher = _planted(run_dir, tmp_path)
    with open(patcher / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "train", "step": 99, "epoch": 0, "loss": float("nan"), "mean_loss": 1.0}) + "\n")
    assert "non-finite training loss logged at step 99" in report.render(patcher.parent)
    patcher2 = _planted(run_dir, tmp_path / "2")
    with open(patcher2 / "log.txt", "a") as f:
        f.write("2026-01-01 00:00:00,000 ERROR [rank0] paxion.cli.train: non-finite training loss at epoch 0, "
                "iteration 1 of 2, global step 0: loss=nan vtc=nan\n")
    assert "loss=nan vtc=nan" in report.render(patcher2.parent)


def test_report_without_runs_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run folder"):
        report.render(tmp_path)
