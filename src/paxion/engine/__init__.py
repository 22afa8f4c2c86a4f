"""The engine: the one training/evaluation loop (``runner``), its run state and guards, checkpoint files,
distributed helpers, logging, optimiser and lr schedules, samplers, and the run folder it writes.

``dist``, ``checkpoint`` and ``optim`` are leaves any layer may import (they import nothing above them)."""
