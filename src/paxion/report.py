"""Command ``python -m paxion.report``: render a run folder as an HTML report (implemented in :mod:`paxion.cli.report`)."""

from paxion.cli.report import main as cli

if __name__ == "__main__":
    cli()
