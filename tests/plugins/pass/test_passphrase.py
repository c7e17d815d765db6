"""Where the GPG passphrase comes from, where it goes, and what a wrong one does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from broker_pass import PassBackend
from broker_pass._gpg import gpg_environment, terminal_name

from broker.backend import Item
from broker.errors import AuthenticationError, ConfigError
from broker.registry import Registry
from broker.secrets import ReferenceResolver

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ITEM = Item(aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key=SECRET)


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*")) if p.is_file()
    }


class Recorder:
    """A resolver for a made-up scheme that counts its calls."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.calls: list[str] = []

    def __call__(self, reference: str) -> str:
        self.calls.append(reference)
        return self.value


def test_passphrase_from_a_made_up_scheme(store: Any) -> None:
    store.backend().set("dev", ITEM)
    resolver = Recorder(store.keys.one.passphrase)
    backend = PassBackend(settings={"passphrase": "vault://gpg/passphrase"}, resolver=resolver)
    assert backend.get("dev") == ITEM
    assert backend.get("dev") == ITEM
    assert backend.resolve("pass:broker/dev") == SECRET
    # resolved once for the instance (one 1Password read per command, not per entry)
    assert resolver.calls == ["vault://gpg/passphrase"]
    backend.close()
    assert backend.get("dev") == ITEM
    assert len(resolver.calls) == 2
    assert store.keys.one.passphrase not in repr(backend)


def test_a_trailing_newline_from_the_source_is_not_part_of_it(store: Any) -> None:
    store.backend().set("dev", ITEM)
    resolver = Recorder(store.keys.one.passphrase + "\n")
    assert PassBackend(settings={"passphrase": "x:y"}, resolver=resolver).get("dev") == ITEM


