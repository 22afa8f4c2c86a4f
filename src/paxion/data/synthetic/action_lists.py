"""SynthAction as an action-recognition set in VideoMAE's list format: its templates are the classes.

    python -m paxion.data.synthetic --out DIR                      # clips + ActionBench annotations
    python -m paxion.data.synthetic.action_lists --root DIR        # then DIR/SynthAction/videomae_lists/

writes ``train.csv``, ``val.csv``, ``test.csv`` (``<id>.mp4 <label>`` lines, paths relative to the
clip folder) and ``classes.json`` (label -> bracket-free template, in the order of SSv2's
``labels.json`` written by the generator). Use with ``datasets.action_list.ann_root`` pointing there
and ``videos`` at the clip folder (``configs/datasets/synthaction_actions.yaml``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from paxion.data.synthetic.annotations import SSV2_VIDEOS, label_index
from paxion.data.synthetic.generate import load_specs
from paxion.data.synthetic.scenes import template_of

LISTS = Path("SynthAction/videomae_lists")


def class_of(action: str) -> int:
    """Label of an action: its template's index in ``labels.json`` order."""
    return int(label_index()[template_of(action).replace("[something]", "something")])


def write_action_lists(root: str | Path) -> Path:
    """Write the list files for the SynthAction data set under ``root``; returns their folder."""
    root = Path(root)
    specs = load_specs(root)
    if specs is None:
        raise FileNotFoundError(f"{root}: no synthaction_specs.json; generate SynthAction there first")
    out = root / LISTS
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test"):
        lines = [f"{s['id']}.mp4 {class_of(s['action'])}" for s in specs if s["split"] == split]
        (out / f"{split}.csv").write_text("".join(line + "\n" for line in lines))
    classes = {int(i): t for t, i in label_index().items()}
    (out / "classes.json").write_text(json.dumps([classes[i] for i in sorted(classes)], indent=1))
    return out


def videos_dir(root: str | Path) -> Path:
    return Path(root) / SSV2_VIDEOS


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Write SynthAction's VideoMAE-style action lists.")
    parser.add_argument("--root", required=True, help="a folder written by python -m paxion.data.synthetic")
    out = write_action_lists(parser.parse_args(argv).root)
    print(f"wrote {out}/{{train,val,test}}.csv and classes.json")


if __name__ == "__main__":
    main()
