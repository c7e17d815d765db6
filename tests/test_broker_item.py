"""A profile's ``broker_item`` in the core, in process: the key it adds to ~/.aws/config,
its shape checked when the file is read, the backend it binds to, and the use cases
(`add --item`, `adopt`, `list`, the writes refused until adoption).

The store is :class:`Kept`, an in-memory backend that serves bound profiles from items
kept under their own titles (``kept://VAULT/ITEM`` or a title), the way the onepassword
plugin serves 1Password items (tested against its emulator in
tests/plugins/onepassword/test_bound_items*.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from broker.aws.profiles import item_reference_problem, parse, resolve_chain
from broker.backend import ACCESS_KEY_ID, MFA_SERIAL, SECRET_ACCESS_KEY, TOTP, Item
from broker.errors import (
    ConfigError,
    CredentialsNotFound,
    NotFound,
    UsageError,
)
from broker.services import keys
from broker.services import listing as list_service
from broker.services.context import Context
from broker.services.credentials import StoredKey, device_kept_with_key
from broker.testing.context import memory_context
from broker.testing.memory import MemoryBackend
from tests.conftest import TEST_KEY_ID, TEST_SECRET

SERIAL = "arn:aws:iam::123456789012:mfa/kept"
KEPT = Item({ACCESS_KEY_ID: TEST_KEY_ID, SECRET_ACCESS_KEY: TEST_SECRET, MFA_SERIAL: SERIAL,
             TOTP: "JBSWY3DPEHPK3PXP"})


class Kept(MemoryBackend):
    """Serves bound profiles from the item kept under the title a reference names;
    writes to such an item only once adopted. Counts every read."""

    name: ClassVar[str] = "kept"
    schemes: ClassVar[tuple[str, ...]] = ("kept",)
    reads: ClassVar[list[str]] = []
    adopted: ClassVar[set[str]] = set()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bound: dict[str, str] = {}

    def bind_item(self, name: str, reference: str) -> None:
        scheme, sep, path = reference.partition("://")
        if sep and scheme != "kept":
            raise ConfigError(f"kept: {scheme}:// is not a kept reference", "use kept://")
        self.bound[name] = path.partition("/")[2] if sep else reference

    def get(self, name: str) -> Item | None:
        Kept.reads.append(name)
        title = self.bound.get(name, name)
        item = super().get(title)
        if item is None and name in self.bound:
            raise NotFound(f"kept: no item {title!r}", "fix broker_item")
        return item

    def check_writable(self, name: str) -> None:
        if name in self.bound and self.bound[name] not in Kept.adopted:
            raise UsageError(f"kept: {self.bound[name]!r} is only read",
                             f"run `broker adopt {name}`")

    def set(self, name: str, item: Item, **kwargs: Any) -> None:
        self.check_writable(name)
        super().set(self.bound.get(name, name), item, **kwargs)

    def delete(self, name: str) -> bool:
        self.check_writable(name)
        return super().delete(self.bound.get(name, name))

    def list(self) -> list[str]:
        stored = super().list()
        titles = set(self.bound.values())
        return sorted({n for n in stored if n not in titles}
                      | {n for n, t in self.bound.items() if t in stored})

    def item_identity(self, name: str) -> str | None:
        title = self.bound.get(name, name)
        return f"kept/{title.casefold()}" if name in Kept.reads else None

    def adopt(self, name: str) -> bool:
        title = self.bound.get(name, name)
        if title in Kept.adopted:
            return False
        Kept.adopted.add(title)
        return True


@pytest.fixture(autouse=True)
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No read or adoption carried over; ~/.aws/config, HOME and broker's state in the
    test's directory (use cases read the file again after writing it)."""
    Kept.reads.clear()
    Kept.adopted.clear()
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    for variable, sub in (("HOME", "home"), ("XDG_STATE_HOME", "state"),
                          ("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"),
                          ("XDG_RUNTIME_DIR", "run")):
        (tmp_path / sub).mkdir(mode=0o700)
        monkeypatch.setenv(variable, str(tmp_path / sub))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    for variable in ("BROKER_BACKEND", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(variable, raising=False)


def context(tmp_path: Path, config: str, **kwargs: Any) -> Context:
    """A Context over memory ("memory", the default backend) and Kept ("kept"), with
    ``config`` as ~/.aws/config; the item "Keys" (KEPT) kept in Kept's store."""
    aws = tmp_path / "aws-config"
    aws.write_text(config)
    ctx = memory_context(tmp_path / "config.toml", more={"kept": Kept}, **kwargs)
    ctx.__dict__["aws"] = parse(config, aws)
    ctx.backend("kept").set("Keys", KEPT)
    Kept.reads.clear()
    return ctx


# -- the key in ~/.aws/config ----------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "op://AWS/AWS Access Key", "op://AWS/AWS dev", "AWS Access Key", "my key: prod",
    f"op://{'a' * 26}/{'b' * 26}", "kept://V/x",
])
def test_well_formed_references(value: str) -> None:
    assert item_reference_problem(value) is None


