"""Entry points behind the commands ``python -m paxion.<command>`` (train, evaluate, quickstart,
inference, report) and ``src/<command>.py``; ``demo`` holds the helpers of ``src/demo.py``; each parses its arguments and calls into the engine or the public API."""
