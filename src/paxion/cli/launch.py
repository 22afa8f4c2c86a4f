"""``torchrun`` for the launch scripts, ending with the training's one-line error instead of a traceback.

    python -m paxion.cli.launch [torchrun options] SCRIPT [script args]     (what run_scripts/launch.sh runs)

The arguments are torchrun's. When a training process fails, torchrun raises ``ChildFailedError`` and
prints its traceback and a failure summary (about 30 lines) after the process's own ``error: ...``
line. Here the processes also write that line to the file named by :data:`ERROR_FILE_ENV`, and the
launcher ends with it and the process's exit status; a failure without such a line (a crash) ends
with one line naming the rank and exit status, its traceback being in the output above. Stop
signals behave as under torchrun.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

ERROR_FILE_ENV = "PAXION_ERROR_FILE"


def main(argv: Optional[Sequence[str]] = None) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(argv)
    fd, error_file = tempfile.mkstemp(prefix="paxion-error-", suffix=".txt")
    os.close(fd)
    os.environ[ERROR_FILE_ENV] = error_file  # inherited by the training processes
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        reported = Path(error_file).read_text().splitlines()
        code = failure.exitcode if 0 < failure.exitcode < 256 else 1  # negative: killed by a signal
        print(reported[0] if reported else f"error: {exc.name}: rank {rank} exited with status {failure.exitcode} "
              "(its output is above)", file=sys.stderr)
        raise SystemExit(code) from None
    finally:
        Path(error_file).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
