"""Command ``python -m paxion.inference``: score captions of one video from the command line (implemented in :mod:`paxion.cli.inference`)."""

from paxion.cli.inference import main as cli

if __name__ == "__main__":
    cli()
