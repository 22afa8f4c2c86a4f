"""Command ``python -m paxion.train``: train a model from a config (implemented in :mod:`paxion.cli.train`)."""

from paxion.cli.train import cli

if __name__ == "__main__":
    cli()
