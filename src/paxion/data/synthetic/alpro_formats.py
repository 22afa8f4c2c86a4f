"""SynthAction in ALPRO's formats (the clips and twins of the Singularity-format generator).

Layout under ``<out>/alpro/`` (videos stay in ``<out>/videos_images/synthaction/``):

    ret/txt/{train,val,test}.jsonl        {"caption", "clip_name"}           (val = test)
    qa/txt/{train,val,test}.jsonl         {"question", "answer", "video_id", "answer_type", "question_id"}
    qa/txt/train_ans2label.json           {answer: label} of the training answers
    webvid/txt/{train,val}.csv            video_id,text,txt_len              (pre-training list)
    entities.txt                          one object name per line (PEM's entities)

Question kinds map onto ALPRO's answer types: direction -> where, rotation -> how, change -> what.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from paxion.data.synthetic.scenes import SHAPES
from paxion.data.synthetic.singularity_formats import ANN, VIDEOS, generate_singularity

ALPRO = Path("alpro")
ANSWER_TYPES = {"direction": "where", "rotation": "how", "change": "what"}


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def generate_alpro(out_dir: str | Path, seed: int = 0, num_train_pairs: int = 150, num_test_pairs: int = 40,
                   **overrides: Any) -> Path:
    """Write the clips and ALPRO's annotation files; returns ``<out>/alpro``; ``overrides``: SynthConfig fields."""
    out = generate_singularity(out_dir, seed, num_train_pairs, num_test_pairs, **overrides)
    root = out / ALPRO
    for split in ("train", "test"):
        ret = json.loads((out / ANN / f"synth_ret_{split}.json").read_text())
        rows = [{"caption": c, "clip_name": Path(item["video"]).stem} for item in ret for c in item["caption"]]
        qa = json.loads((out / ANN / f"synth_qa_{split}.json").read_text())
        qa_rows = [{"question": q["question"], "answer": q["answer"], "video_id": Path(q["video"]).stem,
                    "answer_type": ANSWER_TYPES[q["answer_type"]], "question_id": q["question_id"]} for q in qa]
        for name in (("train",) if split == "train" else ("val", "test")):
            _jsonl(root / "ret" / "txt" / f"{name}.jsonl", rows)
            _jsonl(root / "qa" / "txt" / f"{name}.jsonl", qa_rows)
            if name != "test":
                webvid = root / "webvid" / "txt" / f"{name}.csv"
                webvid.parent.mkdir(parents=True, exist_ok=True)
                with webvid.open("w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(["video_id", "text", "txt_len"])
                    for item in ret:
                        writer.writerow([Path(item["video"]).stem, item["caption"][0], len(item["caption"][0].split())])
        if split == "train":
            answers = sorted({q["answer"] for q in qa})
            (root / "qa" / "txt" / "train_ans2label.json").write_text(json.dumps({a: i for i, a in enumerate(answers)}))
    (root / "entities.txt").write_text("\n".join(SHAPES) + "\n")
    return root


def videos_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / VIDEOS
