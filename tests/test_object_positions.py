"""SynthAction's object tracks (``object_positions``) and the position-word captions pre-training reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

import paxion  # noqa: F401  (registers the builders)
from paxion.data.synthetic import ACTIONS, antonym_of, generate
from paxion.data.synthetic.annotations import object_centres, position_words
from paxion.data.synthetic.generate import SynthConfig, make_specs, render_spec
from paxion.data.synthetic.hard import HardConfig, make_hard_specs, render_hard
from paxion.registry import registry

ANN = "ActionBench/ssv2/shuffled_object_and_action_antonyms"


def _centroids(coverage: np.ndarray) -> np.ndarray:
    """(T, H, W) coverage -> (T, 2) centre of mass in frame units (pixel centres at (i + 0.5) / size)."""
    size = coverage.shape[-1]
    g = (np.arange(size) + 0.5) / size
    mass = coverage.sum((1, 2))
    return np.stack([(coverage * g[None, None, :]).sum((1, 2)) / mass, (coverage * g[None, :, None]).sum((1, 2)) / mass], 1)


@pytest.mark.parametrize("action", ["move_left", "move_down", "fall", "rise"])
def test_hard_track_follows_the_drawn_object(action):
    cfg = HardConfig(seed=3, num_train=40, num_val=0, num_test=0, size=64, noise_std=0.0)
    spec = dict(next(s for s in make_hard_specs(cfg) if ACTIONS[s["action"]][0].num_objects == 1), action=action)
    _, coverage = render_hard(spec, cfg)
    track = object_centres(spec, cfg)  # (T, 1, 2)
    assert track.shape == (spec["frames"], 1, 2)
    inside = (track[:, 0] > 0.1).all(1) & (track[:, 0] < 0.9).all(1)  # a symmetric shape cut by the edge shifts
    np.testing.assert_allclose(track[inside, 0], _centroids(coverage)[inside], atol=2.5 / 64)
    moved = np.abs(track[-1, 0] - track[0, 0]).max()
    assert moved > 0.3  # the translations cross at least one third of the frame


def test_default_track_and_reversal_gives_the_antonym_track():
    cfg = SynthConfig(seed=1, num_train=40, num_val=0, num_test=0, noise_std=0.0)
    spec = next(s for s in make_specs(cfg) if s["action"] == "move_right")
    _, coverage = render_spec(spec, cfg)
    track = object_centres(spec, cfg)
    np.testing.assert_allclose(track[:, 0], _centroids(coverage), atol=1.5 / cfg.size)
    assert track[-1, 0, 0] > track[0, 0, 0] + 0.3
    back = object_centres(dict(spec, action=antonym_of(spec["action"])), cfg)
    np.testing.assert_allclose(back, track[::-1], atol=1e-6)


def test_position_words_grid():
    assert position_words(0.1, 0.1) == "top left"
    assert position_words(0.5, 0.5) == "middle centre"
    assert position_words(0.9, 0.4) == "middle right"
    assert position_words(-0.2, 1.3) == "bottom left"  # off the frame: its edge cell


@pytest.fixture(scope="module")
def hard_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("positions")
    generate(out, seed=4, preset="hard", num_train=20, num_val=6, num_test=0, frames=12, min_frames=6, size=32,
             workers=1)
    return out


def _objects_dataset(root, split, training, **cfg):
    cls = registry.get("dataset", "synthaction_objects")
    node = OmegaConf.merge({"paths": {"data_root": str(root)}},
                           {"ds": OmegaConf.merge(OmegaConf.structured(cls.Config), cfg)})
    return cls(OmegaConf.to_object(node.ds)).build(split, num_frames=8, image_size=32, training=training)


def test_annotations_carry_one_track_row_per_video_frame(hard_data):
    items = json.loads((hard_data / ANN / "train.json").read_text())
    specs = {s["id"]: s for s in json.loads((hard_data / "synthaction_specs.json").read_text())}
    for item in items:
        spec = specs[item["id"]]
        assert len(item["object_positions"]) == spec["frames"]
        assert all(len(frame) == len(item["objects"]) for frame in item["object_positions"])


def test_single_frame_training_caption_names_where_the_drawn_frame_shows_the_object(hard_data):
    train = _objects_dataset(hard_data, "train", True, frame_sampling="single", position_words=True)
    items = {str(it["id"]): it for it in json.loads((hard_data / ANN / "train.json").read_text())}
    seen = set()
    for index in range(len(train)):
        for seed in range(3):
            sample = train[(index, seed)]
            item = items[sample["video_id"]]
            assert sample["video"].shape[0] == 1
            captions = {" and ".join(f"a {c} {s} at {position_words(x, y)}" for (s, c), (x, y) in
                                     zip(item["objects"], frame)) for frame in item["object_positions"]}
            assert sample["text"] in captions
            seen.add(sample["text"])
    assert any(" at top " in t for t in seen) and any(" at bottom " in t for t in seen)
    plain = _objects_dataset(hard_data, "train", True, frame_sampling="single")
    assert plain[0]["text"] == items[plain[0]["video_id"]]["object_caption"]  # off by default


def test_evaluation_clip_gets_its_middle_frame_caption(hard_data):
    val = _objects_dataset(hard_data, "val", False, frame_sampling="single", position_words=True)
    again = _objects_dataset(hard_data, "val", False, frame_sampling="single", position_words=True)
    assert [val[i]["text"] for i in range(len(val))] == [again[i]["text"] for i in range(len(val))]
    assert all(" at " in val[i]["text"] for i in range(len(val)))


def test_old_annotations_without_tracks_are_refused_by_name(hard_data, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(hard_data, copy)
    path = copy / ANN / "train.json"
    items = json.loads(path.read_text())
    for item in items:
        del item["object_positions"]
    path.write_text(json.dumps(items))
    with pytest.raises(KeyError, match="object_positions"):
        _objects_dataset(copy, "train", True, frame_sampling="single", position_words=True)


def test_position_words_fraction_keeps_a_fixed_share_of_plain_captions(hard_data):
    mixed = _objects_dataset(hard_data, "train", True, frame_sampling="single", position_words=True,
                             position_words_fraction=0.5)
    again = _objects_dataset(hard_data, "train", True, frame_sampling="single", position_words=True,
                             position_words_fraction=0.5)
    placed = [" at " in mixed[(i, 0)]["text"] for i in range(len(mixed))]
    assert placed == [" at " in again[(i, 1)]["text"] for i in range(len(again))]  # fixed per clip, not per draw
    assert 0 < sum(placed) < len(placed)
    with pytest.raises(ValueError, match="position_words_fraction"):
        _objects_dataset(hard_data, "train", True, frame_sampling="single", position_words=True,
                         position_words_fraction=1.5)
