"""Command ``python -m paxion.evaluate``: evaluate a model from a config (implemented in :mod:`paxion.cli.evaluate`)."""

from paxion.cli.evaluate import cli

if __name__ == "__main__":
    cli()
