"""The public Python API: load_model / list_models / preprocess / tokenizer / score_captions / score_reversal,
and the worked example in docs/python_api.md, whose code blocks run here as written."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import paxion
from paxion.api import VideoPreprocess, asset
from paxion.config import load_config
from paxion.data.synthetic import generate
from paxion.data.video import open_video
from paxion.cli.demo import demo_texts
from paxion.systems.paxion.fuser import FuserConfig
from paxion.systems.paxion.model import PaxionConfig
from paxion.registry import registry

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "python_api.md"
CLIP = asset("demo_clip.mp4")
PATCHER_CONFIG = "eval/actionbench/synthaction/embedded_patcher"


@pytest.fixture(scope="module")
def embedded():
    return paxion.load_model("embedded_default")


def test_list_models_names_load_model_accepts():
    zoo = paxion.list_models()
    names = list(zoo)
    assert names[0] == "embedded_default" and all(isinstance(zoo[n], str) and zoo[n] for n in names)
    assert "train/actionbench/ssv2/kp_perceiver_vtc_dvdm" in names and PATCHER_CONFIG in names
    assert not any(Path(n).name.startswith("_") for n in names), "config fragments are not models"
    configs = [n for n in names if "/" in n and not n.startswith("backbone/")]
    for name in configs:
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert cfg.model is not None and (("model", cfg.model.arch) in registry), name


def test_load_model_returns_model_preprocess_tokenizer(embedded):
    model, preprocess, tokenizer = embedded
    assert embedded.model is model and not model.training and model.device == torch.device("cpu")
    assert (preprocess.num_frames, preprocess.image_size) == (8, 32)
    video = preprocess(CLIP)
    assert video.dtype == torch.uint8 and tuple(video.shape) == (1, 8, 3, 32, 32)
    captions = ["Green square falling", "Green square rising"]
    single, many = tokenizer(captions[0]), tokenizer(captions)
    assert torch.equal(single["input_ids"][0], many["input_ids"][0])
    assert torch.equal(many["input_ids"], model.backbone.tokenize(captions)["input_ids"])


def test_preprocess_matches_the_evaluation_dataset(tmp_path, embedded):
    """A file through preprocess == the same file as the eval dataset of the model's config delivers it."""
    generate(tmp_path, workers=1, seed=3, num_train=2, num_val=3, num_test=0, frames=8, size=32)
    _, preprocess, _ = paxion.load_model(PATCHER_CONFIG, checkpoint=asset("kp_synth.safetensors"),
                                         overrides=[f"paths.data_root={tmp_path}"])
    cfg = load_config(REPO / "configs" / f"{PATCHER_CONFIG}.yaml", [f"paths.data_root={tmp_path}"])
    task = registry.get("task", cfg.task.name)(cfg)
    dataset = task.build_datasets(embedded.model, ["val"])["val"]
    for index in range(len(dataset)):
        sample = dataset[index]
        assert torch.equal(preprocess(dataset.records[index]["video_path"])[0], sample["video"]), index


def test_preprocess_frames_equal_the_file(embedded):
    """Raw decoded frames (numpy channels-last or torch channels-first) give what the file gives."""
    reader = open_video(CLIP)
    frames = reader.get_frames(torch.arange(reader.num_frames))  # (N, C, H, W) native size
    native = VideoPreprocess(8, 32, resize_on_decode=False)
    from_file = native(CLIP)
    assert torch.equal(native(frames), from_file)
    assert torch.equal(native(frames.permute(0, 2, 3, 1).numpy()), from_file)
    stretched = VideoPreprocess(8, 24, resize_on_decode=True)  # the clip is 32 px: a real resize
    assert torch.equal(stretched(frames), stretched(CLIP))


@pytest.mark.parametrize("bad, error", [
    (np.zeros((8, 32, 32, 3), dtype=np.float32), TypeError),
    (torch.zeros(8, 32, 32, dtype=torch.uint8), TypeError),
    (torch.zeros(8, 4, 32, 32, dtype=torch.uint8), ValueError),
])
def test_preprocess_rejects_what_it_cannot_read(embedded, bad, error):
    with pytest.raises(error, match="frames"):
        embedded.preprocess(bad)


