"""Rebuild ActionBench-SSv2 annotations from the raw SSv2 label files, offline and deterministically.

    python ActionBench/build_ssv2_annotations.py --ssv2-labels RAW_LABELS_DIR --out OUT_DIR [--seed 42]

RAW_LABELS_DIR holds SSv2's train.json / validation.json (``id, label, template, placeholders``),
labels.json and test-answers.csv (``id;template``). OUT_DIR receives the ActionBench layout read by
the ``actionbench_ssv2`` builder: antonym fields on every item whose template changes, object-shuffled
labels on validation, train_antonym.json (the train items with an antonym) and the test csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import shutil
from pathlib import Path

from actionbench_tools import action_antonym, load_table, shuffle_objects, wordnet_verb_antonym

logger = logging.getLogger("actionbench")


def annotate(items: list[dict], rng: random.Random, tables: dict, wordnet, shuffle: bool) -> list[dict]:
    out = []
    for item in items:
        args = (tables["verbs"], tables["particles"], tables["ignored"], wordnet)
        template = item["template"].replace("[something]", "something")
        tpl_antonym = action_antonym(template, *args)
        new = dict(item)
        if tpl_antonym is not None:
            new["template_action_antonym_clip_text"] = tpl_antonym
            new["label_action_antonym_clip_text"] = action_antonym(item["label"], *args) or item["label"]
        if shuffle:
            new["label_object_shuffled_clip_text"] = shuffle_objects(item["label"], item.get("placeholders", []),
                                                                     tables["taxonomy"], rng)
        out.append(new)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ssv2-labels", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--taxonomy", default="object_taxonomy_small.json", help="file in ActionBench/tables")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tables = {"verbs": load_table("antonyms_ssv2.json"), "particles": load_table("particles.json"),
              "ignored": set(load_table("ignored_verbs_ssv2.json")), "taxonomy": load_table(args.taxonomy)}
    wordnet = wordnet_verb_antonym()
    logger.info("WordNet antonyms: %s", "on" if wordnet else "off (nltk/WordNet data not installed: tables only)")
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train = annotate(json.loads((args.ssv2_labels / "train.json").read_text()), rng, tables, wordnet, False)
    val = annotate(json.loads((args.ssv2_labels / "validation.json").read_text()), rng, tables, wordnet, True)
    val = [v for v in val if "template_action_antonym_clip_text" in v]  # only changed captions are kept
    (args.out / "train.json").write_text(json.dumps(train))
    (args.out / "validation.json").write_text(json.dumps(val))
    with_antonym = [t for t in train if "template_action_antonym_clip_text" in t]
    (args.out / "train_antonym.json").write_text(json.dumps(with_antonym))
    shutil.copy(args.ssv2_labels / "labels.json", args.out / "labels.json")
    with (args.ssv2_labels / "test-answers.csv").open() as f, (args.out / "test-answers.csv").open("w", newline="") as g:
        writer = csv.writer(g, delimiter=";")
        writer.writerow(["id", "template", "template_action_antonym_clip_text"])
        for row in csv.reader(f, delimiter=";"):
            if len(row) >= 2 and row[0] != "id":
                antonym = action_antonym(row[1], tables["verbs"], tables["particles"], tables["ignored"], wordnet)
                if antonym is not None:
                    writer.writerow([row[0], row[1], antonym])
    logger.info("train %d (%d with antonyms), val %d", len(train), len(with_antonym), len(val))


if __name__ == "__main__":
    main()
