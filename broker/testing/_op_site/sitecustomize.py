"""Routes the 1Password SDK's native core to broker's emulator in child processes.

Tests put this directory on ``PYTHONPATH`` and set ``BROKER_OP_EMULATOR`` to a
state file; without that variable this file does nothing (and costs nothing), and
an interpreter that cannot import broker (another Python) is left alone.
See :mod:`broker.testing.onepassword_emulator`.
"""

import os

if os.environ.get("BROKER_OP_EMULATOR"):
    try:
        from broker.testing import onepassword_emulator
    except ImportError:
        pass
    else:
        onepassword_emulator.install()