def test_score_captions_is_a_distribution_that_follows_the_captions(embedded):
    model, preprocess, _ = embedded
    texts = demo_texts()
    captions = [texts["caption"], texts["action_antonym"], texts["object_shuffled"]]
    scores = paxion.score_captions(model, preprocess(CLIP), captions)
    assert scores.texts == captions and scores.fused is None
    for probs in (scores.backbone, scores.patcher):
        assert len(probs) == 3 and abs(sum(probs) - 1) < 1e-5 and min(probs) > 0
    assert scores.patcher[0] > scores.patcher[1], "the shipped patcher knows the shipped clip's action"
    swapped = paxion.score_captions(model, CLIP, captions[::-1])  # a path works too
    assert swapped.patcher == pytest.approx(scores.patcher[::-1], abs=1e-6)
    assert swapped.backbone == pytest.approx(scores.backbone[::-1], abs=1e-6)


def test_score_reversal_prefers_the_real_clip_after_patching(embedded):
    model, preprocess, _ = embedded
    video = preprocess(CLIP)
    scores = paxion.score_reversal(model, video, demo_texts()["caption"])
    assert scores.texts == ["clip", "reversed clip"]
    assert sum(scores.patcher) == pytest.approx(1, abs=1e-5) and scores.patcher[0] > 0.5
    flipped = paxion.score_reversal(model, video.flip(1), demo_texts()["caption"])
    assert flipped.patcher == pytest.approx(scores.patcher[::-1], abs=1e-4)


def test_scoring_rejects_batches_and_single_strings(embedded):
    model, preprocess, _ = embedded
    with pytest.raises(ValueError, match="one clip"):
        paxion.score_captions(model, preprocess(CLIP).repeat(2, 1, 1, 1, 1), ["a", "b"])
    with pytest.raises(ValueError, match="at least 2 captions"):
        paxion.score_captions(model, CLIP, "Green square falling")


def test_checkpoint_replaces_the_shipped_patcher(tmp_path, embedded):
    state = load_file(str(asset("kp_synth.safetensors")))
    state["temp"] = state["temp"] * 4  # a different patcher: same features, flatter probabilities
    path = tmp_path / "kp.safetensors"
    save_file(state, str(path))
    other = paxion.load_model("embedded_default", checkpoint=path)
    before = paxion.score_captions(embedded.model, CLIP, ["Green square falling", "Green square rising"])
    after = paxion.score_captions(other.model, CLIP, ["Green square falling", "Green square rising"])
    assert after.backbone == pytest.approx(before.backbone, abs=1e-6)
    assert 0.5 < after.patcher[0] < before.patcher[0]


def test_config_name_and_preset_give_the_same_model(embedded):
    loaded = paxion.load_model(PATCHER_CONFIG, checkpoint=asset("kp_synth.safetensors"))
    for key, value in embedded.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key


def test_config_dataclass_builds_a_fuser_model_scored_by_three_modules():
    cfg = PaxionConfig(backbone="internvideo_tiny", patcher=paxion.api.EMBEDDED_PATCHER,
                       fuser=FuserConfig(name="xattn"), objectives=["vtc"])
    model, preprocess, _ = paxion.load_model(cfg, checkpoint=None)
    assert cfg.pretrained is None and model.cfg is not cfg
    video = torch.randint(0, 256, (12, 40, 48, 3), dtype=torch.uint8).numpy()  # any size and count
    scores = paxion.score_captions(model, preprocess(video), ["a box falling", "a box rising"])
    assert scores.fused is not None and sum(scores.fused) == pytest.approx(1, abs=1e-5)


def test_load_model_errors_name_the_problem():
    with pytest.raises(ValueError, match="list_models"):
        paxion.load_model("no_such_model")
    with pytest.raises(ValueError, match="no overrides"):
        paxion.load_model("embedded_default", overrides=["run.seed=1"])
    with pytest.raises(TypeError, match="not a paxion model"):
        paxion.score_captions(torch.nn.Linear(2, 2), CLIP, ["a", "b"])


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_python_api_doc_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = doc_blocks()
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)  # the example writes nothing into the checkout
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name} block {i + 1}", "exec"), namespace)
    assert "embedded_default" in capsys.readouterr().out
