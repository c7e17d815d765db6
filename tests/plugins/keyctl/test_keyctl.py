"""The keyctl backend against the real kernel keyring, beyond the shared contract."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import broker_keyctl
import pytest
from broker_keyctl import KEY_PERM, KeyctlBackend, _native

from broker.backend import SECRET_ACCESS_KEY, Capability, Item
from broker.errors import BackendError, BackendUnavailable, ConfigError, NotFound
from broker.testing.contract import SAMPLE

MakeBackend = Callable[..., KeyctlBackend]
REPO = Path(__file__).resolve().parents[3]


def _ops() -> _native.KeyOps:
    return broker_keyctl._key_ops()


def _serial_of(backend: KeyctlBackend, name: str) -> int:
    ops = _ops()
    ring = backend._find_ring(ops, backend.namespace, create=False)
    assert ring is not None
    return ops.search(ring, b"user", name.encode(), 0)


def _proc_keys_line(serial: int) -> list[str] | None:
    """The /proc/keys row of a key: id flags usage timeout perm uid gid type description."""
    with open("/proc/keys", encoding="utf-8") as stream:
        for line in stream:
            fields = line.split(None, 8)
            if int(fields[0], 16) == serial:
                return fields
    return None


def _seconds(timeout_column: str) -> int:
    """/proc/keys shows the time left as 42s, 3m, 2h, 5d or 1w."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return int(timeout_column[:-1]) * units[timeout_column[-1]]


def _run_python(script: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,
    )


# -- declarations ----------------------------------------------------------------


def test_declarations() -> None:
    assert KeyctlBackend.name == "keyctl"
    assert KeyctlBackend.capabilities == (
        Capability.LIST | Capability.STORE_SESSIONS | Capability.EXPIRY
        | Capability.SECRET_STORE
    )
    assert Capability.PERSISTENT not in KeyctlBackend.capabilities
    assert KeyctlBackend.priority == 1.0  # after onepassword (3) and pass (2)
    assert "\n" not in KeyctlBackend.description and KeyctlBackend.description
    assert KeyctlBackend.schemes == ("keyctl",)


def test_registered_through_entry_points() -> None:
    from importlib.metadata import entry_points

    for group in ("broker.backends", "broker.references"):
        values = {ep.name: ep.value for ep in entry_points(group=group)}
        assert values.get("keyctl") == "broker_keyctl:KeyctlBackend"


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="parent"):
        KeyctlBackend(settings={"parent": "session"})
    with pytest.raises(ConfigError, match="keyring"):
        KeyctlBackend(settings={"keyring": ""})


def test_keyring_names(make_backend: MakeBackend, keyring_prefix: str) -> None:
    assert make_backend().keyring_name == f"{keyring_prefix}:credentials"
    assert make_backend("sessions").keyring_name == f"{keyring_prefix}:sessions"
    assert KeyctlBackend().keyring_name == "broker:credentials"


# -- where and how items are stored -----------------------------------------------


def test_native_shape_and_permissions(backend: KeyctlBackend) -> None:
    backend.set("dev", SAMPLE)
    ops = _ops()
    ring = backend._find_ring(ops, "credentials", create=False)
    assert ring is not None
    # The keyring sits directly in @u, never in the session keyring.
    assert ring in ops.keyring_serials(broker_keyctl.KEY_SPEC_USER_KEYRING)
    key = _serial_of(backend, "dev")
    key_type, _uid, _gid, perm, description = ops.describe(key).split(";", 4)
    assert (key_type, description) == ("user", "dev")
    assert int(perm, 16) == KEY_PERM
    assert int(ops.describe(ring).split(";")[3], 16) == KEY_PERM
    # The payload is compact JSON of the fields, readable by `keyctl print`.
    payload = ops.read(key)
    assert json.loads(payload) == dict(SAMPLE)
    assert b": " not in payload and b", " not in payload


def test_existing_keyring_is_reused_not_replaced(make_backend: MakeBackend) -> None:
    first = make_backend()
    first.set("one", SAMPLE)
    ring = first._find_ring(_ops(), "credentials", create=False)
    second = make_backend()
    second.set("two", SAMPLE)
    assert second._find_ring(_ops(), "credentials", create=False) == ring
    assert first.list() == ["one", "two"]


