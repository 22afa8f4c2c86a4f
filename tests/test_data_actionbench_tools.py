"""Pure parts of the ActionBench annotation builders, on the small committed tables."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "ActionBench"
_spec = importlib.util.spec_from_file_location("actionbench_tools", ROOT / "actionbench_tools.py")
tools = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tools)


@pytest.fixture(scope="module")
def tables():
    return (tools.load_table("antonyms_ssv2.json"), tools.load_table("particles.json"),
            set(tools.load_table("ignored_verbs_ssv2.json")))


def test_mapping_tables_change_action_words_only(tables):
    assert tools.action_antonym("Opening something", *tables) == "Closing something"
    assert tools.action_antonym("Moving pen up", *tables) == "Moving pen down"  # 'Moving' is ignored
    assert tools.action_antonym("Spinning cube that quickly stops spinning", *tables) == \
        "Spinning cube that quickly starts spinning"
    assert tools.action_antonym("Approaching something with your camera", *tables) == \
        "Moving away from something with your camera"
    assert tools.action_antonym("Showing a photo of something", *tables) is None  # unchanged: dropped
    assert tools.action_antonym("Putting something onto something", *tables) == "Putting something off something"


def test_wordnet_lookup_with_fake_lexicon(tables):
    fake = {"throwing": "catching"}.get
    assert tools.action_antonym("Throwing something", *tables, wordnet=fake) == "Catching something"


def test_inflection_follows_the_surface_form():
    assert tools.inflect_like("close", "opening", "open") == "closing"
    assert tools.inflect_like("move away from", "approaching", "approach") == "moving away from"
    assert tools.inflect_like("push", "pulls", "pull") == "pushes"
    assert tools.inflect_like("close", "opened", "open") == "closed"


def test_object_shuffle_is_seeded_and_replaces_placeholders():
    taxonomy = tools.load_table("object_taxonomy_small.json")
    a = tools.shuffle_objects("Pushing Pen to the left", ["pen"], taxonomy, random.Random(42))
    b = tools.shuffle_objects("Pushing Pen to the left", ["pen"], taxonomy, random.Random(42))
    assert a == b and a.startswith("pushing ") and a.endswith(" to the left") and " pen " not in a


def test_saliency_rule_of_the_original():
    assert tools.saliency_keep([0.30] * 4, [0.20] * 4, 0.80)
    assert not tools.saliency_keep([0.30] * 4, [0.299] * 4, 0.80)  # text cannot tell start from end
    assert not tools.saliency_keep([0.30] * 4, [0.20] * 4, 0.97)  # start and end look alike


def test_build_script_writes_the_actionbench_layout(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    items = [{"id": "1", "label": "Opening book", "template": "Opening [something]", "placeholders": ["book"]},
             {"id": "2", "label": "Showing cup", "template": "Showing [something]", "placeholders": ["cup"]}]
    (raw / "train.json").write_text(json.dumps(items))
    (raw / "validation.json").write_text(json.dumps(items))
    (raw / "labels.json").write_text(json.dumps({"Opening something": "0", "Showing something": "1"}))
    (raw / "test-answers.csv").write_text("3;Closing something\n")
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(ROOT / "build_ssv2_annotations.py"), "--ssv2-labels", str(raw),
                    "--out", str(out)], check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    val = json.loads((out / "validation.json").read_text())
    assert [v["id"] for v in val] == ["1"]
    assert val[0]["label_action_antonym_clip_text"] == "Closing book"
    assert val[0]["label_object_shuffled_clip_text"].startswith("opening ")
    assert len(json.loads((out / "train_antonym.json").read_text())) == 1
    assert (out / "test-answers.csv").read_text().splitlines()[1] == "3;Closing something;Opening something"
