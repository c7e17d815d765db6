"""The whole flow on this machine, with nothing real at stake.

A local STS/IAM endpoint that enforces AWS's rules (moto's server on 127.0.0.1 behind
broker.testing.local_sts.LocalSTS: MFA codes checked against the device's seed and
accepted once, trust policies evaluated, role chaining capped, a clock), a throwaway
GnuPG home and password store, a throwaway kernel keyring for sessions, an IAM user
with a virtual MFA device, and then the user story's daily flow:

    broker backend set pass
    broker add dev
    broker exec dev -- aws sts get-caller-identity

The GPG passphrase comes from a secret reference (here env:, in real life one to a vault
of its own that a service account can read, such as op://AWS/GPG key/password) and the
MFA code from the device's TOTP seed.

``--backend onepassword`` runs the same flow with the key kept in 1Password, on the
1Password emulator (broker_onepassword.testing: the SDK's real Python layer over an
emulated native core, a fake account in a file): a service-account token kept with
`broker backend login onepassword`, the key stored as an API Credentials item in a vault
named AWS. No 1Password account is needed.

Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from broker.testing.gnupg import throwaway_gnupg_home
from broker.testing.local_sts import enforcing_sts

BIN = Path(sys.executable).parent
ACCOUNT = "123456789012"


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def show(argv: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    shown = " ".join(a if " " not in a else repr(a) for a in argv)
    print(f"$ {shown}", flush=True)
    result = subprocess.run(
        argv, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )
    out = result.stdout + result.stderr
    print(out.rstrip() if out.strip() else "(no output)", flush=True)
    if result.returncode != 0:
        raise SystemExit(f"demo: {argv[0]} failed with exit code {result.returncode}")
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="broker's demo, on a local STS")
    parser.add_argument("--backend", choices=("pass", "onepassword"), default="pass",
                        help="where the IAM user's key is kept (onepassword: the emulator)")
    backend = parser.parse_args(argv).backend
    import boto3

    root = Path(tempfile.mkdtemp(prefix="broker-demo-"))
    keyring = f"broker-demo-{uuid.uuid4().hex[:8]}"
    stack = contextlib.ExitStack()
    endpoint = stack.enter_context(enforcing_sts(BIN)).url
    passphrase = uuid.uuid4().hex  # stands in for the one kept in 1Password
    try:
        env = {
            "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(root),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PASSWORD_STORE_DIR": str(root / ".password-store"),
            "AWS_CONFIG_FILE": str(root / ".aws" / "config"),
            "AWS_ENDPOINT_URL": endpoint,
            "XDG_CONFIG_HOME": str(root / ".config"),
            "XDG_STATE_HOME": str(root / ".local" / "state"),
            "XDG_CACHE_HOME": str(root / ".cache"),
            "BROKER_DEMO_GPG_PASSPHRASE": passphrase,
        }

        step("An IAM user with a virtual MFA device, and a role that trusts it only with MFA")
        iam = boto3.client(
            "iam", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id="demo", aws_secret_access_key="demo",  # noqa: S106 - moto
        )
        iam.create_user(UserName="dev-user")
        key = iam.create_access_key(UserName="dev-user")["AccessKey"]
        device = iam.create_virtual_mfa_device(VirtualMFADeviceName="dev-user")
        seed = device["VirtualMFADevice"]["Base32StringSeed"].decode()
        serial = device["VirtualMFADevice"]["SerialNumber"]
        trust = {
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/dev-user"},
                "Action": "sts:AssumeRole",
                "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
            }],
        }
        iam.create_role(RoleName="dev-role", AssumeRolePolicyDocument=json.dumps(trust))
        print(f"user dev-user, key {key['AccessKeyId']}, MFA device {serial}, role dev-role")
        seed_file = root / "authenticator-seed"  # the authenticator app's copy of the seed
        seed_file.write_text(seed)
        seed_file.chmod(0o600)

        step("~/.aws/config, as in the user story")
        (root / ".aws").mkdir()
        python = sys.executable
        (root / ".aws" / "config").write_text(
            "[default]\nregion = ap-northeast-1\n\n"
            f"[profile dev]\nmfa_serial = {serial}\n"
            f"role_arn = arn:aws:iam::{ACCOUNT}:role/dev-role\n"
            # the authenticator: computes the TOTP code from the device's seed
            f"mfa_process = {python} -c \"import pyotp,pathlib; "
            f"print(pyotp.TOTP(pathlib.Path('{seed_file}').read_text()).now())\"\n"
        )
        print((root / ".aws" / "config").read_text().rstrip())

        broker = str(BIN / "broker")
        config = root / ".config" / "broker" / "config.toml"
        config.parent.mkdir(parents=True, mode=0o700)
        if backend == "pass":
            setup_pass(env, stack, passphrase, config, keyring)
        else:
            setup_onepassword(env, root, config, keyring)
        show([broker, "backend", "set", backend], env)
        show([broker, "backend", "list"], env)

        step("Store the IAM user's key (read from stdin here; a hidden prompt at a terminal)")
        show([broker, "add", "dev"], env,
             stdin=f"{key['AccessKeyId']}\n{key['SecretAccessKey']}\n")
        if backend == "pass":
            show(["pass", "ls"], env)
            entry = (root / ".password-store" / "broker" / "dev.gpg").read_bytes()
            print(f"broker/dev.gpg: {len(entry)} bytes of OpenPGP, the secret nowhere in "
                  f"plaintext: {key['SecretAccessKey'].encode() not in entry}")
        else:
            show([broker, "backend", "show", "onepassword"], env)

        step("The daily flow: temporary role credentials for a command")
        show([broker, "exec", "dev", "--", "aws", "sts", "get-caller-identity"], env)
        show([broker, "list"], env)

        step("Again: served from the session cache (no key read, no MFA, no STS call)")
        start = time.perf_counter()
        show([broker, "exec", "dev", "--", "sh", "-c",
              "echo \"$BROKER_PROFILE until $AWS_CREDENTIAL_EXPIRATION\""], env)
        print(f"({(time.perf_counter() - start) * 1000:.0f} ms)")
        show([broker, "clear"], env)
        print("\nDemo finished: everything it made is being removed.")
        return 0
    finally:
        stack.close()  # the local STS, and the GnuPG home with its agent
        try:
            from broker_keyctl import KeyctlBackend

            KeyctlBackend(settings={"keyring": keyring}).purge(every_namespace=True)
        except Exception as exc:
            print(f"demo: could not remove keyring {keyring}: {exc}", file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)


def setup_pass(env: dict[str, str], stack: contextlib.ExitStack, passphrase: str,
               config: Path, keyring: str) -> None:
    step("A throwaway GnuPG key and password store")
    gnupg = stack.enter_context(
        throwaway_gnupg_home("broker demo <demo@example.invalid>", passphrase))
    env.update(gnupg.env)
    fingerprint = gnupg.key.fingerprint
    show(["pass", "init", fingerprint], env)

    step("broker's config: the pass backend, its passphrase from a secret reference")
    config.write_text(
        "[backends.pass]\n"
        "# in real life, from a vault a service account can read:\n"
        "# passphrase = \"op://AWS/GPG key/password\"\n"
        "passphrase = \"env:BROKER_DEMO_GPG_PASSPHRASE\"\n\n"
        f"[backends.keyctl]\nkeyring = \"{keyring}\"\n"
    )
    config.chmod(0o600)
    print(config.read_text().rstrip())


def setup_onepassword(env: dict[str, str], root: Path, config: Path, keyring: str) -> None:
    import broker_onepassword.testing as onepassword_emulator

    step("1Password, emulated: a fake account with a vault for the keys, and its token")
    account = onepassword_emulator.OnePasswordEmulator(root / "op-account.json")
    account.add_vault("AWS")  # the vault shared with the service account
    # The SDK's native core is replaced in broker's processes by the emulator: its
    # sitecustomize (on PYTHONPATH) routes the core there while BROKER_OP_EMULATOR is set.
    env.update(onepassword_emulator.child_environment(account.path, env.get("PYTHONPATH")))
    print(f"vaults: {', '.join(v['title'] for v in account.snapshot()['vaults'].values())} "
          "(a service account never sees Private)")

    step("broker's config: the onepassword backend and its vault")
    config.write_text(
        "[backends.onepassword]\nvault = \"AWS\"\n\n"
        f"[backends.keyctl]\nkeyring = \"{keyring}\"\n"
    )
    config.chmod(0o600)
    print(config.read_text().rstrip())
    # the token is read from stdin here (a hidden prompt at a terminal), kept in the kernel
    # keyring for the login session, never written to disk
    show([str(BIN / "broker"), "backend", "login", "onepassword"], env,
         stdin=account.token + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
