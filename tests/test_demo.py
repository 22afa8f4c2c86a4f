"""``python src/demo.py`` with no arguments: shipped model + patcher + clip, both probabilities printed."""

import re
import runpy
import sys
from pathlib import Path

import pytest

from paxion.cli.demo import demo_texts

DEMO = Path(__file__).resolve().parents[1] / "src" / "demo.py"


def test_demo_without_arguments_prints_both_probabilities(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(DEMO)])
    runpy.run_path(str(DEMO), run_name="__main__")
    out = capsys.readouterr().out
    texts = demo_texts()
    rows = {}
    for line in out.splitlines():
        match = re.match(r"^(.*?)\s+(\d\.\d{3})\s+(\d\.\d{3})$", line)
        if match:
            rows.setdefault(match.group(1).strip(), (float(match.group(2)), float(match.group(3))))
    assert texts["caption"] in rows and texts["action_antonym"] in rows, out
    caption, antonym = rows[texts["caption"]], rows[texts["action_antonym"]]
    for scorer in (0, 1):  # backbone, patched: a distribution over the two captions
        assert abs(caption[scorer] + antonym[scorer] - 1.0) < 2e-3
    assert caption[1] > antonym[1], "the shipped patcher should prefer the true caption of the shipped clip"


def test_inference_writes_frames_and_the_api_scores(tmp_path):
    """``python src/inference.py``: per sample a frame strip and the same probabilities as paxion.score_captions."""
    import json

    import paxion
    from paxion.cli import inference
    from paxion.api import asset
    from paxion.config import load_config
    from paxion.data.synthetic import generate

    data = tmp_path / "data"
    generate(data, workers=1, seed=5, num_train=2, num_val=3, num_test=0, frames=8, size=32)
    config = Path(__file__).resolve().parents[1] / "configs/eval/actionbench/synthaction/embedded_patcher.yaml"
    overrides = [f"paths.data_root={data}", f"model.pretrained={asset('kp_synth.safetensors')}"]
    results = inference.run(str(config), overrides, tmp_path / "out", "val", None, num_samples=2, seed=0)
    assert len(results) == 2
    videos = Path(load_config(config, overrides).datasets.actionbench_ssv2.videos)
    model, preprocess, _ = paxion.load_model("embedded_default")
    for result in results:
        folder = tmp_path / "out" / str(result["video_id"])
        assert (folder / "frames.png").is_file()
        saved = json.loads((folder / "scores.json").read_text())
        video = preprocess(videos / f"{result['video_id']}.mp4")
        expected = paxion.score_captions(model, video, saved["action_antonym"]["texts"])
        assert saved["action_antonym"]["patcher"] == pytest.approx(expected.patcher, abs=1e-5)
        assert saved["video_reversal"]["texts"] == ["clip", "reversed clip"]


def test_demo_user_errors_are_one_line(capsys, monkeypatch, tmp_path):
    missing = tmp_path / "missing.mp4"
    for argv, named in (([f"--video={missing}", "--text=a", "--text=b"], str(missing)),
                        (["--config=no_such_model", f"--video={missing}", "--text=a", "--text=b"], "no_such_model")):
        monkeypatch.setattr(sys, "argv", [str(DEMO), *argv])
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(DEMO), run_name="__main__")
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if "error:" in line]
        assert exit_info.value.code == 1 and len(errors) == 1 and named in errors[0], err
        assert "Traceback" not in err
