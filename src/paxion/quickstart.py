"""Command ``python -m paxion.quickstart``: the embedded default run (data, pre-training, patcher, ActionBench) (implemented in :mod:`paxion.cli.quickstart`)."""

from paxion.cli.quickstart import cli

if __name__ == "__main__":
    cli()
