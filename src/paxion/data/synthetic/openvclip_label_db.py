"""SynthAction as Open-VCLIP label databases: seen / unseen class halves for open-vocabulary tests.

    python -m paxion.data.synthetic --out DIR                          # clips + annotations
    python -m paxion.data.synthetic.openvclip_label_db --root DIR      # then DIR/SynthAction/openvclip_label_db/

Classes are SynthAction's 20 templates (bracket-free, e.g. "Moving something up"), sorted by label;
the even-numbered ones are *seen* (trained on), the odd-numbered ones *unseen* (never trained on).
Each of ``seen/``, ``unseen/`` and ``full/`` holds ``train.csv``, ``val.csv``, ``test.csv``
(``<id>.mp4,<label>``: the original's comma-separated lists, paths relative to the clip folder,
labels re-numbered within the class set) and ``index2cls.json`` (``{"0": "class name", ...}``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from paxion.data.synthetic.action_lists import class_of, videos_dir
from paxion.data.synthetic.annotations import label_index
from paxion.data.synthetic.generate import load_specs

LABEL_DB = Path("SynthAction/openvclip_label_db")
SEPARATOR = ","


def class_sets() -> dict[str, list[int]]:
    """Global labels of each class set: seen = even labels, unseen = odd labels, full = all."""
    labels = sorted(int(i) for i in label_index().values())
    return {"seen": labels[0::2], "unseen": labels[1::2], "full": labels}


def write_label_db(root: str | Path) -> Path:
    """Write the three label databases for the SynthAction data set under ``root``; returns their folder."""
    root = Path(root)
    specs = load_specs(root)
    if specs is None:
        raise FileNotFoundError(f"{root}: no synthaction_specs.json; generate SynthAction there first")
    names = {int(i): template for template, i in label_index().items()}
    out = root / LABEL_DB
    for set_name, labels in class_sets().items():
        folder = out / set_name
        folder.mkdir(parents=True, exist_ok=True)
        local = {label: k for k, label in enumerate(labels)}
        for split in ("train", "val", "test"):
            lines = [
                f"{s['id']}.mp4{SEPARATOR}{local[class_of(s['action'])]}"
                for s in specs
                if s["split"] == split and class_of(s["action"]) in local
            ]
            (folder / f"{split}.csv").write_text("".join(line + "\n" for line in lines))
        index = {str(k): names[label] for k, label in enumerate(labels)}
        (folder / "index2cls.json").write_text(json.dumps(index, indent=1))
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Write SynthAction's Open-VCLIP label databases.")
    parser.add_argument("--root", required=True, help="a folder written by python -m paxion.data.synthetic")
    root = parser.parse_args(argv).root
    out = write_label_db(root)
    print(f"wrote {out}/{{seen,unseen,full}}/{{train,val,test}}.csv and index2cls.json; clips in {videos_dir(root)}")


if __name__ == "__main__":
    main()
