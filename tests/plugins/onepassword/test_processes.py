"""Several processes, one fake account: child processes, the real `broker` CLI.

Children get ``broker_onepassword/testing/_site`` on PYTHONPATH and ``BROKER_OP_EMULATOR``
set to this test's state file; its sitecustomize routes their SDK calls there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from broker_onepassword import OnePasswordBackend
from broker_onepassword.testing import OnePasswordEmulator

from broker.backend import Item
from broker.testing.contract import SAMPLE
from tests.conftest import TEST_KEY_ID, TEST_SECRET, BrokerHome

from .conftest import OP_SITE

CHILD = """
import json, sys
from broker_onepassword import OnePasswordBackend
from broker.backend import Item
backend = OnePasswordBackend(settings={"vault": "Broker"})
seen = backend.get("dev")
backend.set("from-child", Item(aws_access_key_id="AKIACHILD00000000001", note="child"))
print(json.dumps(dict(seen) if seen is not None else None))
backend.close()
"""


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_child_process_shares_the_account(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend],
    child_env: dict[str, str],
) -> None:
    make_backend().set("dev", SAMPLE)
    emulator.reset_calls()
    result = run_python(CHILD, child_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == dict(SAMPLE)
    assert make_backend().get("from-child") == Item(
        aws_access_key_id="AKIACHILD00000000001", note="child")
    calls = emulator.calls()
    # The child read with the remembered id (one ItemsGet), then created its item.
    assert calls["ItemsGet"] == 2 and calls["ItemsCreate"] == 1 and calls["init_client"] == 2


def test_parallel_children_count_every_call(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend],
    child_env: dict[str, str],
) -> None:
    make_backend().set("dev", SAMPLE)
    emulator.reset_calls()
    code = ("from broker_onepassword import OnePasswordBackend as B\n"
            "b = B(settings={'vault': 'Broker'})\n"
            "assert b.get('dev') is not None\nb.close()\n")
    children = [subprocess.Popen([sys.executable, "-c", code], env=child_env)
                for _ in range(4)]
    assert [c.wait(timeout=60) for c in children] == [0, 0, 0, 0]
    assert emulator.calls() == {"init_client": 4, "ItemsGet": 4}


def test_site_is_inert_without_the_variable(child_env: dict[str, str]) -> None:
    env = dict(child_env)
    del env["BROKER_OP_EMULATOR"]
    result = run_python("import sys; print('broker_onepassword.testing' in "
                        "sys.modules)", env)
    assert result.stdout.strip() == "False", result.stderr


def test_import_and_availability_stay_cheap(child_env: dict[str, str]) -> None:
    code = ("import sys\nfrom broker_onepassword import OnePasswordBackend as B\n"
            "print(B(settings={}).availability().ok)\n"
            "print(sorted(m for m in ('onepassword', 'pydantic', 'asyncio', 'boto3') "
            "if m in sys.modules))\n")
    env = {k: v for k, v in child_env.items() if k not in ("BROKER_OP_EMULATOR", "PYTHONPATH")}
    result = run_python(code, env)
    assert result.stdout.split("\n")[:2] == ["True", "[]"], result.stderr


def test_production_code_has_no_test_hooks() -> None:
    package = Path(OnePasswordBackend.__module__.replace(".", "/"))
    root = Path(sys.modules[OnePasswordBackend.__module__].__file__ or "").parent
    assert root.name == package.name
    for source in root.glob("*.py"):  # the emulator's own package, testing/, aside
        text = source.read_text()
        for word in ("emulator", "BROKER_OP_EMULATOR", "broker.testing",
                     "broker_onepassword.testing", "pytest"):
            assert word not in text, f"{source.name} mentions {word}"


@pytest.fixture
def op_home(home: BrokerHome, emulator: OnePasswordEmulator) -> BrokerHome:
    """The end-to-end home (moto, keyring), with 1Password as the credential backend."""
    from broker_keyctl import KeyctlBackend

    availability = KeyctlBackend().availability()
    if not availability.ok:
        pytest.skip(f"kernel keyring unavailable (the session cache): {availability.reason}")
    home.broker_config.write_text(
        'backend = "onepassword"\n\n'
        f'[backends.keyctl]\nkeyring = "{home.keyring}"\n\n'
        '[backends.onepassword]\nvault = "Broker"\n'
    )
    home.env.update({
        "BROKER_OP_EMULATOR": str(emulator.path),
        "PYTHONPATH": str(OP_SITE),
        "OP_SERVICE_ACCOUNT_TOKEN": emulator.token,
    })
    return home


def test_broker_exec_end_to_end(op_home: BrokerHome, emulator: OnePasswordEmulator,
                                sts: object) -> None:
    op_home.add_key("dev")
    item = emulator.find("AWS dev")
    fields = {f["title"]: f["value"] for f in item["fields"]}
    assert fields["access key id"] == TEST_KEY_ID
    assert fields["secret access key"] == TEST_SECRET

    emulator.reset_calls()
    result = op_home.run("exec", "dev", "--", sys.executable, "-c",
                         "import os; print(os.environ['AWS_ACCESS_KEY_ID'])", check=True)
    assert result.stdout.startswith("ASIA")
    # A cold exec: sign in, then one read by the remembered ids.
    assert emulator.calls(remote_only=True) == {"init_client": 1, "ItemsGet": 1}
    # In requests, as 1Password's rate limits count them (docs: "What it costs").
    assert emulator.requests() == {"init_client": 2, "ItemsGet": 3, "read": 5, "write": 0}

    emulator.reset_calls()
    op_home.run("exec", "dev", "--", "true", check=True)
    assert emulator.calls() == {}  # the cached session: 1Password is not contacted at all
    assert op_home.mfa_prompts() == 1


def test_broker_reports_a_rate_limit(op_home: BrokerHome, emulator: OnePasswordEmulator) -> None:
    op_home.add_key("dev")
    emulator.inject("rate_limit", op="ItemsGet")
    result = op_home.run("exec", "dev", "--", "true")
    assert result.returncode == 12, result.stderr
    assert "rate limit" in result.stderr and "op service-account ratelimit" in result.stderr
    assert "Traceback" not in result.stderr
    assert emulator.token not in result.stderr + result.stdout


def test_token_kept_by_backend_login(op_home: BrokerHome, emulator: OnePasswordEmulator) -> None:
    """`broker backend login onepassword`: the token lives only in the kernel keyring."""
    del op_home.env["OP_SERVICE_ACCOUNT_TOKEN"]
    shown = op_home.run("backend", "show", "onepassword")
    assert "available:     no" in shown.stdout and "broker backend login" in shown.stdout
    op_home.run("backend", "login", "onepassword", "--ttl", "10m", input=emulator.token + "\n",
                check=True)
    shown = op_home.run("backend", "show", "onepassword", check=True)
    assert "available:     yes" in shown.stdout
    op_home.add_key("dev")
    op_home.run("exec", "dev", "--", "true", check=True)
    assert emulator.find("AWS dev")["tags"] == ["broker"]
    op_home.run("backend", "logout", "onepassword", check=True)
    result = op_home.run("exec", "dev", "--no-session", "--", "true")
    assert result.returncode == 7, result.stderr  # not available here: no token
    assert "OP_SERVICE_ACCOUNT_TOKEN" in result.stderr
    assert "broker backend login onepassword" in result.stderr
