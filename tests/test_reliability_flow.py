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

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    from broker.testing import onepassword_emulator
    from broker.testing.onepassword_emulator import field

    site = Path(onepassword_emulator.__file__).resolve().parent / "_op_site"
    with onepassword_emulator.installed(tmp_path / "op-state.json") as emu:
        emu.create_item("GPG key", [field("password", GPG_PASSPHRASE, "Concealed")],
                        category="Password")
        home.env.update(
            BROKER_OP_EMULATOR=str(emu.path),
            PYTHONPATH=str(site),
            OP_SERVICE_ACCOUNT_TOKEN=emu.token,
        )
        yield emu


def protected_gnupg_home() -> Path:
    """A short GNUPGHOME with a key protected by GPG_PASSPHRASE and no agent caching."""
    path = Path(tempfile.mkdtemp(prefix="g", dir="/tmp"))
    path.chmod(0o700)
    (path / "gpg.conf").write_text("s2k-count 65536\n")
    (path / "gpg-agent.conf").write_text(
        "allow-loopback-pinentry\ndefault-cache-ttl 0\nmax-cache-ttl 0\n"
    )
    uid = "broker-flow@example.invalid"

    def gpg(*args: str) -> str:
        return subprocess.run(
            ["gpg", "--homedir", str(path), "--batch", "--pinentry-mode", "loopback",
             "--passphrase-fd", "0", *args],
            input=GPG_PASSPHRASE, capture_output=True, text=True, check=True, timeout=60,
        ).stdout

    gpg("--quick-generate-key", uid, "ed25519", "cert,sign", "never")
    listing = gpg("--with-colons", "--list-keys", uid)
    fpr = next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))
    gpg("--quick-add-key", fpr, "cv25519", "encr", "never")
    return path


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
    gnupghome = None
    if request.param == "pass":
        gnupghome = protected_gnupg_home()
        store = home.root / ".password-store"
        home.env.update(GNUPGHOME=str(gnupghome), PASSWORD_STORE_DIR=str(store))
        subprocess.run(["pass", "init", "broker-flow@example.invalid"], env=home.env,
                       capture_output=True, check=True)
        config += '\n[backends.pass]\npassphrase = "op://Broker/GPG key/password"\n'
    home.broker_config.write_text(config)
    yield home, request.param, tmpdir
    if gnupghome is not None:
        subprocess.run(["gpgconf", "--homedir", str(gnupghome), "--kill", "gpg-agent"],
                       capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(gnupghome)], check=False)


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