def test_passphrase_from_env_through_the_reference_resolver(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.backend().set("dev", ITEM)
    monkeypatch.setenv("BROKER_TEST_GPG_PASSPHRASE", store.keys.one.passphrase)
    settings = {"passphrase": "env:BROKER_TEST_GPG_PASSPHRASE"}
    resolver = ReferenceResolver(Registry({"pass": settings}))
    assert PassBackend(settings=settings, resolver=resolver).get("dev") == ITEM
    # and pass: references resolve through the registry's entry point, recursively
    assert resolver.resolve("pass:broker/dev") == SECRET
    monkeypatch.delenv("BROKER_TEST_GPG_PASSPHRASE")
    with pytest.raises(ConfigError, match="BROKER_TEST_GPG_PASSPHRASE is not set"):
        PassBackend(settings=settings, resolver=resolver).get("dev")


def test_wrong_passphrase_is_an_authentication_error_and_writes_nothing(store: Any) -> None:
    subprocess.run(["git", "-C", str(store.store), "init", "-q"], check=True)
    backend = store.backend()
    backend.set("dev", ITEM)
    before = files(store.store)
    wrong = PassBackend(
        settings={"passphrase": "test:wrong"}, resolver=Recorder("not the passphrase")
    )
    with pytest.raises(AuthenticationError) as raised:
        wrong.get("dev")
    error = raised.value
    assert error.exit_code == 8
    assert "rejected" in error.message and "broker/dev" in error.message
    # the hint names the setting; the made-up test: scheme is no installed plugin's, so the
    # value is not echoed (a secret typed where a reference belongs never is)
    assert "passphrase = " in error.hint and "test:wrong" not in error.hint
    assert "\n" not in str(error)
    assert "not the passphrase" not in str(error) and SECRET not in str(error)
    with pytest.raises(AuthenticationError):
        wrong.resolve("pass:broker/dev")
    assert files(store.store) == before  # nothing written, no temp file, no commit


def test_a_typed_passphrase_rejected_is_said_to_be_the_one_typed(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``prompt:`` passphrase points to no stored secret: the error says the one typed
    was rejected and names the key it must unlock; each retry line is broker's."""
    from broker import tty

    written: list[str] = []
    monkeypatch.setattr(tty, "write", written.append)
    store.backend().set("dev", ITEM)
    typed = Recorder("not the passphrase")
    backend = PassBackend(settings={"passphrase": "prompt:GPG passphrase"}, resolver=typed)
    with pytest.raises(AuthenticationError) as raised:
        backend.get("dev")
    error = raised.value
    assert error.message == (
        "pass: the GPG passphrase typed was rejected while decrypting broker/dev"
    )
    assert "run the command again and type the passphrase" in error.hint
    assert f"`gpg --list-secret-keys {store.keys.one.subkey_id}`" in error.hint
    assert "points to" not in error.hint and "not the passphrase" not in str(error)
    assert len(typed.calls) == 3
    assert written == [
        "broker: pass: the GPG passphrase was rejected; try again (2 tries left)\n",
        "broker: pass: the GPG passphrase was rejected; try again (1 try left)\n",
    ]


def test_without_pinentry_or_passphrase_the_error_says_what_to_do(store: Any) -> None:
    store.backend().set("dev", ITEM)
    with pytest.raises(AuthenticationError) as raised:
        PassBackend().get("dev")  # gpg-agent would need pinentry; the tests forbid it
    assert "could not ask" in raised.value.message
    assert "passphrase =" in raised.value.hint


NO_TERMINAL_PROBE = """\
from broker_pass import PassBackend
from broker.errors import BrokerError
try:
    PassBackend().get("dev")
except BrokerError as exc:
    print(exc.exit_code, exc)
"""


def test_no_terminal_for_pinentry_is_named_as_such(store: Any) -> None:
    """The real pinentry-curses, no terminal anywhere: gpg says "Inappropriate ioctl for
    device", then "decryption failed: No secret key"; broker names the cause."""
    pinentry = shutil.which("pinentry-curses")
    if pinentry is None:
        pytest.skip("pinentry-curses is not installed")
    store.backend().set("dev", ITEM)
    home = Path(store.gnupghome)
    (home / "gpg.conf").write_text("auto-key-locate local\nno-auto-key-retrieve\n")
    with open(home / "gpg-agent.conf", "a") as conf:
        conf.write(f"pinentry-program {pinentry}\n")
    subprocess.run(["gpgconf", "--homedir", store.gnupghome, "--kill", "gpg-agent"],
                   capture_output=True, timeout=30, check=False)
    env = {k: v for k, v in os.environ.items() if k not in ("GPG_TTY", "DISPLAY")}
    done = subprocess.run([sys.executable, "-c", NO_TERMINAL_PROBE], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, check=True, start_new_session=True)
    code, _, message = done.stdout.strip().partition(" ")
    assert code == "8", done.stdout + done.stderr
    assert "gpg-agent could not ask for the GPG passphrase" in message
    assert "No secret key" not in message


def test_unusable_passphrase_values_are_refused_without_echo(store: Any) -> None:
    store.backend().set("dev", ITEM)
    for value, words in (("", "empty"), ("two\nlines", "line break")):
        with pytest.raises(AuthenticationError, match=words) as raised:
            PassBackend(settings={"passphrase": "x:y"}, resolver=Recorder(value)).get("dev")
        assert "two" not in str(raised.value)


def test_a_value_is_not_accepted_where_a_reference_belongs(env: Any) -> None:
    with pytest.raises(ConfigError, match="secret reference"):
        PassBackend(settings={"passphrase": "hunter2"})


def test_no_reference_is_resolved_when_gpg_agent_can_decrypt_alone(env: Any) -> None:
    # gpg-agent is asked first (its cache, or a key without a passphrase): that spares
    # a 1Password round trip. A key without protection stands in for a warm cache.
    key = env.new_key("Unprotected <u@example.test>", None)
    env.init_store(key.fingerprint)
    env.backend().set("dev", ITEM)

    def refuse(reference: str) -> str:
        raise AssertionError(f"resolved {reference} although gpg-agent needed nothing")

    assert PassBackend(settings={"passphrase": "x:y"}, resolver=refuse).get("dev") == ITEM


def test_the_passphrase_never_appears_in_any_argv(store: Any) -> None:
    """Sample every process's command line while gpg decrypts and encrypts."""
    passphrase = store.keys.one.passphrase.encode()
    seen_gpg = 0
    leaks: list[str] = []
    done = threading.Event()

    def sample() -> None:
        nonlocal seen_gpg
        while not done.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as stream:
                        cmdline = stream.read()
                    with open(f"/proc/{pid}/environ", "rb") as stream:
                        environ = stream.read()
                except OSError:
                    continue
                if b"gpg" in cmdline:
                    seen_gpg += 1
                if passphrase in cmdline or passphrase in environ:
                    leaks.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for i in range(8):
            backend = store.backend()  # a fresh instance resolves the passphrase again
            backend.set(f"dev{i}", ITEM)
            assert backend.get(f"dev{i}") == ITEM
    finally:
        done.set()
        sampler.join(timeout=10)
    assert seen_gpg > 0, "the sampler never saw gpg running"
    assert leaks == []


# -- GPG_TTY ----------------------------------------------------------------------------

PROBE = (
    "from broker_pass._gpg import gpg_environment, terminal_name\n"
    "print(terminal_name(), gpg_environment().get('GPG_TTY'))\n"
)


def run_probe(env: dict[str, str], **kwargs: Any) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, timeout=60, check=True, **kwargs).stdout
    return out.split()


def probe_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "GPG_TTY"}


