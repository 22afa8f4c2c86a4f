"""Thin entry: ``python src/train.py --cfg-path CFG [a.b=c ...]`` (same as ``python -m paxion.train``)."""

import sys
from pathlib import Path

try:
    import paxion  # noqa: F401
except ImportError:  # not installed: use the checkout next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from paxion.cli.train import cli

if __name__ == "__main__":
    cli()
