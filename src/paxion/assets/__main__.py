"""Rebuild the shipped assets from training checkpoints (see README.md in this folder).

    python -m paxion.assets backbone output/pretrain/synthaction/internvideo_synth/latest.pth
    python -m paxion.assets patcher output/embedded_default/<run>/patcher/latest.pth
Each writes into this package folder unless ``--out`` says otherwise.
"""

import argparse
import logging
from pathlib import Path

from paxion.backbones.synth import WEIGHTS_FILE
from paxion.cli.demo import SHIPPED_PATCHER
from paxion.cli.quickstart import export_patcher
from paxion.tasks.pretrain import export_backbone

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["backbone", "patcher"])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--backbone", default="internvideo_synth",
                        help="registered backbone the exported weights must load into (backbone only)")
    parser.add_argument("--config", default=None,
                        help="training config recorded in the patcher file's metadata (default: the embedded default's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.kind == "backbone":
        out = export_backbone(args.checkpoint, args.out or HERE / WEIGHTS_FILE, args.backbone)
    else:
        out = export_patcher(args.checkpoint, args.out or HERE / SHIPPED_PATCHER, args.config)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MB)")


if __name__ == "__main__":
    main()