def test_gpg_tty_is_the_terminal_on_stdin() -> None:
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave)
        assert run_probe(probe_env(), stdin=slave, start_new_session=True) == [name, name]
    finally:
        os.close(master)
        os.close(slave)


def test_gpg_tty_is_found_without_any_terminal_stream() -> None:
    """As under an SDK's credential_process: pipes everywhere, a controlling terminal."""
    master, slave = os.openpty()
    name = os.ttyname(slave)

    def take_terminal() -> None:
        os.setsid()
        os.close(os.open(name, os.O_RDWR))  # the first tty a session leader opens

    try:
        got = run_probe(probe_env(), stdin=subprocess.DEVNULL, preexec_fn=take_terminal)
        assert got == [name, name]
    finally:
        os.close(master)
        os.close(slave)


def test_no_terminal_no_gpg_tty() -> None:
    got = run_probe(probe_env(), stdin=subprocess.DEVNULL, start_new_session=True)
    assert got == ["None", "None"]


def test_an_exported_gpg_tty_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPG_TTY", "/dev/pts/999")
    assert gpg_environment()["GPG_TTY"] == "/dev/pts/999"
    assert terminal_name() is None or terminal_name() != "/dev/pts/999"


def test_the_passphrase_goes_to_gpg_on_stdin_with_loopback(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What python-gnupg runs: the flags that make gpg read fd 0, and no passphrase."""
    import gnupg

    store.backend().set("dev", ITEM)
    commands: list[list[str]] = []
    real_popen = gnupg.Popen

    def recording_popen(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        commands.append(list(cmd))
        return real_popen(cmd, *args, **kwargs)

    monkeypatch.setattr(gnupg, "Popen", recording_popen)
    assert store.backend().get("dev") == ITEM
    decrypts = [c for c in commands if "--decrypt" in c]
    # first gpg-agent alone (no pinentry), then the passphrase through loopback on fd 0
    assert len(decrypts) == 2
    assert decrypts[0][decrypts[0].index("--pinentry-mode") + 1] == "error"
    assert "--passphrase-fd" not in decrypts[0]
    with_passphrase = decrypts[1]
    assert with_passphrase[with_passphrase.index("--pinentry-mode") + 1] == "loopback"
    assert with_passphrase[with_passphrase.index("--passphrase-fd") + 1] == "0"
    assert all(store.keys.one.passphrase not in " ".join(c) for c in commands)
