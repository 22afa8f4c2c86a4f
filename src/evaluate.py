"""Thin entry: ``python src/evaluate.py --cfg-path CFG [a.b=c ...]`` (same as ``python -m paxion.evaluate``)."""

import sys
from pathlib import Path

try:
    import paxion  # noqa: F401
except ImportError:  # not installed: use the checkout next to this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from paxion.cli.evaluate import cli

if __name__ == "__main__":
    cli()