@pytest.mark.parametrize(("value", "why"), [
    ("", "empty"),
    ("op://AWS", "names no item"),
    ("op://AWS/dev/access key id", "names a field"),
    ("op://AWS/dev/AWS/mfa serial", "names a field"),
    ("op://AWS/dev?attribute=totp", "no query"),
    ("op:///dev", "empty"),
    ("op://AWS/", "empty"),
    ("op://AWS/ dev", "blank"),
    ("://AWS/dev", "not a reference scheme"),
    ("o p://AWS/dev", "not a reference scheme"),
    ("AWS\x00key", "control character"),
])
def test_malformed_references(value: str, why: str) -> None:
    wrong = item_reference_problem(value)
    assert wrong is not None and why in wrong
    assert "SCHEME://VAULT/ITEM" in wrong  # the fix, always


def test_the_profile_reads_it_and_records_a_malformed_one() -> None:
    config = parse(
        "[profile a]\nbroker_item = op://AWS/AWS Access Key \n"
        "[profile b]\nbroker_item = op://AWS/x/access key id\n"
        "[profile c]\nbroker_item =\n  nested = 1\n"
        "[profile d]\nregion = eu-west-1\n",
        Path("/home/me/.aws/config"),
    )
    a, b, c, d = (config.profiles[n] for n in "abcd")
    assert a.broker_item == "op://AWS/AWS Access Key" and not a.problems
    assert d.broker_item is None and not d.problems
    assert b.broker_item == "op://AWS/x/access key id"
    (problem,) = b.problems
    assert problem.startswith("/home/me/.aws/config [profile b] broker_item = ")
    with pytest.raises(ConfigError) as caught:
        resolve_chain(config, "b")
    assert "\n" not in str(caught.value) and "[profile b] broker_item" in str(caught.value)
    assert caught.value.hint.startswith("name the item as SCHEME://VAULT/ITEM")
    assert "nested block" in c.problems[0]


def test_include_profile_passes_it_on() -> None:
    config = parse("[profile base]\nbroker_item = Keys\n"
                   "[profile dev]\ninclude_profile = base\n", Path("/c"))
    assert config.profiles["dev"].broker_item == "Keys"


# -- which backend, and the binding ---------------------------------------------------------


def test_a_reference_chooses_the_backend_of_its_scheme(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys\n"
                            "[profile pinned]\nbroker_item = kept://V/Keys\n"
                            "broker_backend = memory\n"
                            "[profile titled]\nbroker_item = Keys\n")
    assert ctx.backend_choice(ctx.aws.get("dev")) == ("kept", "broker_item")
    assert ctx.backend_choice(ctx.aws.get("pinned")) == ("memory", "broker_backend")
    assert ctx.backend_choice(ctx.aws.get("titled")) == ("memory", "config")
    assert ctx.backend_choice(ctx.aws.get("dev"), "memory") == ("memory", "explicit")


