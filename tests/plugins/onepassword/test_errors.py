"""Every failure becomes one broker error with its own message, hint and exit code."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from broker_onepassword import OnePasswordBackend, _platform
from broker_onepassword._sdk import AccessDenied, VersionConflict, translate
from broker_onepassword.testing import OnePasswordEmulator, field, make_token

from broker.errors import (
    AmbiguousMatch,
    AppLocked,
    AuthenticationError,
    BackendError,
    BackendUnavailable,
    BrokerError,
    ConfigError,
    NetworkError,
    NotFound,
    RateLimited,
)
from broker.testing.contract import SAMPLE
from tests.support.resolvers import KeptTokens

SECRET = SAMPLE["aws_secret_access_key"]


def no_secret_in(error: BaseException, *secrets: str) -> None:
    text = f"{error} {getattr(error, 'hint', '')} {error!r}"
    for secret in secrets:
        assert secret not in text


def test_rate_limit(emulator: OnePasswordEmulator,
                    make_backend: Callable[..., OnePasswordBackend]) -> None:
    make_backend().set("dev", SAMPLE)
    emulator.inject("rate_limit", op="ItemsGet")
    backend = make_backend()
    with pytest.raises(RateLimited) as caught:
        backend.get("dev")
    error = caught.value
    assert error.exit_code == 12
    assert "rate limit" in error.message
    assert "hour" in error.hint and "`op service-account ratelimit`" in error.hint
    no_secret_in(error, emulator.token, SECRET)
    # A refused call is not a stale id: the id is still remembered.
    assert backend.state.item_id(emulator.vault_id(), "AWS dev") is not None
    assert make_backend().get("dev") == SAMPLE


def test_rate_limit_while_writing(emulator: OnePasswordEmulator,
                                  make_backend: Callable[..., OnePasswordBackend]) -> None:
    emulator.inject("rate_limit", op="ItemsCreate")
    with pytest.raises(RateLimited) as caught:
        make_backend().set("dev", SAMPLE)
    no_secret_in(caught.value, emulator.token, SECRET, SAMPLE["totp"])


@pytest.mark.parametrize("op", ["init_client", "ItemsList"])
def test_invalid_token(emulator: OnePasswordEmulator,
                       make_backend: Callable[..., OnePasswordBackend], op: str) -> None:
    emulator.inject("invalid_token", op=op)
    with pytest.raises(AuthenticationError) as caught:
        make_backend().list()
    assert caught.value.exit_code == 8
    assert "token was rejected" in caught.value.message
    assert "OP_SERVICE_ACCOUNT_TOKEN" in caught.value.hint
    assert "broker backend login onepassword" in caught.value.hint
    no_secret_in(caught.value, emulator.token)


def test_revoked_and_unknown_tokens(emulator: OnePasswordEmulator,
                                    make_backend: Callable[..., OnePasswordBackend],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    backend = make_backend()
    backend.list()
    emulator.revoke_token(emulator.token)
    with pytest.raises(AuthenticationError):
        backend.list()  # revoked while signed in
    stranger = make_token()
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", stranger)
    with pytest.raises(AuthenticationError) as caught:
        make_backend().list()
    no_secret_in(caught.value, stranger)


@pytest.mark.parametrize("token", ["garbage", "ops_!!!", "ops_bm90IGpzb24"])
def test_malformed_token_fails_locally(emulator: OnePasswordEmulator,
                                       make_backend: Callable[..., OnePasswordBackend],
                                       monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    monkeypatch.setenv("OP_SERVICE_ACCOUNT_TOKEN", token)
    backend = make_backend()
    if not token.startswith("ops_"):
        assert not backend.availability().ok
        assert "ops_" in backend.availability().reason
    with pytest.raises(AuthenticationError) as caught:
        backend.list()
    no_secret_in(caught.value, token)
    assert emulator.operations() == 0  # nothing reached "1Password"


@pytest.mark.parametrize(("kind", "op"), [("network", "init_client"), ("network", "ItemsList"),
                                          ("timeout", "VaultsList")])
def test_network(emulator: OnePasswordEmulator,
                 make_backend: Callable[..., OnePasswordBackend], kind: str, op: str) -> None:
    emulator.inject(kind, op=op)
    with pytest.raises(NetworkError) as caught:
        make_backend().list()
    assert caught.value.exit_code == 13
    assert "cannot reach 1Password" in caught.value.message
    assert "network" in caught.value.hint


def test_call_that_never_returns_times_out(emulator: OnePasswordEmulator,
                                           make_backend: Callable[..., OnePasswordBackend]
                                           ) -> None:
    emulator.inject("hang", op="ItemsList", seconds=3)
    backend = make_backend(timeout=0.3)
    with pytest.raises(NetworkError, match=r"did not answer within 0\.3 s"):
        backend.list()
    assert backend.list() == []  # a fresh loop and client: the next call works


def test_permission_denied(emulator: OnePasswordEmulator,
                           make_backend: Callable[..., OnePasswordBackend]) -> None:
    emulator.inject("permission", op="ItemsList")
    with pytest.raises(AccessDenied) as caught:
        make_backend(vault=emulator.vault_id()).list()
    assert isinstance(caught.value, BackendError) and caught.value.exit_code == 6
    hint = caught.value.hint
    # Vault access is fixed when a service account is made: the only way is a new one.
    assert "create a new service account with read and write access" in hint
    assert "give the service account" not in hint
    assert "write_items" in hint and "default Shared vault" in hint and "Employee" in hint


def test_permission_denied_names_the_vault(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    emulator.inject("permission", op="ItemsCreate")
    with pytest.raises(AccessDenied) as caught:
        make_backend(vault="Broker").set("dev", SAMPLE)
    assert "read and write access to the vault Broker" in caught.value.hint
    assert "'Broker:read_items,write_items'" in caught.value.hint


def test_internal_error(emulator: OnePasswordEmulator,
                        make_backend: Callable[..., OnePasswordBackend]) -> None:
    emulator.inject("internal", op="ItemsList")
    with pytest.raises(BackendError) as caught:
        make_backend().list()
    assert type(caught.value) is BackendError and caught.value.exit_code == 6


def test_vault_not_found(emulator: OnePasswordEmulator,
                         make_backend: Callable[..., OnePasswordBackend]) -> None:
    with pytest.raises(NotFound) as caught:
        make_backend(vault="Nope").get("dev")
    assert caught.value.exit_code == 14
    assert "'Nope'" in caught.value.message and "'Broker'" in caught.value.message
    assert "Private" not in caught.value.message  # a service account cannot see it
    hint = caught.value.hint
    assert "create a new service account with read and write access to the vault Nope" in hint
    assert "Developer > Directory" in hint and "must exist before the account" in hint


def test_vault_id_not_found(emulator: OnePasswordEmulator,
                            make_backend: Callable[..., OnePasswordBackend]) -> None:
    with pytest.raises(NotFound):
        make_backend(vault="a" * 26).get("dev")


def test_several_vaults_with_the_name(emulator: OnePasswordEmulator,
                                      make_backend: Callable[..., OnePasswordBackend]) -> None:
    other = emulator.add_vault("Broker")
    with pytest.raises(AmbiguousMatch) as caught:
        make_backend().get("dev")
    assert other in caught.value.message and emulator.vault_id() in caught.value.message
    assert caught.value.exit_code == 15


def test_no_token_anywhere(emulator: OnePasswordEmulator,
                           make_backend: Callable[..., OnePasswordBackend],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OP_SERVICE_ACCOUNT_TOKEN")
    resolver = KeptTokens()  # `backend login` keeps tokens there; none is kept

    for backend in (make_backend(), make_backend(resolver=resolver)):
        availability = backend.availability()
        assert not availability.ok
        assert "OP_SERVICE_ACCOUNT_TOKEN" in availability.reason
        assert "broker backend login onepassword" in availability.reason
        with pytest.raises(AuthenticationError) as caught:
            backend.get("dev")
        assert "OP_SERVICE_ACCOUNT_TOKEN" in caught.value.hint
        assert "broker backend login onepassword" in caught.value.hint
    assert "test:onepassword-token" in resolver.asked
    assert emulator.calls() == {}


def test_token_kept_in_the_keyring(emulator: OnePasswordEmulator,
                                   make_backend: Callable[..., OnePasswordBackend],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    token = emulator.token
    monkeypatch.delenv("OP_SERVICE_ACCOUNT_TOKEN")
    backend = make_backend(resolver=KeptTokens({"test:onepassword-token": token}))
    assert backend.availability().ok
    backend.set("dev", SAMPLE)
    assert backend.get("dev") == SAMPLE


def test_token_setting_is_a_reference(emulator: OnePasswordEmulator,
                                      make_backend: Callable[..., OnePasswordBackend],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OP_SERVICE_ACCOUNT_TOKEN")
    resolver = {"test:op-token": emulator.token}.__getitem__
    assert make_backend(token="test:op-token", resolver=resolver).list() == []
    with pytest.raises(ConfigError, match="secret reference"):
        make_backend(token=emulator.token, resolver=resolver).list()
    unset = make_backend(token="env:MY_OP_TOKEN")
    assert not unset.availability().ok and "MY_OP_TOKEN" in unset.availability().reason


@pytest.mark.parametrize("problem", ["glibc", "arch"])
def test_native_core_unavailable(emulator: OnePasswordEmulator,
                                 make_backend: Callable[..., OnePasswordBackend],
                                 monkeypatch: pytest.MonkeyPatch, problem: str) -> None:
    monkeypatch.setattr(_platform, "_NATIVE_PROBLEM", [])
    if problem == "glibc":
        monkeypatch.setattr(_platform, "glibc_version", lambda: (2, 31))
    else:
        monkeypatch.setattr(_platform, "machine", lambda: "riscv64")
    backend = make_backend()
    availability = backend.availability()
    assert not availability.ok
    assert ("glibc 2.34" in availability.reason) if problem == "glibc" else (
        "riscv64" in availability.reason)
    with pytest.raises(BackendUnavailable) as caught:
        backend.get("dev")
    assert caught.value.exit_code == 7
    assert emulator.calls() == {}


def test_exit_codes_are_distinct() -> None:
    classes = [AuthenticationError, RateLimited, NetworkError, NotFound, AmbiguousMatch,
               AppLocked, BackendUnavailable, BackendError]
    assert len({c.exit_code for c in classes}) == len(classes)


# The native core's own messages (from the library and from reported issues).
REAL_MESSAGES = [
    ("invalid user input: encountered the following errors: service account token had "
     "invalid format", AuthenticationError),
    ("invalid service account token, please make sure you provide a valid service account "
     "token as parameter:  service account deserialization failed, please create another "
     "token", AuthenticationError),
    ("authentication error: bad service account token, please rotate it: ", AuthenticationError),
    ("authentication error: you are not authenticated", AuthenticationError),
    ("error when retrieving vault metadata: http error: unexpected http status: 401 "
     "Unauthorized", AuthenticationError),
    ("authentication error: request library compatibility issue, check that your environment "
     "uses compatible versions: reqwest library: error sending request for url <url>",
     NetworkError),
    ("authentication error: request library compatibility issue, check that the your "
     "environment uses compatible versions: reqwest library: error sending request for url "
     "(<redacted URL>)", NetworkError),
    ("request timeout", NetworkError),
    ("authentication error: you don't have the right permissions to access this resource",
     AccessDenied),
    ("error resolving secret reference: no item matched the secret reference query", NotFound),
    ("error resolving secret reference: no vault matched the secret reference query", NotFound),
    ("error resolving secret reference: more than one item matched the secret reference query",
     AmbiguousMatch),
    ("error resolving secret reference: the specified field cannot be found within the item",
     NotFound),
    ("error resolving secret reference: TOTP attribute can only be applied to TOTP-type fields",
     ConfigError),
    ("the secret reference could not be parsed: secret reference is not prefixed with \"op://\"",
     ConfigError),
    ("item couldn't be found", NotFound),
    ("vault couldn't be found", NotFound),
    ("resource not found", NotFound),
    ("rate limit exceeded", RateLimited),
    ("a conflict occurred on the server; please retry", VersionConflict),
    ("an internal error occurred, please contact 1Password: invalid client id", BackendError),
]


@pytest.mark.parametrize(("message", "expected"), REAL_MESSAGES)
def test_translate_real_messages(emulator: OnePasswordEmulator, message: str,
                                 expected: type[BrokerError]) -> None:
    error = translate(Exception(message), "testing", desktop=False, secrets=[])
    assert type(error) is expected, (message, error)
    assert error.hint


def test_translate_typed_exceptions(emulator: OnePasswordEmulator) -> None:
    import onepassword

    assert isinstance(translate(onepassword.RateLimitExceededException("x"), "t", desktop=False,
                                secrets=[]), RateLimited)
    assert isinstance(translate(onepassword.DesktopSessionExpiredException("x"), "t",
                                desktop=True, secrets=[]), AppLocked)
    glibc = OSError("/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found "
                    "(required by libop_uniffi_core.so)")
    assert isinstance(translate(glibc, "t", desktop=False, secrets=[]), BackendUnavailable)
    assert isinstance(translate(ImportError("arch"), "t", desktop=False, secrets=[]),
                      BackendUnavailable)
    assert isinstance(translate(FileNotFoundError("1Password desktop application not found"),
                                "t", desktop=True, secrets=[]), AppLocked)


def test_translate_masks_secrets(emulator: OnePasswordEmulator) -> None:
    token = emulator.token
    error = translate(Exception(f"something odd about {token} and {SECRET}"), "testing",
                      desktop=False, secrets=[token, SECRET])
    no_secret_in(error, token, SECRET)
    assert "***" in error.message


def test_validation_errors_never_quote_values(emulator: OnePasswordEmulator) -> None:
    import pydantic

    class Model(pydantic.BaseModel):
        number: int

    try:
        Model(number=SECRET)  # type: ignore[arg-type]
    except pydantic.ValidationError as exc:
        error = translate(exc, "reading", desktop=False, secrets=[])
    no_secret_in(error, SECRET)


def test_network_error_with_the_redacted_url(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    emulator.inject("network", op="ItemsList")
    with pytest.raises(NetworkError) as caught:
        make_backend().list()
    assert caught.value.message.endswith("error sending request for url (<redacted URL>)")


def test_a_server_side_conflict_is_retried_once(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    backend = make_backend()
    backend.set("dev", SAMPLE)
    emulator.reset_calls()
    emulator.inject("conflict", op="ItemsPut", times=1)
    changed = SAMPLE.replace(mfa_serial="arn:aws:iam::123456789012:mfa/other")
    backend.set("dev", changed)
    assert make_backend().get("dev") == changed
    assert emulator.calls()["ItemsPut"] == 2
    emulator.inject("conflict", op="ItemsPut", times=2)
    with pytest.raises(VersionConflict):
        backend.set("dev", SAMPLE)  # twice in a row: reported, not retried forever


def test_unknown_desktop_account_names_the_setting(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OP_SERVICE_ACCOUNT_TOKEN")
    emulator.desktop(installed=True, accounts=["me@example.com"])
    with pytest.raises(NotFound) as caught:
        make_backend(account="nobody@example.com", vault="Private").list()
    assert "`account` setting" in caught.value.message
    assert "[backends.onepassword] account" in caught.value.hint
    assert "vault, item" not in caught.value.hint


@pytest.mark.parametrize(("detail", "which", "when"), [
    ("hourly limit reached, try again in 42 minutes", "hourly limit of this service-account "
     "token", "frees up in 42 minutes"),
    ("daily limit reached; retry after 5 hours", "daily limit of the 1Password account",
     "frees up in 5 hours"),
    ("per day", "daily limit", "within 24 hours (a rolling window)"),
    (None, "did not say whether the hourly token limit or the daily account limit",
     "`op service-account ratelimit` shows which"),
])
def test_rate_limit_says_which_and_when(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend],
    detail: str | None, which: str, when: str,
) -> None:
    emulator.inject("rate_limit", op="ItemsList", detail=detail)
    with pytest.raises(RateLimited) as caught:
        make_backend().list()
    assert which in caught.value.message and when in caught.value.message
    assert "rolling 24-hour window" in caught.value.hint


@pytest.mark.parametrize("seed", ["ABCDEFGH", "not-base32-at-all-0189"])
def test_a_seed_1password_refuses(emulator: OnePasswordEmulator,
                                  make_backend: Callable[..., OnePasswordBackend],
                                  seed: str) -> None:
    with pytest.raises(BackendError) as caught:
        make_backend().set("dev", SAMPLE.replace(totp=seed))
    assert "refused the one-time password seed" in caught.value.message
    assert "base32" in caught.value.hint and "broker totp set" in caught.value.hint
    no_secret_in(caught.value, seed, SECRET)
    assert emulator.items() == []


def test_a_vault_the_service_account_may_only_read(
    emulator: OnePasswordEmulator, make_backend: Callable[..., OnePasswordBackend]
) -> None:
    """Read, yes; a write is refused by 1Password itself (no injected fault), and the
    error says a new service account with write access is the way."""
    emulator.add_vault("ReadOnly", service_account_access="read")
    emulator.create_item("AWS dev", [field("access key id", "AKIAREADONLY00000001"),
                                     field("secret access key", "s", "Concealed")],
                         vault="ReadOnly", tags=["broker"])
    backend = make_backend(vault="ReadOnly")
    assert backend.list() == ["dev"]
    with pytest.raises(AccessDenied) as caught:
        backend.set("other", SAMPLE)
    assert caught.value.exit_code == 6
    assert "read and write access to the vault ReadOnly" in caught.value.hint
    with pytest.raises(AccessDenied):
        backend.delete("dev")
    assert backend.list() == ["dev"]  # nothing changed
