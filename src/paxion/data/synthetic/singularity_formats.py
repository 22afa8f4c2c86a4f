"""SynthAction in Singularity's downstream formats, built from action/antonym *pairs*.

Every clip comes with its twin: the same objects and placement performing the antonym action,
which is the clip played backwards. So a caption and its twin's caption differ only in the action
words and a clip's frames, as a set, match its twin's: only the order of the frames, the motion,
tells them apart. Layout (``paths.data_root=<out>`` works with the Singularity dataset builders):

    <out>/videos_images/synthaction/<id>.mp4
    <out>/anno_downstream/synth_ret_{train,test}.json      {"video", "caption": [2 captions]}
    <out>/anno_downstream/synth_qa_{train,test}.json       {"video", "question", "answer", "answer_type", "question_id"}
    <out>/anno_downstream/synth_qa_answer_list.json        every answer word
    <out>/anno_downstream/synth_mc_test.json               {"video", "caption": [5], "answer"}

QA questions need the motion: "which way does the red star move?" -> "left" (its twin: "right").
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from paxion.data.synthetic.annotations import fill
from paxion.data.synthetic.generate import SynthConfig, clip_spec, encode_mp4, render_spec
from paxion.data.synthetic.scenes import ACTION_PAIRS, object_phrase, template_of

VIDEOS = Path("videos_images/synthaction")
ANN = Path("anno_downstream")
# action -> (question kind, answer word)
ANSWERS = {
    "move_left": ("direction", "left"), "move_right": ("direction", "right"),
    "move_up": ("direction", "up"), "move_down": ("direction", "down"),
    "fall": ("direction", "down"), "rise": ("direction", "up"),
    "rotate_cw": ("rotation", "clockwise"), "rotate_ccw": ("rotation", "counterclockwise"),
    "approach": ("change", "closer"), "recede": ("change", "farther"),
    "appear": ("change", "appears"), "disappear": ("change", "disappears"),
    "open": ("change", "opens"), "close": ("change", "closes"),
    "stretch": ("change", "stretches"), "squeeze": ("change", "shrinks"),
    "cover": ("change", "covered"), "uncover": ("change", "uncovered"),
    "move_toward": ("change", "together"), "move_away": ("change", "apart"),
}
QUESTIONS = {
    "direction": "which way does the {} move?",
    "rotation": "which way does the {} turn?",
    "change": "what happens to the {}?",
}

logger = logging.getLogger(__name__)


def pair_specs(num_pairs: int, split: str, first_id: int, rng: np.random.Generator,
               cfg: SynthConfig) -> list[dict[str, Any]]:
    """``num_pairs`` clips and their antonym twins (same objects and placement), balanced over pairs."""
    specs = []
    for i in range(num_pairs):
        pair = ACTION_PAIRS[i % len(ACTION_PAIRS)]
        spec = clip_spec(first_id + 2 * i, split, pair.forward, rng, cfg)
        spec["distractor"] = None  # a distractor would be a second subject for the question
        twin = {**spec, "id": first_id + 2 * i + 1, "action": pair.backward}
        specs += [spec, twin]
    return specs


def captions(spec: dict[str, Any]) -> list[str]:
    """Two captions: the SSv2-style template and a plain paraphrase."""
    phrases = [object_phrase(s, c) for s, c in spec["objects"]]
    label = fill(template_of(spec["action"]), phrases)
    return [label, f"a video of {label[0].lower()}{label[1:]}"]


def qa_item(spec: dict[str, Any]) -> dict[str, Any]:
    kind, answer = ANSWERS[spec["action"]]
    subject = " and ".join(object_phrase(s, c) for s, c in spec["objects"])
    return {"video": f"{spec['id']}.mp4", "question": QUESTIONS[kind].format(subject), "answer": answer,
            "answer_type": kind, "question_id": spec["id"]}


def mc_item(spec: dict[str, Any], by_id: dict[int, dict[str, Any]], rng: np.random.Generator) -> dict[str, Any]:
    """The right caption, the twin's caption and 3 captions of other clips, shuffled."""
    twin_id = spec["id"] + 1 if spec["id"] % 2 == 1 else spec["id"] - 1
    others = [i for i in by_id if i not in (spec["id"], twin_id)]
    picks = [by_id[int(i)] for i in rng.choice(others, size=3, replace=False)]
    options = [captions(s)[0] for s in [spec, by_id[twin_id], *picks]]
    order = rng.permutation(5)
    return {"video": f"{spec['id']}.mp4", "caption": [options[j] for j in order],
            "answer": int(np.flatnonzero(order == 0)[0])}


def generate_singularity(out_dir: str | Path, seed: int = 0, num_train_pairs: int = 150, num_test_pairs: int = 40,
                         **overrides: Any) -> Path:
    """Write the clips and every annotation file (see module doc); ``overrides``: :class:`SynthConfig` fields."""
    cfg = SynthConfig(seed=seed, **{"distractor_prob": 0.0, **overrides})
    if num_test_pairs < 3:
        raise ValueError(f"num_test_pairs must be >= 3 (MC needs 3 other clips), got {num_test_pairs}")
    out = Path(out_dir)
    (out / VIDEOS).mkdir(parents=True, exist_ok=True)
    (out / ANN).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = {"train": pair_specs(num_train_pairs, "train", 1, rng, cfg)}
    splits["test"] = pair_specs(num_test_pairs, "test", 1 + 2 * num_train_pairs, rng, cfg)
    for specs in splits.values():
        for spec in specs:
            path = out / VIDEOS / f"{spec['id']}.mp4"
            if not path.is_file():
                frames, _ = render_spec(spec, cfg)
                encode_mp4(path, frames, cfg.fps, cfg.crf)
    for split, specs in splits.items():
        _dump(out / ANN / f"synth_ret_{split}.json", [{"video": f"{s['id']}.mp4", "caption": captions(s)}
                                                      for s in specs])
        _dump(out / ANN / f"synth_qa_{split}.json", [qa_item(s) for s in specs])
    _dump(out / ANN / "synth_qa_answer_list.json", sorted({answer for _, answer in ANSWERS.values()}))
    by_id = {s["id"]: s for s in splits["test"]}
    _dump(out / ANN / "synth_mc_test.json", [mc_item(s, by_id, rng) for s in splits["test"]])
    logger.info("SynthAction (Singularity formats): %d clips under %s",
                sum(len(s) for s in splits.values()), out)
    return out


def _dump(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write SynthAction in Singularity's downstream formats.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train-pairs", type=int, default=150)
    parser.add_argument("--num-test-pairs", type=int, default=40)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate_singularity(args.out, args.seed, args.num_train_pairs, args.num_test_pairs,
                         frames=args.frames, size=args.size, workers=1)


if __name__ == "__main__":
    main()
