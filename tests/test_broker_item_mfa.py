"""The MFA device of a chain whose key comes from a ``broker_item`` (the item's ``mfa
serial``) when no profile sets ``mfa_serial``: only reading the item tells it, so
:func:`broker.aws.chain.needs_code` (`exec --server`'s "may this refresh ask for a code")
counts such a chain as having one, while `broker list`, which reads no item, shows the
device seen at the last read of the key (tests/test_broker_item.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from broker.aws.chain import ChainOptions, hop_session_name, mfa_session_name, needs_code
from broker.aws.credentials import Credentials
from broker.aws.profiles import parse, resolve_chain
from broker.aws.session_cache import SessionCache
from broker.testing.memory import MemoryBackend

CONFIG = """
[profile shell]
broker_item = op://AWS/AWS Access Key

[profile shell-role]
source_profile = shell
role_arn = arn:aws:iam::123456789012:role/r

[profile plain]
region = eu-west-1

[profile own]
broker_item = op://AWS/AWS Access Key
mfa_serial = arn:aws:iam::123456789012:mfa/own
"""


def test_a_broker_item_chain_may_need_a_code(tmp_path: Path) -> None:
    aws = parse(CONFIG, tmp_path / "config")
    cache = SessionCache(MemoryBackend(settings={"store": uuid.uuid4().hex},
                                       namespace="sessions"), margin=300)

    def needed(target: str, **options: object) -> bool:
        return needs_code(resolve_chain(aws, target), ChainOptions(**options), cache)  # type: ignore[arg-type]

    assert needed("shell") and needed("shell-role") and needed("own")
    assert not needed("plain")  # no device anywhere: never a code
    assert not needed("shell", no_session=True)  # the raw key: no call at all
    assert needed("shell-role", no_session=True)  # AssumeRole signed with the key
    expires = datetime.now(timezone.utc) + timedelta(hours=1)
    shell = resolve_chain(aws, "shell")
    cache.put(mfa_session_name(shell), Credentials("ASIA", "s", "t", expires))
    assert not needed("shell") and not needed("shell-role")  # the session carries on
    role = resolve_chain(aws, "shell-role")
    cache.put(hop_session_name(role, 0, ChainOptions(no_session=True)),
              Credentials("ASIA", "s", "t", expires))
    assert not needed("shell-role", no_session=True)


def test_the_chain_alone_names_no_device_for_the_item_s_own(tmp_path: Path) -> None:
    """The chain carries only the profiles' mfa_serial: the item's device comes from
    reading it (or, for `broker list`, from the ledger's memory of the last read)."""
    from broker.aws.mfa import source_name

    aws = parse(CONFIG, tmp_path / "config")
    assert resolve_chain(aws, "shell").mfa_serial is None
    assert source_name(resolve_chain(aws, "shell"), None) == ""
    assert resolve_chain(aws, "own").mfa_serial == "arn:aws:iam::123456789012:mfa/own"
