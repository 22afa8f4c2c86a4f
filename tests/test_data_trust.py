"""Results a researcher can trust: every unusable video counted once, a clear error when no video is
there, non-finite scores never counted as right, probes a split cannot run skipped and said so,
input unlike the model's said so, and no generated file written over data the project did not make."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

import paxion  # noqa: F401  (registers builders and tasks)
from paxion.cli import quickstart
from paxion.config import load_config
from paxion.data.base import VideosNotFoundError
from paxion.data.synthetic import generate
from paxion.data.synthetic.__main__ import main as synth_main
from paxion.data.synthetic.generate import MARKER, OverwriteError, SynthConfig
from paxion.cli.evaluate import main as evaluate_main
from paxion.tasks.metrics import NO_PREDICTION, accuracy, first_hit_ranks, macro_f1, predict
from paxion.registry import registry

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
VIDEOS = "SSv2/video_clips/clips_downsampled_5fps_downsized_224x224"
ANN = "ActionBench/ssv2/shuffled_object_and_action_antonyms"
TINY = {"num_train": 2, "num_val": 10, "num_test": 3, "frames": 8, "size": 32, "workers": 1}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trust") / "synth"
    generate(root, seed=0, **TINY)
    return root


def _val_ids(root: Path) -> list[int]:
    return [item["id"] for item in json.loads((root / ANN / "validation.json").read_text())]


def _damaged_copy(synth: Path, dst: Path) -> tuple[Path, list[str], str]:
    """A copy whose first three val clips are damaged as users meet it, and one more val clip missing."""
    shutil.copytree(synth, dst)
    ids = _val_ids(dst)
    videos = dst / VIDEOS
    damaged = [videos / f"{i}.mp4" for i in ids[:3]]  # consecutive: each is also the next one's replacement
    damaged[0].write_bytes(b"")  # zero bytes
    damaged[1].write_bytes(damaged[1].read_bytes()[:1500])  # 1,500 bytes
    data = damaged[2].read_bytes()
    damaged[2].write_bytes(data[: int(len(data) * 0.3)])  # 70 % cut off
    missing = videos / f"{ids[5]}.mp4"
    missing.unlink()
    return dst, [str(p) for p in damaged], str(missing)


def _evaluate(root: Path, out: Path, *extra: str) -> dict:
    return evaluate_main(["--cfg-path", str(CONFIGS / "eval/actionbench/synthaction/patcher.yaml"),
                          f"paths.data_root={root}", f"paths.output_root={out}", "run.batch_size_eval=4", *extra])


# ------------------------------------------------------------------ unreadable and missing videos


def test_each_unreadable_or_missing_video_is_counted_once(synth, tmp_path, caplog):
    root, damaged, missing = _damaged_copy(synth, tmp_path / "data")
    with caplog.at_level(logging.WARNING):
        metrics = _evaluate(root, tmp_path / "out", "run.num_workers=2", "run.persistent_workers=false")["val"]
    assert metrics["skipped_videos"] == 3 and metrics["missing_videos"] == 1
    assert metrics["num_samples"] == TINY["num_val"] - 4  # the damaged items are replaced, the missing one left out
    assert "eval val: 3 unreadable videos were replaced" in caplog.text
    found = json.loads(next((tmp_path / "out").rglob("skipped_videos.json")).read_text())
    unreadable = sorted(e["path"] for e in found if e["kind"] == "unreadable")
    assert unreadable == sorted(damaged)
    assert [e["path"] for e in found if e["kind"] == "missing"] == [missing]
    assert {e["split"] for e in found} == {"val"}
    assert "#1" not in caplog.text  # no per-worker counters that repeat


def test_a_second_pass_over_the_split_adds_no_entries(synth, tmp_path):
    from paxion.engine.runner import Runner
    from paxion.cli.train import build_runner

    root, damaged, _ = _damaged_copy(synth, tmp_path / "data")
    runner: Runner = build_runner(["--cfg-path", str(CONFIGS / "eval/actionbench/synthaction/patcher.yaml"),
                                   f"paths.data_root={root}", f"paths.output_root={tmp_path / 'out'}",
                                   "run.batch_size_eval=4"], "test", evaluate_only=True)
    try:
        first = runner.evaluate(["val"])["val"]
        second = runner.evaluate(["val"])["val"]
    finally:
        runner.close()
    assert first["skipped_videos"] == second["skipped_videos"] == 3
    entries = json.loads((runner.output_dir / "skipped_videos.json").read_text())
    assert len(entries) == 4  # 3 unreadable + 1 missing, once each across both passes


def test_no_video_at_all_fails_at_build_naming_folder_and_override(synth, tmp_path):
    root = tmp_path / "annotations_only"
    shutil.copytree(synth / "ActionBench", root / "ActionBench")
    cls = registry.get("dataset", "actionbench_ssv2")
    cfg = load_config(CONFIGS / "eval/actionbench/synthaction/patcher.yaml", [f"paths.data_root={root}"])
    builder = cls(cfg.datasets.actionbench_ssv2)
    with pytest.raises(VideosNotFoundError) as err:
        builder.build("val", num_frames=4, image_size=32, training=False)
    message = str(err.value)
    assert str(root / VIDEOS) in message and "paths.data_root=" in message
    assert "datasets.actionbench_ssv2.videos=" in message


def test_empty_data_root_fails_at_build_naming_folder_and_override(tmp_path):
    from paxion.data.base import DataNotFoundError

    cls = registry.get("dataset", "actionbench_ssv2")
    cfg = load_config(CONFIGS / "eval/actionbench/synthaction/patcher.yaml", [f"paths.data_root={tmp_path}"])
    with pytest.raises(DataNotFoundError) as err:
        cls(cfg.datasets.actionbench_ssv2).build("val", num_frames=4, image_size=32, training=False)
    assert str(tmp_path / ANN) in str(err.value) and "paths.data_root=" in str(err.value)
    assert "datasets.actionbench_ssv2.ann_root=" in str(err.value)


def test_no_video_at_all_is_one_line_at_the_command_line(synth, tmp_path, capsys):
    from paxion.cli.train import run_cli

    root = tmp_path / "annotations_only"
    shutil.copytree(synth / "ActionBench", root / "ActionBench")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(evaluate_main, ["--cfg-path", str(CONFIGS / "eval/actionbench/synthaction/patcher.yaml"),
                                f"paths.data_root={root}", f"paths.output_root={tmp_path / 'out'}"])
    assert exit_info.value.code == 1
    assert "produced no evaluation outputs" not in capsys.readouterr().err


# ------------------------------------------------------------------ non-finite scores


def test_nan_scores_are_wrong_not_index_zero():
    scores = torch.tensor([[float("nan"), float("nan")], [0.9, 0.1], [float("inf"), 0.0], [0.2, 0.8]])
    pred = predict(scores)
    assert pred.tolist() == [NO_PREDICTION, 0, NO_PREDICTION, 1]
    target = torch.zeros(4, dtype=torch.long)
    assert accuracy(pred, target) == 0.25
    assert macro_f1(pred, target) == pytest.approx((2 / 5 + 0.0) / 2)  # class 0: tp 1, fn 3; class 1: fp 1


def test_nan_scores_rank_last_in_retrieval():
    nan = float("nan")
    scores = torch.tensor([[nan, 0.1, 0.2], [0.9, nan, 0.1], [0.1, nan, 0.9]])
    is_gt = torch.eye(3, dtype=torch.bool)
    assert first_hit_ranks(scores, is_gt).tolist() == [2, 2, 1]  # NaN GT: worst; NaN rival: beats the GT


def _actionbench_task(*overrides: str):
    cfg = load_config(CONFIGS / "eval/actionbench/synthaction/patcher.yaml", list(overrides))
    return registry.get("task", "actionbench")(cfg)


def test_actionbench_counts_nonfinite_scores_as_wrong(tmp_path, caplog):
    task = _actionbench_task()
    nan = float("nan")
    good = torch.tensor([[0.9, 0.1]] * 3 + [[nan, nan]])
    outputs = {"idx": torch.arange(4), "action_antonym_scores": good, "video_reversal_scores": good.clone(),
               "object_shuffle_scores": torch.tensor([[0.9, 0.1]] * 4)}
    with caplog.at_level(logging.WARNING):
        metrics = task.compute_metrics(outputs, "val", tmp_path)
    assert metrics["action_antonym_accuracy"] == metrics["video_reversal_accuracy"] == 0.75
    assert metrics["object_shuffle_accuracy"] == 1.0
    assert metrics["nonfinite_scores"] == 1
    assert "non-finite" in caplog.text
    diverged = {k: torch.full_like(v, nan) if k != "idx" else v for k, v in outputs.items()}
    metrics = task.compute_metrics(diverged, "val", tmp_path)
    assert metrics["action_antonym_accuracy"] == metrics["video_reversal_accuracy"] == 0.0
    assert metrics["object_shuffle_accuracy"] == 0.0 and metrics["nonfinite_scores"] == 4


def test_mcqa_counts_nonfinite_scores_as_wrong(tmp_path):
    task = registry.get("task", "multi_choice_qa")(load_config(CONFIGS / "eval/downstream/nextqa/backbone.yaml"))
    nan = float("nan")
    logits = torch.tensor([[nan, nan, nan], [0.1, 2.0, 0.3], [3.0, 0.0, 0.0]])
    outputs = {"idx": torch.arange(3), "scores": logits.softmax(-1), "pred": predict(logits),
               "answer": torch.tensor([0, 1, 2]), "question_type": ["CW"] * 3}
    metrics = task.compute_metrics(outputs, "val", tmp_path)
    assert metrics["accuracy"] == pytest.approx(1 / 3) and metrics["nonfinite_scores"] == 1


# ------------------------------------------------------------------ probes a split cannot run


def test_actionbench_test_split_skips_object_shuffle_and_says_so(synth, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        metrics = _evaluate(synth, tmp_path / "out", "run.test_splits=[test]")["test"]
    assert metrics["skipped_probes"] == ["object_shuffle"]
    assert "object_shuffle_accuracy" not in metrics and "action_antonym_accuracy" in metrics
    assert metrics["num_samples"] == TINY["num_test"]
    assert "probe 'object_shuffle' skipped" in caplog.text and "object_shuffled_text" in caplog.text


# ------------------------------------------------------------------ input unlike the model's


def test_clips_unlike_the_model_input_are_reported_once_per_split(synth, tmp_path, caplog):
    other = tmp_path / "big"
    generate(other, seed=0, **dict(TINY, frames=16, size=64))
    cls = registry.get("dataset", "actionbench_ssv2")

    def build(root: Path, frames: int, size: int):
        builder = cls(load_config(CONFIGS / "eval/actionbench/synthaction/patcher.yaml",
                                  [f"paths.data_root={root}"]).datasets.actionbench_ssv2)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="paxion.data.base"):
            builder.build("val", num_frames=frames, image_size=size, training=False)
        return [r.getMessage() for r in caplog.records]

    found = build(other, 8, 32)
    assert len(found) == 1 and "generated with 16 frames of 64x64" in found[0] and "8 frames of 32x32" in found[0]
    assert build(synth, 8, 32) == []  # the shape the model takes: nothing to say
    found = build(synth, 16, 64)
    assert any("frames are repeated" in m for m in found) and any("upscaled" in m for m in found)
    hard = tmp_path / "hard"  # variable-length clips: only their size is a generation setting
    generate(hard, seed=0, preset="hard", num_train=2, num_val=2, num_test=0, frames=12, min_frames=10, size=32)
    assert not any("generated" in m for m in build(hard, 8, 32))
    assert any("generated at 32x32" in m and "takes 64x64" in m for m in build(hard, 8, 64))


def test_generator_defaults_are_the_embedded_default_data():
    defaults = SynthConfig()
    assert (defaults.frames, defaults.size) == (quickstart.DATA["frames"], quickstart.DATA["size"])


# ------------------------------------------------------------------ user data is never overwritten


def _user_annotations(root: Path) -> Path:
    path = root / ANN / "train.json"
    path.parent.mkdir(parents=True)
    path.write_text('[{"id": 74225, "label": "real annotation"}]')
    return path


def test_generator_refuses_to_overwrite_files_it_did_not_write(tmp_path, capsys):
    user_file = _user_annotations(tmp_path / "real")
    before = user_file.read_text()
    with pytest.raises(OverwriteError, match="train.json"):
        generate(tmp_path / "real", seed=0, **TINY)
    with pytest.raises(SystemExit) as exit_info:
        synth_main(["--out", str(tmp_path / "real"), "--num-train", "2", "--num-val", "2", "--num-test", "0"])
    assert "train.json" in str(exit_info.value.code)
    assert user_file.read_text() == before
    assert not (tmp_path / "real" / MARKER).exists() and not (tmp_path / "real" / VIDEOS).exists()


def test_generator_rewrites_a_folder_it_made(tmp_path):
    generate(tmp_path / "mine", seed=0, **TINY)
    generate(tmp_path / "mine", seed=1, **TINY)  # its own folder: allowed
    assert json.loads((tmp_path / "mine" / MARKER).read_text())["config"]["seed"] == 1


def test_quickstart_data_only_refuses_user_data(tmp_path, caplog):
    user_file = _user_annotations(tmp_path / "real")
    before = user_file.read_text()
    with pytest.raises(SystemExit) as exit_info:
        quickstart.cli(["--data-only", f"paths.data_root={tmp_path / 'real'}"])
    assert exit_info.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("error: ") and "train.json" in errors[0]
    assert user_file.read_text() == before


def test_quickstart_finishes_an_interrupted_generation(tmp_path):
    spec = dict(TINY, seed=0)
    spec.pop("workers")
    generate(tmp_path / "data", **spec, workers=1)
    marker = tmp_path / "data" / MARKER
    meta = json.loads(marker.read_text())
    marker.write_text(json.dumps(dict(meta, complete=False)))  # as a crash leaves it
    quickstart.ensure_data(tmp_path / "data", spec)
    assert json.loads(marker.read_text())["complete"] is True


def test_the_overwrite_check_knows_every_file_the_generator_writes(synth):
    from paxion.data.synthetic.annotations import annotation_files

    written = {p for p in synth.rglob("*") if p.is_file() and p.suffix != ".mp4"}
    assert written == {*annotation_files(synth), synth / MARKER}
