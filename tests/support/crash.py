"""Run the broker CLI so that it SIGKILLs itself at a chosen step of ``broker migrate``.

``python -m tests.support.crash STEP NTH broker-args...``: the migrate service's
checkpoint is replaced so that the process kills itself at the ``NTH`` time it reaches
``STEP`` (the backends it uses come from :func:`tests.support.backends.register_test_plugins`).
"""

from __future__ import annotations

import os
import signal
import sys


def crash_main(step: str, nth: int, args: list[str]) -> None:
    """Run ``broker ARGS`` and SIGKILL this process at the ``nth`` checkpoint ``step``."""
    from broker.services import migrate

    seen = {"count": 0}

    def checkpoint(reached: str, profile: str) -> None:
        if reached == step:
            seen["count"] += 1
            if seen["count"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    migrate.checkpoint = checkpoint
    from broker.cli import main

    main(args)


if __name__ == "__main__":
    crash_main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