def test_update_is_in_place(backend: KeyctlBackend) -> None:
    backend.set("dev", SAMPLE)
    before = _serial_of(backend, "dev")
    backend.set("dev", SAMPLE.replace(note="v2"))
    assert _serial_of(backend, "dev") == before
    got = backend.get("dev")
    assert got is not None and got["note"] == "v2"


def test_list_only_user_keys_and_odd_names(backend: KeyctlBackend) -> None:
    names = ["semi;colon", "ünïcødé", "with space", "a:b/c"]
    for name in names:
        backend.set(name, SAMPLE)
    ops = _ops()
    ring = backend._find_ring(ops, "credentials", create=False)
    assert ring is not None
    ops.add_key(b"keyring", b"not-an-item", b"", ring)  # a nested keyring is not an item
    assert backend.list() == sorted(names)


def test_empty_namespace(backend: KeyctlBackend) -> None:
    assert backend.list() == []
    assert backend.get("nothing") is None
    assert backend.delete("nothing") is False
    assert backend.purge() == 0


def test_bad_names(backend: KeyctlBackend) -> None:
    with pytest.raises(ValueError):
        backend.set("", SAMPLE)
    with pytest.raises(ValueError):
        backend.get("nul\0byte")
    with pytest.raises(BackendError, match="4095"):
        backend.set("x" * 5000, SAMPLE)


def test_malformed_payload_is_reported_without_content(backend: KeyctlBackend) -> None:
    backend.set("dev", SAMPLE)
    ops = _ops()
    ring = backend._find_ring(ops, "credentials", create=False)
    assert ring is not None
    ops.add_key(b"user", b"dev", b"not json: hunter2", ring)
    with pytest.raises(BackendError) as caught:
        backend.get("dev")
    assert "hunter2" not in str(caught.value)
    assert caught.value.hint


def test_describe_and_repr_hide_secrets(backend: KeyctlBackend, keyring_prefix: str) -> None:
    assert backend.describe()["serial"] == "(created on first write)"
    backend.set("dev", SAMPLE)
    facts = backend.describe()
    assert facts["keyring"] == f"{keyring_prefix}:credentials"
    assert facts["parent"] == "user keyring @u"
    assert int(facts["serial"]) > 0
    everything = repr(backend) + json.dumps(facts)
    assert SAMPLE[SECRET_ACCESS_KEY] not in everything


def test_purge(make_backend: MakeBackend) -> None:
    creds, sessions = make_backend(), make_backend("sessions")
    creds.set("dev", SAMPLE)
    sessions.set("dev", SAMPLE)
    serial = _serial_of(creds, "dev")
    assert creds.purge() == 1
    assert creds.get("dev") is None and creds.list() == []
    # The keys are destroyed now, not merely unreachable from @u.
    with pytest.raises(OSError):
        _ops().read(serial)
    assert sessions.get("dev") == SAMPLE
    creds.set("again", SAMPLE)  # a purged namespace comes back on the next write
    assert creds.purge(every_namespace=True) == 2
    assert sessions.get("dev") is None


# -- other processes ---------------------------------------------------------------------


