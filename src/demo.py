"""Does the model know the action? ``python src/demo.py`` (no torchrun, CPU is fine).

No arguments: the shipped tiny foundation model and Knowledge Patcher score the shipped SynthAction
clip against its caption and its action antonym, and the clip against its time reversal.
    python src/demo.py --video clip.mp4 --text "Book falling like a rock" --text "Book rising like a rock"
    python src/demo.py --config configs/train/downstream/ssv2_label/patch_and_fuse.yaml \
        --checkpoint ssv2_label_patch_and_fuse.pth --video clip.mp4 --text "..." --text "..."
"""

import argparse
import logging
import sys
from pathlib import Path

try:
    import paxion  # noqa: F401
except ImportError:  # not installed: use the checkout next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from paxion.api import load_model, score_captions, score_reversal
from paxion.cli.demo import DEMO_CLIP, asset, demo_texts, format_scores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", help="video file (default: the shipped SynthAction clip)")
    parser.add_argument("--text", action="append", help="a candidate caption; repeat (default: caption + antonym)")
    parser.add_argument("--config", help="experiment YAML whose model: section builds the model")
    parser.add_argument("--checkpoint", help="Paxion KP / Patch & Fuse checkpoint (default: the shipped patcher)")
    parser.add_argument("overrides", nargs="*", help="config overrides a.b=c")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.video is None and args.config is not None:
        parser.error("--config needs --video and --text (the shipped clip is sized for the shipped model)")
    texts = args.text or [demo_texts()["caption"], demo_texts()["action_antonym"]]
    model, preprocess, _ = load_model(args.config or "embedded_default", args.checkpoint, overrides=args.overrides)
    video = preprocess(args.video or asset(DEMO_CLIP))
    print(f"video: {args.video or 'shipped SynthAction clip'}  ({video.shape[1]} frames)")
    print("\np(text | video):")
    print(format_scores(score_captions(model, video, texts)))
    print(f"\np(clip | {texts[0]!r}) against its time reversal:")
    print(format_scores(score_reversal(model, video, texts[0])))


if __name__ == "__main__":
    from paxion.cli.train import run_cli  # a wrong file, key or name: one line, exit 1

    run_cli(main)
