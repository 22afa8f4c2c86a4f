"""SynthAction: generation, decoding through the real ActionBench builder, and reversal = antonym."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import paxion  # noqa: F401  (registers the builders)
from paxion.data.synthetic import ACTION_PAIRS, ACTIONS, SynthConfig, antonym_of, generate, render_spec, template_of
from paxion.data.video import open_video
from paxion.registry import registry

SMALL = {"num_train": 20, "num_val": 20, "num_test": 4, "frames": 8, "size": 32, "workers": 1}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    generate(out, seed=3, **SMALL)
    return out


def _builder(name: str, data_root) -> object:
    cls = registry.get("dataset", name)
    node = OmegaConf.merge({"paths": {"data_root": str(data_root)}, "ds": OmegaConf.structured(cls.Config)})
    return cls(OmegaConf.to_object(node.ds))  # the default config, only data_root set


def test_action_table_has_word_level_antonyms():
    assert len(ACTION_PAIRS) >= 8
    for action in ACTIONS:
        assert antonym_of(antonym_of(action)) == action
        a, b = template_of(action), template_of(antonym_of(action))
        assert "[something]" in a and sorted(a.split()) != sorted(b.split())  # differs by words, not order


def test_generates_every_file_the_real_configs_expect(synth):
    ann = synth / "ActionBench/ssv2/shuffled_object_and_action_antonyms"
    for name in ("train.json", "validation.json", "train_antonym.json", "labels.json", "test-answers.csv",
                 "state_change_heavy_instance_filtering_train.json", "state_change_heavy_instance_filtering_val.json"):
        assert (ann / name).is_file(), name
    train = json.loads((ann / "train.json").read_text())
    assert len(train) == 20
    item = train[0]
    assert item["label_action_antonym_clip_text"] != item["label"]
    assert item["object_caption"].startswith("a ") and item["label_object_shuffled_clip_text"] != item["label"].lower()
    clips = list((synth / "SSv2/video_clips/clips_downsampled_5fps_downsized_224x224").glob("*.mp4"))
    assert len(clips) == 44


def test_same_seed_same_data_whatever_the_worker_count(synth, tmp_path):
    generate(tmp_path / "again", seed=3, **dict(SMALL, workers=2))
    ann = "ActionBench/ssv2/shuffled_object_and_action_antonyms/train.json"
    assert (tmp_path / "again" / ann).read_text() == (synth / ann).read_text()
    for clip_id in (1, 17, 44):
        name = f"SSv2/video_clips/clips_downsampled_5fps_downsized_224x224/{clip_id}.mp4"
        assert (tmp_path / "again" / name).read_bytes() == (synth / name).read_bytes()
    generate(tmp_path / "other", seed=4, **SMALL)
    assert (tmp_path / "other" / ann).read_text() != (synth / ann).read_text()


def test_real_builders_read_it_unchanged(synth):
    val = _builder("actionbench_ssv2", synth).build("val", num_frames=4, image_size=32, training=False)
    s = val[0]
    assert s["video"].shape == (4, 3, 32, 32) and s["action_antonym_text"] and s["object_shuffled_text"]
    test = _builder("actionbench_ssv2", synth).build("test", num_frames=4, image_size=32, training=False)
    assert len(test) == 4 and "[" not in test[0]["text"]
    ret = _builder("ssv2_template_retrieval", synth).build("val", num_frames=4, image_size=32, training=False)
    assert len(ret) == 20 and ret.texts[ret[0]["text_idx"]] == ret[0]["text"]


def test_reversed_render_is_the_antonym_render():
    cfg = SynthConfig(seed=0, frames=8, size=32, noise_std=0.0)
    for action in ("move_left", "rotate_cw", "appear", "open", "cover", "move_toward"):
        spec = {"id": 1, "action": action, "objects": [["square", "red"], ["circle", "blue"]][: ACTIONS[action][0].num_objects],
                "params": {"x": 0.5, "y": 0.45, "r": 0.15, "dx": 0.0}, "distractor": None}
        forward, _ = render_spec(spec, cfg)
        backward, _ = render_spec(dict(spec, action=antonym_of(action)), cfg)
        assert np.array_equal(forward[::-1], backward), action
        assert not np.array_equal(forward, backward), action


def _centroids(path: str, colour: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    reader = open_video(path)
    video = reader.get_frames(torch.arange(reader.num_frames)).float()  # (T, C, H, W)
    dist = (video - torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1)).abs().amax(1)  # (T, H, W)
    mask = (dist < 60).float()
    ys, xs = torch.meshgrid(torch.arange(mask.shape[1]).float(), torch.arange(mask.shape[2]).float(), indexing="ij")
    area = mask.sum((1, 2)).clamp(min=1)
    return (mask * xs).sum((1, 2)) / area, (mask * ys).sum((1, 2)) / area, mask.sum((1, 2))


@pytest.mark.parametrize("action,measure,antonym_sign", [
    ("move_left", "x", 1), ("move_up", "y", 1), ("approach", "area", -1), ("fall", "y", -1),
])
def test_reversed_decoded_clip_moves_like_its_antonym(tmp_path, action, measure, antonym_sign):
    from paxion.data.synthetic.scenes import COLORS

    generate(tmp_path, seed=1, **dict(SMALL, num_train=40, num_val=0, num_test=0, frames=12, size=48,
                                      distractor_prob=0.0, textured_background=False))
    items = json.loads((tmp_path / "ActionBench/ssv2/shuffled_object_and_action_antonyms/train.json").read_text())
    video_dir = tmp_path / "SSv2/video_clips/clips_downsampled_5fps_downsized_224x224"
    trend = {}
    for it in items:
        if it["action"] in (action, antonym_of(action)) and it["action"] not in trend:
            x, y, area = _centroids(str(video_dir / f"{it['id']}.mp4"), COLORS[it["objects"][0][1]])
            track = {"x": x, "y": y, "area": area}[measure]
            trend[it["action"]] = track
    fwd, anti = trend[action], trend[antonym_of(action)]
    rev = fwd.flip(0)  # time-reversed clip
    slope = lambda v: float(np.polyfit(np.arange(len(v)), v.numpy(), 1)[0])  # noqa: E731
    assert np.sign(slope(rev)) == np.sign(slope(anti)) == antonym_sign
    assert np.sign(slope(fwd)) == -antonym_sign
    if measure != "area":  # same trajectory shape: reversed clip and antonym clip correlate strongly
        assert np.corrcoef(rev.numpy(), anti.numpy())[0, 1] > 0.95


def test_val_only_generation_writes_the_same_val_clips_and_no_train_clips(synth, tmp_path):
    """What ``quickstart --eval-only`` asks for: the val split as a full generation writes it, nothing else."""
    from paxion.cli import quickstart

    spec = {"seed": 3, **SMALL}
    root = quickstart.ensure_data(tmp_path / "val_only", spec, splits=("val",))
    videos = root / "SSv2/video_clips/clips_downsampled_5fps_downsized_224x224"
    val_ids = sorted(int(p.stem) for p in videos.glob("*.mp4"))
    assert val_ids == list(range(21, 41))  # ids 1-20 are train, 41-44 test: neither written
    ann = root / "ActionBench/ssv2/shuffled_object_and_action_antonyms"
    assert (ann / "validation.json").read_text() == (synth / ann.relative_to(root) / "validation.json").read_text()
    assert json.loads((ann / "train.json").read_text()) == []
    for clip_id in (21, 40):
        assert (videos / f"{clip_id}.mp4").read_bytes() == (synth / videos.relative_to(root) / f"{clip_id}.mp4").read_bytes()
    assert quickstart.ensure_data(root, spec, splits=("val",)) == root  # found: nothing rewritten
    quickstart.ensure_data(root, spec)  # a training run needs every split: the rest is added
    assert len(list(videos.glob("*.mp4"))) == 44
    assert (ann / "train.json").read_text() == (synth / ann.relative_to(root) / "train.json").read_text()


def test_quickstart_eval_only_asks_for_the_val_split_only(tmp_path, monkeypatch):
    from paxion.cli import quickstart

    asked = {}
    monkeypatch.setattr(quickstart, "ensure_data", lambda root, spec, splits=None: asked.setdefault("splits", splits))
    monkeypatch.setattr(quickstart, "run_config", lambda *args, **kwargs: {"num_samples": 1})
    quickstart.run(tmp_path / "out", [], eval_only=True, data_spec={"seed": 0}, preset="hard")
    assert asked["splits"] == ("val",)


def test_quickstart_unwritable_output_names_the_option(tmp_path):
    from paxion.cli import quickstart
    from paxion.config import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=rf"--output {blocker / 'run'}: cannot write there .*--output DIR"):
        quickstart.run(blocker / "run", [], eval_only=True, data_spec={"seed": 0})