def test_second_process_reads_what_we_wrote(backend: KeyctlBackend, keyring_prefix: str) -> None:
    backend.set("dev", SAMPLE)
    result = _run_python(
        f"""
        import json
        from broker_keyctl import KeyctlBackend
        item = KeyctlBackend(settings={{"keyring": {keyring_prefix!r}}}).get("dev")
        print(json.dumps(dict(item)))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == dict(SAMPLE)


def test_we_read_what_a_second_process_wrote(backend: KeyctlBackend, keyring_prefix: str) -> None:
    result = _run_python(
        f"""
        from broker.backend import Item
        from broker_keyctl import KeyctlBackend
        KeyctlBackend(settings={{"keyring": {keyring_prefix!r}}}).set(
            "from-child", Item(aws_access_key_id="AKIACHILD"))
        """
    )
    assert result.returncode == 0, result.stderr
    assert backend.get("from-child") == Item(aws_access_key_id="AKIACHILD")


def test_process_in_a_fresh_session_keyring_can_read(
    backend: KeyctlBackend, keyring_prefix: str
) -> None:
    """A process whose session keyring does not link @u (``keyctl session -``) does
    not possess the keys; the user permissions we set still let it read them."""
    if _native.load_library() is None:
        pytest.skip(f"{_native.LIBRARY} is needed to join a new session keyring")
    backend.set("dev", SAMPLE)
    result = _run_python(
        f"""
        import ctypes, json
        lib = ctypes.CDLL({_native.LIBRARY!r}, use_errno=True)
        lib.keyctl_join_session_keyring.restype = ctypes.c_int32
        lib.keyctl_join_session_keyring.argtypes = [ctypes.c_char_p]
        assert lib.keyctl_join_session_keyring(None) > 0
        from broker_keyctl import KeyctlBackend
        backend = KeyctlBackend(settings={{"keyring": {keyring_prefix!r}}})
        print(json.dumps({{"item": dict(backend.get("dev")), "names": backend.list()}}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"item": dict(SAMPLE), "names": ["dev"]}


# -- expiry ------------------------------------------------------------------------------


def test_kernel_timeout_is_set_on_session_keys(make_backend: MakeBackend) -> None:
    sessions = make_backend("sessions")
    sessions.set("dev", SAMPLE, expires_at=datetime.now(timezone.utc) + timedelta(seconds=45))
    row = _proc_keys_line(_serial_of(sessions, "dev"))
    assert row is not None
    assert 40 <= _seconds(row[3]) <= 45, row[3]
    # Storing again without an expiry clears the timeout.
    sessions.set("dev", SAMPLE)
    row = _proc_keys_line(_serial_of(sessions, "dev"))
    assert row is not None and row[3] == "perm"
    # Hours away: still the kernel's clock that forgets it.
    sessions.set("dev", SAMPLE, expires_at=datetime.now(timezone.utc) + timedelta(hours=11))
    row = _proc_keys_line(_serial_of(sessions, "dev"))
    assert row is not None and row[3] in ("10h", "11h")


def test_expired_key_vanishes_and_can_be_stored_again(make_backend: MakeBackend) -> None:
    sessions = make_backend("sessions")
    sessions.set("dev", SAMPLE, expires_at=datetime.now(timezone.utc) + timedelta(seconds=0.2))
    serial = _serial_of(sessions, "dev")
    row = _proc_keys_line(serial)
    assert row is not None and row[3] == "1s"  # rounded up, never 0 (which means "never")
    time.sleep(1.6)
    assert sessions.get("dev") is None
    assert sessions.list() == []
    assert sessions.delete("dev") is False
    row = _proc_keys_line(serial)
    assert row is None or row[3] == "expd"
    sessions.set("dev", SAMPLE)  # the refresh after expiry
    assert sessions.get("dev") == SAMPLE


def test_past_expiry_deletes(make_backend: MakeBackend) -> None:
    sessions = make_backend("sessions")
    sessions.set("dev", SAMPLE)
    sessions.set("dev", SAMPLE, expires_at=datetime.now(timezone.utc) - timedelta(seconds=5))
    assert sessions.get("dev") is None
    assert sessions.list() == []


# -- namespaces and parents ----------------------------------------------------------------


def test_namespaces_are_isolated(make_backend: MakeBackend) -> None:
    creds, sessions, secrets = (
        make_backend("credentials"), make_backend("sessions"), make_backend("secrets")
    )
    creds.set("dev", SAMPLE)
    sessions.set("dev", Item(aws_access_key_id="ASIASESSION"))
    assert secrets.get("dev") is None
    assert creds.get("dev") == SAMPLE
    assert sessions.get("dev") == Item(aws_access_key_id="ASIASESSION")
    assert sessions.delete("dev") is True
    assert creds.get("dev") == SAMPLE
    assert sessions.list() == [] and creds.list() == ["dev"]


def test_keyring_prefixes_are_isolated(make_backend: MakeBackend) -> None:
    make_backend().set("dev", SAMPLE)
    other = KeyctlBackend(settings={"keyring": "broker-test-other"})
    assert other.get("dev") is None and other.list() == []


def test_persistent_parent(make_backend: MakeBackend) -> None:
    persistent = make_backend(parent="persistent")
    if not persistent.availability().ok:
        pytest.skip(persistent.availability().reason)
    persistent.set("dev", SAMPLE)
    assert make_backend(parent="persistent").get("dev") == SAMPLE
    # A same-named keyring under @u is a different place, even though the
    # persistent keyring is linked in @u and a search would descend into it.
    user = make_backend()
    assert user.get("dev") is None and user.list() == []
    assert "persistent" in persistent.describe()["parent"]


# -- limits --------------------------------------------------------------------------------


def test_too_large_item_is_refused_without_the_value(backend: KeyctlBackend) -> None:
    backend.set("dev", SAMPLE)
    secret = "S3cr3t" * 7000  # about 42,000 bytes of JSON
    with pytest.raises(BackendError) as caught:
        backend.set("dev", SAMPLE.replace(aws_secret_access_key=secret))
    error = caught.value
    assert "32767" in error.message and "\n" not in str(error)
    assert error.hint
    assert "S3cr3t" not in str(error)
    assert backend.get("dev") == SAMPLE  # the old item is untouched


def test_quota_error_names_the_limit(
    backend: KeyctlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = _ops()

    def over_quota(*args: Any) -> int:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(ops, "add_key", over_quota)
    with pytest.raises(BackendError) as caught:
        backend.set("dev", SAMPLE)
    assert "quota" in caught.value.message and "20000" in caught.value.message
    assert "maxbytes" in caught.value.hint
    assert SAMPLE[SECRET_ACCESS_KEY] not in str(caught.value)


def _system_python() -> str | None:
    """An interpreter another user can run (the venv's may sit under /root)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info >= (3, 10))"],
                capture_output=True, text=True, check=False,
            )
            if probe.stdout.strip() == "True":
                return candidate
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_real_quota_of_an_unprivileged_user(keyring_prefix: str) -> None:
    """A non-root user gets 20,000 bytes: a 25,000-byte item hits EDQUOT in the kernel."""
    python = _system_python()
    if python is None or shutil.which("setpriv") is None:
        pytest.skip("no system python >= 3.10 or no setpriv to run as nobody")
    script = textwrap.dedent(
        f"""
        from broker.backend import Item
        from broker.errors import BackendError
        from broker_keyctl import KeyctlBackend
        backend = KeyctlBackend(settings={{"keyring": {keyring_prefix!r}}})
        try:
            backend.set("big", Item(aws_secret_access_key="Q" * 25000))
        except BackendError as exc:
            print("ERROR", exc)
        else:
            print("STORED")
        finally:
            backend.purge()
        """
    )
    env = {"PYTHONPATH": f"{REPO}:{REPO / 'plugins'}", "PATH": os.environ.get("PATH", "")}
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", script],
        capture_output=True, text=True, timeout=60, check=False, env=env, cwd="/",
    )
    if result.returncode != 0 and "Permission denied" in result.stderr:
        pytest.skip(f"nobody cannot read the source tree: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ERROR keyctl: the kernel key quota is exhausted")
    assert "QQQQ" not in result.stdout


# -- secret references ---------------------------------------------------------------------


def test_resolve_reference(make_backend: MakeBackend) -> None:
    creds = make_backend()  # helpers use the secrets keyring whatever the namespace
    creds.store_secret("op-token", "ops_tokenvalue", None)
    assert creds.resolve("keyctl:op-token") == "ops_tokenvalue"
    assert creds.resolve("keyctl://op-token") == "ops_tokenvalue"
    assert make_backend("secrets").list() == ["op-token"]
    assert creds.list() == []
    assert creds.delete_secret("op-token") is True
    assert creds.delete_secret("op-token") is False
    with pytest.raises(NotFound) as caught:
        creds.resolve("keyctl:op-token")
    assert "broker backend login" in caught.value.hint


def test_missing_reference_is_not_found(make_backend: MakeBackend) -> None:
    with pytest.raises(NotFound) as caught:
        make_backend().resolve("keyctl:absent")
    assert "absent" in caught.value.message
    assert caught.value.hint == "store it first, e.g. with `broker backend login onepassword`"


def test_secret_ttl(make_backend: MakeBackend) -> None:
    backend = make_backend()
    backend.store_secret("short", "v", 3)  # long enough to read back on a busy machine
    assert backend.resolve("keyctl:short") == "v"
    time.sleep(3.6)
    with pytest.raises(NotFound):
        backend.resolve("keyctl:short")
    with pytest.raises(ValueError):
        backend.store_secret("short", "v", 0)


def test_bad_references(backend: KeyctlBackend) -> None:
    for reference in ("op://vault/item/field", "keyctl:", "keyctl"):
        with pytest.raises(ConfigError):
            backend.resolve(reference)


def test_secret_item_without_secret_field(make_backend: MakeBackend) -> None:
    make_backend("secrets").set("odd", Item(other="x"))
    with pytest.raises(NotFound):
        make_backend().resolve("keyctl:odd")


# -- availability --------------------------------------------------------------------------


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOSYS])
def test_blocked_syscalls(
    ops_kind: str, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """Docker's default seccomp profile refuses keyctl(2): say so, with the way out."""
    ops = _ops()

    def blocked(*args: Any) -> int:
        raise OSError(code, os.strerror(code))

    backend = make_backend()
    with monkeypatch.context() as patch:  # undone before the fixtures purge the keyring
        patch.setattr(ops, "_call", blocked)  # the one primitive each layer goes through
        availability = backend.availability()
        with pytest.raises(BackendUnavailable) as caught:
            backend.get("dev")
    assert "seccomp" in str(caught.value)
    assert not availability.ok
    assert "seccomp" in availability.reason
    assert "--security-opt seccomp=unconfined" in availability.reason
    assert "broker backend set pass" in availability.reason
    if code == errno.EPERM:
        assert availability.reason == (
            "keyctl: operation not permitted — running in a container with seccomp? "
            "run with --security-opt seccomp=unconfined or choose another backend "
            "(`broker backend set pass`)"
        )


def test_falls_back_to_syscalls_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _native.load_library("libkeyutils-does-not-exist.so.9") is None
    monkeypatch.setattr(_native, "load_library", lambda name=_native.LIBRARY: None)
    try:
        ops = _native.load()
    except _native.NoKeyOps as exc:
        pytest.skip(str(exc))
    assert ops.kind == "syscall"


def test_no_library_and_no_syscalls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_keyctl, "_OPS", None)
    monkeypatch.setattr(_native, "load_library", lambda name=_native.LIBRARY: None)
    monkeypatch.setattr(_native, "SYSCALL_NUMBERS", {})
    availability = KeyctlBackend().availability()
    assert not availability.ok
    assert "libkeyutils.so.1 not found" in availability.reason
    assert "install keyutils" in availability.reason


def test_not_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_keyctl, "_OPS", None)
    monkeypatch.setattr(sys, "platform", "darwin")
    availability = KeyctlBackend().availability()
    assert not availability.ok and "only on Linux" in availability.reason


def test_quota_exhausted(keyring_available: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_keyctl, "_quota_left", lambda uid: (0, 120))
    availability = KeyctlBackend().availability()
    assert not availability.ok and "quota" in availability.reason


def test_quota_is_read_from_proc(keyring_available: None) -> None:
    left = broker_keyctl._quota_left(os.getuid())
    assert left is not None and left[0] > 0 and left[1] > 0


def test_availability_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(broker_keyctl, "_key_ops", broken)
    availability = KeyctlBackend().availability()
    assert not availability.ok and "boom" in availability.reason


# -- import cost -----------------------------------------------------------------------------


HEAVY = ("boto3", "botocore", "click", "gnupg", "onepassword", "pydantic", "pyotp", "subprocess")


def test_import_is_light() -> None:
    result = _run_python(
        """
        import json, sys, time
        start = time.perf_counter()
        import broker_keyctl
        imported = time.perf_counter()
        loaded_at_import = sorted(sys.modules)
        broker_keyctl.KeyctlBackend(settings={"keyring": "broker-test-import"}).get("x")
        used = time.perf_counter()
        print(json.dumps({"at_import": loaded_at_import, "after_use": sorted(sys.modules),
                          "import_ms": (imported - start) * 1000,
                          "first_use_ms": (used - imported) * 1000}))
        """
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for modules in (report["at_import"], report["after_use"]):
        heavy = [m for m in modules if m.split(".")[0] in HEAVY]
        assert not heavy, f"broker_keyctl pulled in {heavy}"
    # ctypes is loaded on the first keyring operation, not at import.
    assert "ctypes" not in report["at_import"]
    assert "broker_keyctl._native" in report["after_use"]
    # Generous bounds (a loaded CI machine): catching a heavy import, not micro-timing.
    assert report["first_use_ms"] < 100, report
