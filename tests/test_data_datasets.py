"""Every dataset builder on fixture files in the real annotation formats (the dataset-card examples)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import paxion  # noqa: F401  (registers the builders)
from paxion.data.annotations import AnnotationError
from paxion.data.collate import collate
from paxion.data.synthetic.generate import encode_mp4
from paxion.data.video import VideoDecodeError
from paxion.registry import registry

BUILD = {"num_frames": 4, "image_size": 32, "training": False}


@pytest.fixture(scope="module")
def base_video(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, size=(12, 4, 4, 3), dtype=np.uint8).repeat(10, 1).repeat(10, 2)
    path = tmp_path_factory.mktemp("base") / "base.mp4"
    encode_mp4(path, frames, fps=5)
    return path


def _videos(folder: Path, names: list[str], base: Path) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(base, folder / name)


def _dump(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def _builder(name: str, **cfg):
    cls = registry.get("dataset", name)
    return cls(cls.Config(**cfg))


SSV2_ITEM = {
    "label": "Spinning cube that quickly stops spinning",
    "template": "Spinning [something] that quickly stops spinning",
    "placeholders": ["cube"],
    "template_action_antonym_clip_text": "Spinning something that quickly starts spinning",
    "label_action_antonym_clip_text": "Spinning cube that quickly starts spinning",
    "id": 74225,
    "label_object_shuffled_clip_text": "spinning feeding lid that quickly stops spinning",
}


def _ssv2_fixture(root: Path, base: Path) -> dict:
    ann, vids = root / "ann", root / "videos"
    other = dict(SSV2_ITEM, id=5, label="pushing pen to the left", template="Pushing [something] to the left")
    _dump(ann / "validation.json", [SSV2_ITEM, other])
    _dump(ann / "train.json", [SSV2_ITEM, other])
    _dump(ann / "train_antonym.json", [SSV2_ITEM])  # id 5 has no antonym: filled from a random item
    _dump(ann / "labels.json", {"Spinning something that quickly stops spinning": "0"})
    _dump(ann / "state_change_heavy_instance_filtering_val.json",
          {"74225": {"clip_uid": 74225, "if_keep": False}, "5": {"clip_uid": 5, "if_keep": True}})
    _dump(ann / "test-answers.csv", "id;template;template_action_antonym_clip_text\n"
          "74225;Spinning something that quickly stops spinning;Spinning something that quickly starts spinning\n")
    _videos(vids, ["74225.mp4", "5.mp4"], base)
    return {"ann_root": str(ann), "videos": str(vids)}


def test_actionbench_ssv2_splits(tmp_path, base_video):
    cfg = _ssv2_fixture(tmp_path, base_video)
    val = _builder("actionbench_ssv2", **cfg).build("val", **BUILD)
    s = val[0]
    assert s["video"].shape == (4, 3, 32, 32) and s["video"].dtype == torch.uint8
    assert s["text"] == "Spinning cube that quickly stops spinning"
    assert s["action_antonym_text"] == "Spinning cube that quickly starts spinning"
    assert s["object_shuffled_text"] == "spinning feeding lid that quickly stops spinning"
    assert s["template"] == "Spinning something that quickly stops spinning"
    assert s["state_change_saliency_flag"] is False and val[1]["state_change_saliency_flag"] is True
    assert (s["idx"], s["video_id"], s["skipped_videos"]) == (0, "74225", [])
    train = _builder("actionbench_ssv2", **cfg).build("train", **BUILD)
    assert train[1]["action_antonym_text"] == "Spinning cube that quickly stops spinning"  # random item's label
    assert train[0]["state_change_saliency_flag"] is True  # no train saliency file
    test = _builder("actionbench_ssv2", **cfg).build("test", **BUILD)
    assert test[0]["text"] == test[0]["template"] == "Spinning something that quickly stops spinning"
    tpl = _builder("actionbench_ssv2", use_templates_as_labels=True, **cfg).build("val", **BUILD)
    assert tpl[0]["action_antonym_text"] == "Spinning something that quickly starts spinning"
    filtered = _builder("actionbench_ssv2", state_change_filtering=True, **cfg).build("val", **BUILD)
    assert [r["video_id"] for r in filtered.records] == ["5"]


EGO4D_ROW = (
    '{"video_uid": "002d2729-df71-438d-8396-5895b349e8fd", "video_dur": 3571.4333333333334, '
    '"narration_source": "narration_pass_1", "narration_ind": 229, "narration_time": 592.6903, '
    '"clip_start": 592.3519665973915, "clip_end": 593.0286286452686, '
    '"clip_text": "#C C picks up the knife from the chopping board with her right hand.", '
    '"action_antonym_clip_text": "#C C drops down the knife from the chopping board with her right hand.", '
    '"tag_verb": "[17, 93]", "tag_noun": "[321, 268, 573, 105]", "Unnamed: 10": NaN, '
    '"clip_uid": "116ec16b-0d76-4e71-b02c-72cb37ebd5c5", "narration_relative_time": 0.6902999999999793, '
    '"clip_relative_start": 0.351966597391538, "clip_relative_end": 1.0286286452685545, "clip_fps": 30.0}'
)


def test_actionbench_ego4d_segments_and_text_cleaning(tmp_path, base_video):
    ann, os_ann, vids = tmp_path / "ann", tmp_path / "os", tmp_path / "videos"
    _dump(ann / "test.jsonl", EGO4D_ROW + "\n")
    row = json.loads(EGO4D_ROW)
    row["object_shuffled_clip_text"] = "#C C picks up the banana from the chopping board with her right hand."
    _dump(os_ann / "test.jsonl", json.dumps(row) + "\n")
    key = "116ec16b-0d76-4e71-b02c-72cb37ebd5c5__0.351966597391538__1.0286286452685545"
    _dump(ann / "state_change_heavy_instance_filtering_test.json", {key: {"if_keep": True}})
    _videos(vids, ["116ec16b-0d76-4e71-b02c-72cb37ebd5c5.mp4"], base_video)
    cfg = {"ann_dir": str(ann), "object_shuffled_ann_dir": str(os_ann), "videos": str(vids)}
    ds = _builder("actionbench_ego4d", **cfg).build("test", **BUILD)
    s = ds[0]
    assert s["text"] == "c picks up the knife from the chopping board with her right hand"
    assert s["action_antonym_text"] == "c drops down the knife from the chopping board with her right hand"
    assert "object_shuffled_text" not in s and s["state_change_saliency_flag"] is True
    assert ds.records[0]["segment"] == pytest.approx((0.351966597391538, 1.0286286452685545))
    shuffled = _builder("actionbench_ego4d", use_object_shuffled_split=True, **cfg).build("test", **BUILD)
    assert shuffled[0]["object_shuffled_text"].startswith("c picks up the banana")


def test_ssv2_retrieval_label_and_template(tmp_path, base_video):
    ann, vids = tmp_path / "ann", tmp_path / "videos"
    _dump(ann / "ssv2_ret_label_val_small.json", [{"video": "7.webm", "caption": "Pushing pen to the left"},
                                                  {"video": ["8.webm"], "caption": "Dropping cup"}])
    _dump(ann / "ssv2_ret_template_val_small.json",
          [{"video": ["7.webm", "9.webm"], "caption": "Pushing [something] to the left"},
           {"video": ["404.webm"], "caption": "Dropping [something]"}])
    _videos(vids, ["7.mp4", "8.mp4", "9.mp4"], base_video)
    label = _builder("ssv2_label_retrieval", ann_root=str(ann), videos=str(vids)).build("val", **BUILD)
    assert label.texts == ["Pushing pen to the left", "Dropping cup"] and label.text_indices == [0, 1]
    tpl = _builder("ssv2_template_retrieval", ann_root=str(ann), videos=str(vids)).build("val", **BUILD)
    assert tpl.texts == ["Pushing something to the left", "Dropping something"]
    assert tpl.text_indices == [0, 0] and tpl.missing_videos[0].endswith("404.mp4")
    assert tpl[1]["text_idx"] == 0 and tpl[1]["video_id"] == "9"


def test_temporal_ssv2_and_kinetics(tmp_path, base_video):
    ann = tmp_path / "ann"
    _dump(ann / "val-v1.0-2.4k.csv", ",index,video_id,text,dataset\n"
          "0,0,101,Moving [something] up,SSv2\n1,1,102,Moving [something] down,SSv2\n"
          "2,2,103,Moving [something] up,SSv2\n3,3,abseiling/ab_cd_efg_000001_000003,abseiling,Kinetics\n")
    _videos(tmp_path / "ssv2", ["101.mp4", "102.mp4", "103.mp4"], base_video)
    _videos(tmp_path / "k400", ["ab_cd_efg.mp4"], base_video)
    ssv2 = _builder("temporal_ssv2", ann_root=str(ann), videos=str(tmp_path / "ssv2")).build("val", **BUILD)
    assert ssv2.texts == ["Moving something up", "Moving something down"] and ssv2.text_indices == [0, 1, 0]
    kin = _builder("temporal_kinetics", ann_root=str(ann), videos=str(tmp_path / "k400")).build("val", **BUILD)
    assert kin.records[0]["video_id"] == "ab_cd_efg" and kin.records[0]["segment"] == (1.0, 3.0)
    assert kin[0]["text"] == "abseiling" and kin[0]["video"].shape[0] == 4


def test_moments_in_time(tmp_path, base_video):
    ann, vids = tmp_path / "ann", tmp_path / "videos"
    _dump(ann / "moments_categories.txt", "clapping,0\nhitting+or+colliding,1\n")
    _dump(ann / "validationSet_2k.csv", "hitting+or+colliding/x1.mp4,hitting+or+colliding,1,3\n"
          "clapping/x2.mp4,clapping,2,3\n")
    _videos(vids / "validation", ["hitting+or+colliding/x1.mp4", "clapping/x2.mp4"], base_video)
    ds = _builder("moments_in_time", ann_root=str(ann), videos=str(vids)).build("val", **BUILD)
    assert ds.texts == ["clapping", "hitting or colliding"]
    assert ds[0]["text"] == "hitting or colliding" and ds[0]["answer"] == ds[0]["text_idx"] == 1
    _dump(ann / "validationSet_2k.csv", "clapping/x2.mp4,clapping\n")
    with pytest.raises(AnnotationError, match=r"validationSet_2k.csv:1"):
        _builder("moments_in_time", ann_root=str(ann), videos=str(vids)).build("val", **BUILD)


def test_nextqa_candidates_and_antonyms(tmp_path, base_video):
    ann, vids = tmp_path / "ann", tmp_path / "videos"
    header = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4,action_antonym_choices\n"
    row = ('4010069381,369,640,480,how do the two man play the instrument,1,6,CH,roll the handle,tap their feet,'
           'strum the string,hit with sticks,pat with hand,"[\'unroll the handle\', \'untap their feet\']"\n')
    _dump(ann / "val.csv", header + row)
    _dump(ann / "map_vid_vidorID.json", {"4010069381": "1106/4010069381"})
    _videos(vids, ["1106/4010069381.mp4"], base_video)
    s = _builder("nextqa", ann_root=str(ann), videos=str(vids)).build("val", **BUILD)[0]
    assert s["candidates"][0] == "how do the two man play the instrument? roll the handle"
    assert len(s["candidates"]) == 5 and s["answer"] == 1 and s["text"] == s["candidates"][1]
    assert s["action_antonym_candidates"] == ["how do the two man play the instrument? unroll the handle",
                                              "how do the two man play the instrument? untap their feet"]
    assert s["question_type"] == "CH"
    _dump(ann / "val.csv", header + row.replace(",1,6,CH", ",x,6,CH"))
    with pytest.raises(AnnotationError, match=r"val.csv:2: field 'answer'"):
        _builder("nextqa", ann_root=str(ann), videos=str(vids)).build("val", **BUILD)


def test_malformed_json_row_names_file_and_line(tmp_path):
    _dump(tmp_path / "test.jsonl", EGO4D_ROW + "\n{broken\n")
    with pytest.raises(AnnotationError, match=r"test.jsonl:2"):
        _builder("actionbench_ego4d", ann_dir=str(tmp_path), videos=str(tmp_path)).build("test", **BUILD)


def test_corrupt_video_lenient_and_strict(tmp_path, base_video):
    cfg = _ssv2_fixture(tmp_path, base_video)
    (Path(cfg["videos"]) / "74225.mp4").write_bytes(b"\x00" * 300)  # truncated garbage
    ds = _builder("actionbench_ssv2", **cfg).build("val", **BUILD)
    s = ds[0]
    assert s["idx"] == 1 and s["video_id"] == "5"  # the next item, as the original
    assert len(s["skipped_videos"]) == 1 and s["skipped_videos"][0]["path"].endswith("74225.mp4")
    assert s["skipped_videos"][0]["replaced_by"] == 1 and s["skipped_videos"][0]["split"] == "val"
    strict = _builder("actionbench_ssv2", strict=True, **cfg).build("val", **BUILD)
    with pytest.raises(VideoDecodeError, match="74225.mp4"):
        strict[0]
    (Path(cfg["videos"]) / "5.mp4").unlink()
    with pytest.raises(VideoDecodeError, match="5.mp4"):  # missing at load time, strict
        _builder("actionbench_ssv2", strict=True, **cfg).build("val", **BUILD)
    assert len(_builder("actionbench_ssv2", **cfg).build("val", **BUILD)) == 1


def test_seeded_items_and_collate(tmp_path, base_video):
    cfg = _ssv2_fixture(tmp_path, base_video)
    ds = _builder("actionbench_ssv2", frame_sampling="random", **cfg).build("val", **dict(BUILD, training=True))
    assert torch.equal(ds[(0, 11)]["video"], ds[(0, 11)]["video"])
    assert any(not torch.equal(ds[(0, 11)]["video"], ds[(0, s)]["video"]) for s in range(12, 20))
    batch = collate([ds[(0, 1)], ds[(1, 2)]])
    assert batch["video_input"].shape == (2, 4, 3, 32, 32) and batch["video_input"].dtype == torch.uint8
    assert batch["idx"].tolist() == [0, 1] and batch["state_change_saliency_flag"].dtype == torch.bool
    assert batch["text_input"][1] == "Pushing pen to the left" and batch["skipped_videos"] == []
    assert set(batch) >= {"action_antonym_text_input", "object_shuffled_text_input", "template", "video_id"}
    with pytest.raises(ValueError, match="keys"):
        collate([ds[0], {"video": ds[0]["video"], "idx": 3}])
