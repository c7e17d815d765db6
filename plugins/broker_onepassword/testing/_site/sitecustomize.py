"""Routes the 1Password SDK's native core to broker's emulator in child processes.

Tests put this directory on ``PYTHONPATH`` and set ``BROKER_OP_EMULATOR`` to a
state file; without that variable this file does nothing (and costs nothing), and
an interpreter that cannot import broker (another Python) is left alone.
See :mod:`broker_onepassword.testing`.
"""

import os

if os.environ.get("BROKER_OP_EMULATOR"):
    try:
        import broker_onepassword.testing
    except ImportError:
        pass
    else:
        broker_onepassword.testing.install()
