"""The whole flow with every backend, then a scan: no secret on disk, none in any argv.

For each credential backend (the kernel keyring, a real `pass` store whose GPG passphrase
comes from 1Password, and 1Password itself through the SDK emulator) the user story runs:
`broker add dev`, `broker totp set dev`, `broker exec dev -- aws sts get-caller-identity`,
`broker export`, `broker list`, `broker migrate` to another backend, `broker clear`. While
it runs every process's argv is sampled; afterwards HOME, TMPDIR and broker's state, cache
and config directories are searched for the secret access key, the session token, the
TOTP seed, the GPG passphrase and the 1Password token.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator

import pytest

from broker.testing.gnupg import throwaway_gnupg_home
from tests.conftest import ACCOUNT, TEST_KEY_ID, TEST_SECRET
from tests.test_reliability import ArgvWatcher

SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXQ"
GPG_PASSPHRASE = "grey-heron-lantern-417"


@pytest.fixture(autouse=True)
def _keyctl(home):
    from broker_keyctl import KeyctlBackend

    if not KeyctlBackend().availability().ok:
        pytest.skip("kernel keyring unavailable")


@pytest.fixture
def emulator(home, tmp_path) -> Iterator[object]:
    """A fake 1Password account (its state file lives outside the scanned directories)."""
    from broker_onepassword.testing import child_environment, field, installed

    with installed(tmp_path / "op-state.json") as emu:
        emu.create_item("GPG key", [field("password", GPG_PASSPHRASE, "Concealed")],
                        category="Password")
        home.env.update(child_environment(emu.path), OP_SERVICE_ACCOUNT_TOKEN=emu.token)
        yield emu


@pytest.fixture(params=["keyctl", "pass", "onepassword"])
def flow_home(request, home, emulator, tmp_path):
    home.sts.register_mfa_device(f"arn:aws:iam::{ACCOUNT}:mfa/flow-user", SEED)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    home.env["TMPDIR"] = str(tmpdir)
    home.aws_config.write_text(
        "[default]\nregion = ap-northeast-1\n\n"
        f"[profile dev]\nmfa_serial = arn:aws:iam::{ACCOUNT}:mfa/flow-user\n"
        f"role_arn = arn:aws:iam::{ACCOUNT}:role/dev-role\n"
    )
    config = (
        f'backend = "{request.param}"\n\n'
        f'[backends.keyctl]\nkeyring = "{home.keyring}"\n\n'
        '[backends.onepassword]\nvault = "Broker"\n'
    )
    with contextlib.ExitStack() as cleanup:
        if request.param == "pass":
            # a key protected by GPG_PASSPHRASE, no agent caching
            gnupg = cleanup.enter_context(
                throwaway_gnupg_home("broker-flow@example.invalid", GPG_PASSPHRASE))
            store = home.root / ".password-store"
            home.env.update(gnupg.env, PASSWORD_STORE_DIR=str(store))
            subprocess.run(["pass", "init", gnupg.key.uid], env=home.env,
                           capture_output=True, check=True)
            config += '\n[backends.pass]\npassphrase = "op://Broker/GPG key/password"\n'
        home.broker_config.write_text(config)
        yield home, request.param, tmpdir


def test_whole_flow_leaves_no_secret_on_disk_or_in_argv(flow_home, emulator, sts):
    home, backend, tmpdir = flow_home
    token_1p = home.env["OP_SERVICE_ACCOUNT_TOKEN"]
    watched = [TEST_SECRET, SEED, GPG_PASSPHRASE, token_1p]
    with ArgvWatcher(watched) as watcher:
        home.run("add", "dev", input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n", check=True)
        home.run("totp", "set", "dev", input=f"{SEED}\n", check=True)
        identity = home.run("exec", "dev", "--", "aws", "sts", "get-caller-identity",
                            check=True)
        assert ":assumed-role/dev-role/" in json.loads(identity.stdout)["Arn"]
        doc = json.loads(home.run("export", "dev", "--format", "json", check=True).stdout)
        listing = home.run("list", check=True).stdout
        if backend != "keyctl":
            home.run("migrate", "--from", backend, "--to", "keyctl", check=True)
        home.run("clear", check=True)
    assert watcher.samples > 0 and watcher.hits == [], watcher.hits
    assert "dev" in listing
    import pyotp

    sent = sts.actions("GetSessionToken")[0]["TokenCode"]
    assert len(sent) == 6 and sent.isdigit()
    assert pyotp.TOTP(SEED).verify(sent, valid_window=2)

    secrets = {
        "secret access key": TEST_SECRET,
        "session token": doc["SessionToken"],
        "session secret": doc["SecretAccessKey"],
        "TOTP seed": SEED,
        "GPG passphrase": GPG_PASSPHRASE,
        "1Password token": token_1p,
    }
    scanned = 0
    for base in (home.root, tmpdir):
        for path in base.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            data = path.read_bytes()
            scanned += 1
            for what, secret in secrets.items():
                assert secret.encode() not in data, f"{what} found in {path}"
    assert scanned > 3
    for state_dir in (home.root / ".local" / "state" / "broker", home.root / ".cache" / "broker"):
        if state_dir.exists():
            for path in state_dir.rglob("*"):
                assert (path.stat().st_mode & 0o077) == 0, path
    calls = emulator.calls(remote_only=True)
    if backend == "pass":  # the GPG passphrase really came from 1Password
        assert calls.get("SecretsResolve", 0) + calls.get("SecretsResolveAll", 0) >= 1, calls
    if backend == "onepassword":
        assert calls.get("ItemsGet", 0) >= 1, calls