def test_the_key_comes_from_the_named_item(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys\n")
    key = StoredKey(ctx, resolve_chain(ctx.aws, "dev"))
    assert key.item() == KEPT and key.serial() == SERIAL
    assert Kept.reads == ["dev"]  # one read serves the key and the device


def test_the_device_kept_with_the_key_only_for_a_named_item() -> None:
    config = parse("[profile named]\nbroker_item = Keys\n[profile own]\n", Path("/c"))
    assert device_kept_with_key(config.profiles["named"], KEPT) == SERIAL
    assert device_kept_with_key(config.profiles["own"], KEPT) is None


def test_a_backend_that_cannot_serve_it_says_so_naming_the_line(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\nbroker_item = Keys\n")  # the default: memory
    with pytest.raises(ConfigError) as caught:
        ctx.credential_backend(ctx.aws.get("dev"))
    text = str(caught.value)
    assert "[profile dev] broker_item = 'Keys'" in text and "memory cannot read" in text
    row = next(p for p in list_service.list_profiles(ctx).profiles if p.name == "dev")
    assert any("memory cannot read" in p for p in row.problems)


def test_a_scheme_not_the_backends_own(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\nbroker_item = other://V/Keys\n"
                            "broker_backend = kept\n")
    with pytest.raises(ConfigError, match=r"\[profile dev\] broker_item .*other://"):
        ctx.credential_backend(ctx.aws.get("dev"))


def test_a_malformed_one_is_refused_before_any_backend_is_asked(tmp_path: Path) -> None:
    from broker.services import credentials

    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys/field\n")
    with pytest.raises(ConfigError, match=r"\[profile dev\] broker_item"):
        credentials.obtain(ctx, "dev")
    assert Kept.reads == []
    with pytest.raises(ConfigError):  # nor served from the cache around the problem
        credentials.cached(ctx, "dev")


def test_list_shows_the_named_item_under_the_profile(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys\n"
                            "[profile gone]\nbroker_item = kept://V/Nothing\n")
    rows = {p.name: p for p in list_service.list_profiles(ctx).profiles}
    assert rows["dev"].stored is True and rows["dev"].backend == "kept"
    assert rows["gone"].stored is False
    assert "Keys" not in rows  # not a profile of its own


def test_list_shows_the_item_s_device_once_the_key_was_read(tmp_path: Path) -> None:
    """`broker list` reads no item: the device an item names shows from the last read of
    the key ("?" before it), and the profiles' own mfa_serial always wins."""
    from broker.aws.mfa_ledger import MfaLedger

    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys\n"
                            "[profile role]\nsource_profile = dev\n"
                            "role_arn = arn:aws:iam::123456789012:role/r\n"
                            "[profile own]\nbroker_item = kept://V/Keys\n"
                            "mfa_serial = arn:aws:iam::123456789012:mfa/own\n"
                            "[profile bare]\nbroker_item = kept://V/Bare\n")
    ctx.backend("kept").set("Bare", Item({ACCESS_KEY_ID: TEST_KEY_ID,
                                          SECRET_ACCESS_KEY: TEST_SECRET}))

    def rows() -> dict[str, tuple[str | None, str]]:
        return {p.name: (p.mfa_serial, p.mfa_source)
                for p in list_service.list_profiles(ctx).profiles}

    assert rows() == {"dev": (None, "?"), "role": (None, "?"), "bare": (None, "?"),
                      "own": ("arn:aws:iam::123456789012:mfa/own", "prompt")}
    assert Kept.reads == []  # listing read no item
    for name in ("dev", "bare"):
        StoredKey(ctx, resolve_chain(ctx.aws, name)).item()
    assert rows() == {"dev": (SERIAL, "stored totp"), "role": (SERIAL, "stored totp"),
                      "bare": (None, ""),
                      "own": ("arn:aws:iam::123456789012:mfa/own", "prompt")}
    ledger = MfaLedger()
    assert ledger.device_kept("kept", "dev") == SERIAL and ledger.device_kept("kept", "bare") == ""
    assert ledger.device_kept("kept", "own") is None  # its own mfa_serial: nothing to keep
    ctx.backend("kept").delete("Keys")  # gone: what it named is no longer known
    with pytest.raises(NotFound):
        StoredKey(ctx, resolve_chain(ctx.aws, "dev")).item()
    assert ledger.device_kept("kept", "dev") is None and rows()["dev"] == (None, "?")


# -- the use cases -----------------------------------------------------------------------------


def test_add_item_writes_broker_item_and_stores_nothing(tmp_path: Path) -> None:
    from broker.testing.memory import MemoryBackend

    MemoryBackend.reset()  # other tests of this process leave items in the shared stores
    ctx = context(tmp_path, "[profile dev]\nregion = eu-west-1\n")
    result = keys.add_item(ctx, "dev", " kept://V/Keys ")
    assert result.reference == "kept://V/Keys" and result.backend == "kept"
    assert result.config_written == tmp_path / "aws-config"
    assert result.backend_pinned is None  # the scheme chooses the backend
    assert result.totp and result.item_mfa_serial == SERIAL and not result.writable
    assert (tmp_path / "aws-config").read_text() == (
        "[profile dev]\nregion = eu-west-1\nbroker_item = kept://V/Keys\n")
    from broker.testing.memory import _STORES

    assert all("dev" not in ns for store in _STORES.values() for ns in store.values())


def test_add_item_pins_the_backend_a_title_lives_in(tmp_path: Path) -> None:
    ctx = context(tmp_path, "")
    result = keys.add_item(ctx, "new", "Keys", backend="kept")
    assert result.section_added is not None and result.backend_pinned is not None
    text = (tmp_path / "aws-config").read_text()
    assert "[profile new]\nbroker_item = Keys\nbroker_backend = kept\n" in text


@pytest.mark.parametrize(("reference", "error"), [
    ("kept://V/Keys/access key id", UsageError),
    ("kept://V/Nothing", NotFound),
    ("other://V/Keys", ConfigError),
])
def test_add_item_refusals_change_nothing(tmp_path: Path, reference: str,
                                          error: type[Exception]) -> None:
    ctx = context(tmp_path, "[profile dev]\n")
    with pytest.raises(error):
        keys.add_item(ctx, "dev", reference, backend="kept")
    assert (tmp_path / "aws-config").read_text() == "[profile dev]\n"


def test_add_item_needs_a_key_in_the_item(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\n")
    ctx.backend("kept").set("Token", Item({"username": "alice"}))
    with pytest.raises(CredentialsNotFound, match="no AWS key"):
        keys.add_item(ctx, "dev", "kept://V/Token")


def test_add_item_over_another_needs_replace(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Old\n")
    with pytest.raises(UsageError, match="--replace"):
        keys.add_item(ctx, "dev", "kept://V/Keys")
    keys.add_item(ctx, "dev", "kept://V/Keys", replace=True)
    assert "broker_item = kept://V/Keys\n" in (tmp_path / "aws-config").read_text()


def test_add_replace_waits_for_adoption(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys\n")
    with pytest.raises(UsageError, match="broker adopt dev"):
        keys.add(ctx, "dev", "AKIANEWKEY0000000001", "new/secret", replace=True)
    assert ctx.backend("kept").get("dev") == KEPT
    assert keys.adopt(ctx, "dev") == keys.Adopted("dev", "kept", True)
    assert keys.adopt(ctx, "dev").changed is False
    keys.add(ctx, "dev", "AKIANEWKEY0000000001", "new/secret", replace=True)
    stored = ctx.backend("kept").get("dev")
    assert stored is not None and stored[ACCESS_KEY_ID] == "AKIANEWKEY0000000001"
    assert stored[TOTP] == KEPT[TOTP]  # the item's other fields kept


def test_adopt_needs_the_key_profile(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys\n"
                            "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/r\n"
                            "source_profile = dev\n")
    with pytest.raises(ConfigError, match="broker adopt dev"):
        keys.adopt(ctx, "role")


def test_a_backend_without_items_to_adopt(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\n")
    with pytest.raises(ConfigError, match="nothing to adopt"):
        keys.adopt(ctx, "dev")


# -- rotate: other profiles holding the same key, the MFA session it reuses ------------------


def _counting_get_many(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...]]]:
    """Every get_many call of any memory backend from now on: (backend, names)."""
    calls: list[tuple[str, tuple[str, ...]]] = []
    real = MemoryBackend.get_many

    def counting(self: MemoryBackend, names: Any) -> dict[str, Item | None]:
        calls.append((self.name, tuple(names)))
        return real(self, names)

    monkeypatch.setattr(MemoryBackend, "get_many", counting)
    return calls


SHARED = """\
[profile dev]
broker_item = kept://V/Keys
[profile twin]
broker_item = kept://V/keys
[profile shell]
broker_item = kept://V/Shell
[profile own]
region = eu-west-1
[profile other]
region = eu-west-1
[profile role]
role_arn = arn:aws:iam::123456789012:role/r
source_profile = dev
"""


def test_rotate_finds_other_profiles_holding_the_key(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Another item (a second broker_item, broker's own item of another profile) holding
    the key is found, with one batched read per backend; the same item named again, and
    a role built on the key, are not counted."""
    from broker.services import rotate

    MemoryBackend.reset()
    ctx = context(tmp_path, SHARED)
    ctx.backend("kept").set("Shell", KEPT)
    ctx.backend("memory").set("own", KEPT)
    ctx.backend("memory").set("other", Item({ACCESS_KEY_ID: "AKIAOTHERKEY00000001",
                                             SECRET_ACCESS_KEY: "x"}))
    calls = _counting_get_many(monkeypatch)
    found = rotate.sharing_profiles(ctx, resolve_chain(ctx.aws, "dev"), "kept", TEST_KEY_ID)
    assert found.holders == ["shell (backend kept)", "own (backend memory)"]
    assert found.unread == {}
    assert sorted(calls) == [("kept", ("shell",)), ("memory", ("own", "other"))]


def test_rotate_knows_the_same_item_named_by_title_and_by_reference(tmp_path: Path) -> None:
    """Two profiles naming one item in different words (its title, a kept:// reference)
    share it, as the backend tells once both were read (item_identity): rotating one
    gives the other the new key, so it is no holder; a copy of the key in another item
    still is."""
    from broker.services import rotate

    MemoryBackend.reset()
    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys\n"
                            "[profile alias]\nbroker_item = Keys\nbroker_backend = kept\n"
                            "[profile copy]\nbroker_item = kept://V/Copy\n")
    ctx.backend("kept").set("Copy", KEPT)
    chain = resolve_chain(ctx.aws, "dev")
    StoredKey(ctx, chain).item()  # rotate reads the rotated key first
    found = rotate.sharing_profiles(ctx, chain, "kept", TEST_KEY_ID)
    assert found.holders == ["copy (backend kept)"] and found.unread == {}


def test_rotate_refuses_before_any_call_when_another_profile_holds_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from broker.aws import iam_keys
    from broker.services import rotate

    MemoryBackend.reset()
    ctx = context(tmp_path, SHARED)
    Kept.adopted.add("Keys")
    ctx.backend("memory").set("own", KEPT)

    def no_call(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("AWS was called")

    monkeypatch.setattr(iam_keys, "caller_identity", no_call)
    monkeypatch.setattr(iam_keys, "create_access_key", no_call)
    with pytest.raises(UsageError) as caught:
        rotate.rotate(ctx, "dev")
    message, hint = caught.value.message, caught.value.hint
    assert caught.value.exit_code == 2
    assert "own (backend memory)" in message and "nothing was changed" in message
    assert "twin" not in message and "role" not in message
    assert "source_profile = dev" in hint and "--force" in hint
    assert ctx.backend("kept").get("dev") == KEPT


def test_rotate_refuses_when_another_profile_cannot_be_read(tmp_path: Path) -> None:
    from broker.services import rotate

    MemoryBackend.reset()
    ctx = context(tmp_path, SHARED)  # shell's item "Shell" does not exist: its read fails
    found = rotate.sharing_profiles(ctx, resolve_chain(ctx.aws, "dev"), "kept", TEST_KEY_ID)
    assert found.holders == [] and list(found.unread) == ["shell"]
    Kept.adopted.add("Keys")
    with pytest.raises(UsageError, match=r"cannot tell whether other profiles .*shell"):
        rotate.rotate(ctx, "dev")


def test_rotate_reuses_exec_s_session_for_the_item_s_device(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """The device comes from the item's ``mfa serial`` (no profile sets mfa_serial): rotate
    asks for the MFA session under the name `exec` cached it, so no new code is needed."""
    from datetime import datetime, timedelta, timezone

    from broker.aws import sts
    from broker.aws.chain import mfa_session_name
    from broker.aws.credentials import Credentials
    from broker.services import rotate

    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys\n")
    chain = resolve_chain(ctx.aws, "dev")
    assert chain.mfa_serial is None
    cached = Credentials("ASIACACHED0000000001", "s", "t",
                         datetime.now(timezone.utc) + timedelta(hours=1))
    ctx.sessions.for_key("dev").put(mfa_session_name(chain), cached)

    def no_call(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a new MFA session was made")

    monkeypatch.setattr(sts, "get_session_token", no_call)
    old = Credentials(TEST_KEY_ID, TEST_SECRET)
    got = rotate._iam_credentials(ctx, chain, KEPT, old, None, None)
    assert got.access_key_id == "ASIACACHED0000000001"


# -- remove: the whole item, and the broker_item line ----------------------------------------


def test_remove_of_a_named_item_deletes_it_and_the_broker_item_line(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys\nregion = eu-west-1\n")
    with pytest.raises(UsageError, match="broker adopt dev"):  # before any prompt
        keys.item_deleted_by_remove(ctx, "dev")
    assert ctx.backend("kept").get("dev") == KEPT
    Kept.adopted.add("Keys")
    assert MemoryBackend.get(ctx.backend("kept"), "Keys") == KEPT
    assert keys.item_deleted_by_remove(ctx, "dev") == "kept://V/Keys"
    assert keys.item_deleted_by_remove(ctx, "dev", backend="memory") is None  # not that item
    removed = keys.remove_key(ctx, "dev")
    assert removed.item == "kept://V/Keys" and removed.backend == "kept"
    assert removed.config_written == tmp_path / "aws-config"
    assert (tmp_path / "aws-config").read_text() == "[profile dev]\nregion = eu-west-1\n"
    assert ctx.aws.get("dev").broker_item is None
    assert MemoryBackend.get(ctx.backend("kept"), "Keys") is None  # the whole item is gone


def test_remove_of_broker_s_own_item_names_no_item(tmp_path: Path) -> None:
    MemoryBackend.reset()
    ctx = context(tmp_path, "[profile own]\n")
    ctx.backend("memory").set("own", KEPT)
    assert keys.item_deleted_by_remove(ctx, "own") is None
    removed = keys.remove_key(ctx, "own")
    assert removed.item is None and removed.config_written is None
    assert (tmp_path / "aws-config").read_text() == "[profile own]\n"


# -- an inline comment on broker_item ----------------------------------------------------------


@pytest.mark.parametrize("line", [
    "broker_item = AWS API cred # the shell plugin item",
    "broker_item = AWS API cred ; the shell plugin item",
    "broker_item = kept://V/My Keys ; mine",
])
def test_an_inline_comment_is_refused_before_any_call(tmp_path: Path, line: str) -> None:
    from broker.services import credentials

    ctx = context(tmp_path, f"[profile dev]\n{line}\n")
    (problem,) = ctx.aws.get("dev").problems
    assert "ends in a comment" in problem and "line of its own" in problem
    with pytest.raises(ConfigError, match="ends in a comment"):
        credentials.obtain(ctx, "dev")
    assert Kept.reads == []
    with pytest.raises(UsageError, match="ends in a comment"):
        keys.add_item(ctx, "new", "AWS API cred # the shell plugin item", backend="kept")


def test_a_title_with_a_hash_but_no_comment_is_kept(tmp_path: Path) -> None:
    ctx = context(tmp_path, "[profile dev]\nbroker_item = AWS#2\n")
    assert ctx.aws.get("dev").problems == []


def test_add_item_over_a_stored_key_needs_replace(tmp_path: Path) -> None:
    MemoryBackend.reset()
    ctx = context(tmp_path, "[profile dev]\n")
    ctx.backend("memory").set("dev", Item({ACCESS_KEY_ID: "AKIAOWNKEY0000000001",
                                           SECRET_ACCESS_KEY: "x"}))
    with pytest.raises(UsageError) as caught:
        keys.add_item(ctx, "dev", "kept://V/Keys")
    assert "backend 'memory'" in caught.value.message and "--replace" in caught.value.hint
    assert (tmp_path / "aws-config").read_text() == "[profile dev]\n"
    keys.add_item(ctx, "dev", "kept://V/Keys", replace=True)
    assert "broker_item = kept://V/Keys\n" in (tmp_path / "aws-config").read_text()


def test_add_and_totp_set_refuse_a_read_only_item_before_reading_anything(
    tmp_path: Path,
) -> None:
    """`add --replace` and `totp set` are refused before the key or seed is asked for."""
    from broker.services import mfa

    ctx = context(tmp_path, "[profile dev]\nbroker_item = kept://V/Keys\n")
    with pytest.raises(UsageError, match="broker adopt dev"):
        keys.check_add(ctx, "dev", replace=True)
    with pytest.raises(UsageError, match="--replace"):
        keys.check_add(ctx, "dev")
    with pytest.raises(UsageError, match="broker adopt dev"):
        mfa.seed_kept(ctx, "dev")
    Kept.adopted.add("Keys")
    keys.check_add(ctx, "dev", replace=True)
    assert mfa.seed_kept(ctx, "dev") is True  # KEPT keeps a seed: --no-verify asks first


def test_add_item_naming_a_missing_item_says_fix_item_and_writes_nothing(tmp_path: Path) -> None:
    config = "[profile dev]\nregion = eu-west-1\n"
    ctx = context(tmp_path, config)
    with pytest.raises(NotFound) as raised:  # exit 14, as for any item not found
        keys.add_item(ctx, "dev", "kept://V/Nope")
    assert raised.value.message == "--item 'kept://V/Nope': kept: no item 'Nope'"
    assert raised.value.hint == (
        "check --item (the vault and the item's title or id); nothing was written")
    assert (tmp_path / "aws-config").read_text() == config
