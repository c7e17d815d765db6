"""Differential test: broker's reading of ``~/.aws/config`` against botocore's.

The AWS CLI and the SDKs in ``broker exec``'s child read the config with botocore, so
botocore is the reference. For every file in ``tests/config_corpus`` (``NAME.ini``, an
optional ``NAME.credentials`` for ``~/.aws/credentials`` and an optional ``NAME.json``
``{"env": {...}}`` of environment variables, ``{corpus}`` standing for the corpus folder):

- the whole file: the profile names (``Session.available_profiles``), the profile used when
  none is named, and a file botocore cannot read at all (broker must refuse it too, naming
  the file, and a BOM by name);
- every profile botocore finds: its values (``get_scoped_config()``), the settings broker
  reads from them, the AssumeRole calls botocore's ``AssumeRoleProvider`` makes (driven
  with a fake STS) against ``broker.aws.chain.plan``, and the STS client each builds for
  the profile (endpoint, region, CA bundle, retries).

A difference fails unless :data:`DELIBERATE` names it, and an id there fails unless
docs/configuration.md documents it (between ``<!-- differences:start -->`` and
``<!-- differences:end -->``). No subprocess, no network.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import botocore.configloader
import botocore.credentials
import botocore.exceptions
import botocore.loaders
import botocore.session
import pytest

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "config_corpus"
DOC = HERE.parent / "docs" / "configuration.md"
DOC_START, DOC_END = "<!-- differences:start -->", "<!-- differences:end -->"

#: Secrets: not compared; a credentials file's must not reach broker at all
#: (check_no_credentials_secret).
SECRET_KEYS = frozenset(
    {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_security_token"}
)
#: String settings broker reads from a profile, by botocore's key names.
TEXT_FIELDS = (
    "region", "mfa_serial", "role_arn", "source_profile", "credential_source",
    "role_session_name", "external_id",
)
#: aws-vault's include_profile fills these (vault/config.go populateFromConfigFile).
INCLUDED_KEYS = (
    "mfa_serial", "role_arn", "external_id", "region", "role_session_name", "duration_seconds",
    "source_profile", "sso_session", "sso_start_url", "sso_region", "sso_account_id",
    "sso_role_name", "web_identity_token_file", "web_identity_token_process",
    "sts_regional_endpoints", "source_identity", "credential_process", "mfa_process",
    "session_tags", "transitive_session_tags",
)
INCLUDE_KEYS = ("include_profile", "parent_profile")
#: Where the long-lived credentials come from, as botocore finds them (see _credential_kind).
REFUSED_KINDS = frozenset({"source", "web-identity", "sso", "login"})
#: AWS's AssumeRole DurationSeconds limits, and role chaining's (STS API reference).
ASSUME_ROLE_RANGE = (900, 43_200)
ROLE_CHAINING_MAX = 3600
STS_CREDS = ("AKIAEXAMPLE", "x")

#: Differences that are broker's design, each documented under its id in
#: docs/configuration.md ("Where broker differs from botocore and aws-vault").
DELIBERATE: dict[str, str] = {
    "mfa-session-first": "GetSessionToken with the MFA device, then AssumeRole with that "
    "session; one MFA device per chain (botocore: the role's own SerialNumber on each "
    "AssumeRole, no MFA for a profile without a role)",
    "mfa-serial-nearest": "the nearest mfa_serial from the target down the chain "
    "(botocore: only the role profile's own)",
    "duration-not-integer": "a duration_seconds int() cannot read fails the profile when used "
    "(botocore drops it silently)",
    "aws-duration-rules": "durations AWS refuses are refused before any call, an intermediate "
    "chained role is capped at 3600 s (botocore sends them as written)",
    "include-profile": "include_profile / parent_profile merged as aws-vault does "
    "(botocore ignores them)",
    "role-own-key": "a role profile without source_profile (or naming itself) is assumed with "
    "its own stored key (botocore: an error unless its keys are in the file)",
    "key-in-store": "the long-lived key comes from broker's store, not from the files "
    "(botocore: from ~/.aws/credentials or config)",
    "refused-sources": "credential_source, web identity and SSO profiles are refused "
    "(botocore gets credentials from them)",
    "credential-process-broker": "a key profile whose credential_process is broker itself is "
    "refused (botocore would run it)",
    "default-region": "a profile without region gets [default]'s (botocore: no region); the "
    "STS calls are compared with the same region on both sides",
    "unusable-value": "an empty role_arn, source_profile, mfa_serial, region or external_id, "
    "one ending in an inline comment or (role_arn, mfa_serial, region) containing a space, "
    "or a nested block where a value belongs, fails the profile when used (botocore sends "
    "it as it is and AWS or the endpoint refuses it)",
}

#: The keys whose empty or nested value broker refuses when used.
UNUSABLE_KEYS = ("role_arn", "source_profile", "mfa_serial", "region", "external_id")


# ---------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    """One corpus file, its optional credentials file and environment."""

    name: str
    config: Path
    credentials: Path | None
    env: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        return self.config.name

    def environ(self, missing: Path) -> dict[str, str]:
        """The AWS_* variables (and any others the sidecar sets) for this case; ``missing``
        is a path that does not exist, for an absent credentials file."""
        values = {
            "AWS_CONFIG_FILE": str(self.config),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.credentials or missing),
        }
        for key, value in self.env:
            values[key] = value.replace("{corpus}", str(CORPUS))
        return values


def _cases() -> list[Case]:
    cases = []
    for config in sorted(CORPUS.glob("*.ini")):
        credentials = config.with_suffix(".credentials")
        sidecar = config.with_suffix(".json")
        env: dict[str, str] = {}
        if sidecar.exists():
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            unknown = set(data) - {"env"}
            assert not unknown, f"{sidecar.name}: unknown keys {sorted(unknown)}"
            env = {str(k): str(v) for k, v in data.get("env", {}).items()}
        cases.append(
            Case(
                name=config.stem,
                config=config,
                credentials=credentials if credentials.exists() else None,
                env=tuple(sorted(env.items())),
            )
        )
    return cases


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with every AWS_* variable removed and ``values`` set, then restored
    (for collection, where monkeypatch is not available)."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            del os.environ[key]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _isolate(monkeypatch: pytest.MonkeyPatch, case: Case, missing: Path) -> None:
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in case.environ(missing).items():
        monkeypatch.setenv(key, value)


def _collected_profiles(case: Case) -> list[str]:
    """botocore's profile names for ``case``; none when botocore cannot read the files."""
    with _environ(case.environ(CORPUS / "no-such-credentials-file")):
        try:
            return list(botocore.session.Session().available_profiles)
        except botocore.exceptions.BotoCoreError:
            return []


CASES = _cases()
PROFILE_PARAMS = [
    pytest.param(case, profile, id=f"{case.name}/{profile}")
    for case in CASES
    for profile in _collected_profiles(case)
]


# ---------------------------------------------------------------------------- helpers


class MissingApi(Exception):
    """broker lacks what this test calls (see the module docstring for the API)."""


def _int_or_none(value: object) -> int | None:
    """``duration_seconds`` as botocore's AssumeRoleProvider reads it: ``int(value)`` or
    nothing at all."""
    if value is None:
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _text_or_none(value: object) -> str | None:
    return _text(value) or None


def _has_static(values: Mapping[str, Any]) -> bool:
    """botocore's ``AssumeRoleProvider._has_static_credentials``."""
    return "aws_access_key_id" in values or "aws_secret_access_key" in values


def _has_role(values: Mapping[str, Any]) -> bool:
    """botocore's ``AssumeRoleProvider._has_assume_role_config_vars``."""
    return "role_arn" in values and "web_identity_token_file" not in values


def _credential_kind(values: Mapping[str, Any]) -> str:
    """Which of botocore's profile credential providers (ProfileProviderBuilder) would give
    a profile's credentials; ``store`` when none would (or only half a key pair is in the
    files, where botocore raises PartialCredentialsError): that key is the one broker keeps
    in its store (see "key-in-store")."""
    if values.get("web_identity_token_file"):
        return "web-identity"
    if "sso_role_name" in values or "sso_account_id" in values:
        return "sso"
    if "aws_access_key_id" in values and "aws_secret_access_key" in values:
        return "file"  # SharedCredentialProvider / ConfigProvider
    if "login_session" in values:
        return "login"
    if "credential_process" in values:
        return "process"
    return "store"


def _kind(marker: str | None) -> str:
    return (marker or "").partition(":")[0]


def _marker_profile(marker: str | None) -> str:
    return (marker or "").partition(":")[2]


def _include_chain(
    profiles: Mapping[str, Mapping[str, Any]], name: str
) -> tuple[list[str], str | None]:
    """The profiles ``name`` includes (aws-vault's include_profile, or parent_profile),
    nearest first, and what breaks the chain: ``loop``, ``missing`` or None."""
    chain: list[str] = []
    seen = [name]
    current: Mapping[str, Any] = profiles.get(name, {})
    while True:
        nxt = next((current[k] for k in INCLUDE_KEYS if _text(current.get(k))), None)
        if nxt is None:
            return chain, None
        if nxt in seen:
            return chain, "loop"
        if nxt not in profiles:
            return chain, "missing"
        seen.append(nxt)
        chain.append(nxt)
        current = profiles[nxt]


def _with_includes(profiles: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The profiles as aws-vault reads them: a value missing or empty in a profile is taken
    from the profiles it includes (nearest first). Used as the reference wherever a file
    uses include_profile ("include-profile")."""
    result: dict[str, dict[str, Any]] = {}
    for name, values in profiles.items():
        merged = dict(values)
        included, _broken = _include_chain(profiles, name)
        for other in included:
            for key in INCLUDED_KEYS:
                if not merged.get(key) and profiles[other].get(key):
                    merged[key] = profiles[other][key]
        result[name] = merged
    return result


def _uses_includes(profiles: Mapping[str, Mapping[str, Any]]) -> bool:
    return any(_text(v.get(k)) for v in profiles.values() for k in INCLUDE_KEYS)


def documented_ids() -> set[str]:
    """The ids in the first column of the table between the markers in configuration.md."""
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    start, end = text.find(DOC_START), text.find(DOC_END)
    if start < 0 or end < start:
        return set()
    ids = set()
    for line in text[start:end].splitlines():
        match = re.match(r"\s*\|\s*`?([a-z0-9][a-z0-9-]*)`?\s*\|", line)
        if match and match.group(1) != "id":
            ids.add(match.group(1))
    return ids


# ---------------------------------------------------------------------------- botocore's view


@dataclass
class Call:
    """One AssumeRole call: what was sent, and which credentials signed it (a marker:
    ``file:P``, ``store:P``, ``process:P``, ``source:NAME``, ``role:N`` for the N-th
    call's role session, ...)."""

    role_arn: str
    duration: int | None
    serial: str | None
    external_id: str | None
    session_name: str | None  # None: botocore generated one
    signer: str


@dataclass
class ChainView:
    key: str | None = None  # marker of the credentials that start the chain
    calls: list[Call] = field(default_factory=list)
    error: str | None = None


@dataclass
class ClientView:
    settings: dict[str, Any] | None = None
    error: str | None = None


class _FakeSts:
    """An STS client that records AssumeRole and answers with marked credentials."""

    def __init__(self, calls: list[Call], signer: str) -> None:
        self._calls = calls
        self._signer = signer

    def assume_role(self, **params: Any) -> dict[str, Any]:
        index = len(self._calls)
        name = params.get("RoleSessionName")
        self._calls.append(
            Call(
                role_arn=params["RoleArn"],
                duration=params.get("DurationSeconds"),
                serial=params.get("SerialNumber"),
                external_id=params.get("ExternalId"),
                session_name=None if str(name).startswith("botocore-session-") else name,
                signer=self._signer,
            )
        )
        expiry = datetime.now(timezone.utc) + timedelta(hours=24)
        return {
            "Credentials": {
                "AccessKeyId": f"role:{index}",
                "SecretAccessKey": "x",
                "SessionToken": "t",
                "Expiration": expiry.isoformat(),
            }
        }


class _ProfileCredentials(botocore.credentials.CredentialProvider):
    """Stands for botocore's profile providers (web identity, SSO, credentials file,
    process, config file): returns credentials marked with where they would come from."""

    METHOD = "corpus-profile"

    def __init__(self, config: Mapping[str, Any], profile: str) -> None:
        super().__init__()
        self._config = config
        self._profile = profile

    def load(self) -> botocore.credentials.Credentials:
        values = self._config["profiles"].get(self._profile, {})
        kind = _credential_kind(values)
        return botocore.credentials.Credentials(f"{kind}:{self._profile}", "x")


class _ProfileProviders:
    """Stands for botocore's ProfileProviderBuilder."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = config

    def providers(
        self, profile_name: str, disable_env_vars: bool = False
    ) -> list[botocore.credentials.CredentialProvider]:
        return [_ProfileCredentials(self._config, profile_name)]


class _NamedSource(botocore.credentials.CredentialProvider):
    """A credential_source provider (Environment, Ec2InstanceMetadata, EcsContainer)."""

    def __init__(self, real: type[botocore.credentials.CredentialProvider]) -> None:
        super().__init__()
        self.METHOD = real.METHOD
        self.CANONICAL_NAME = real.CANONICAL_NAME

    def load(self) -> botocore.credentials.Credentials:
        return botocore.credentials.Credentials(f"source:{self.CANONICAL_NAME}", "x")


def botocore_chain(config: Mapping[str, Any], profile: str) -> ChainView:
    """The AssumeRole calls botocore's AssumeRoleProvider makes for ``profile`` of the
    loaded ``config`` (``Session.full_config``), with a fake STS."""
    calls: list[Call] = []

    def client_creator(service_name: str, **kwargs: Any) -> _FakeSts:
        assert service_name == "sts"
        return _FakeSts(calls, kwargs["aws_access_key_id"])

    sourcer = botocore.credentials.CanonicalNameCredentialSourcer(
        [
            _NamedSource(botocore.credentials.EnvProvider),
            _NamedSource(botocore.credentials.InstanceMetadataProvider),
            _NamedSource(botocore.credentials.ContainerProvider),
        ]
    )
    provider = botocore.credentials.AssumeRoleProvider(
        load_config=lambda: config,
        client_creator=client_creator,
        cache={},
        profile_name=profile,
        prompter=lambda _prompt: "123456",
        credential_sourcer=sourcer,
        profile_provider_builder=_ProfileProviders(config),
    )
    try:
        creds = provider.load()
        if creds is None:  # not a role profile: the profile's own credentials
            values = config["profiles"].get(profile, {})
            return ChainView(key=f"{_credential_kind(values)}:{profile}")
        creds.get_frozen_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        return ChainView(calls=calls, error=f"{type(exc).__name__}: {exc}")
    return ChainView(key=calls[0].signer if calls else None, calls=calls)


def botocore_walk(profiles: Mapping[str, Mapping[str, Any]], target: str) -> tuple[list[str], str]:
    """The profiles botocore's AssumeRoleProvider visits from ``target`` (target first)
    and why it stops: ``key`` (a profile giving credentials), ``self-key`` (a role using
    its own keys from the file), ``self`` / ``no-source`` (a role with no other source:
    an error for botocore), ``loop``, ``missing``, ``credential_source``."""
    names = [target]
    current = target
    while True:
        values = profiles[current]
        if not _has_role(values) or (current != target and _has_static(values)):
            return names, "key"
        if values.get("credential_source") is not None:
            return names, "credential_source"
        source = values.get("source_profile")
        if source is None:
            return names, "no-source"
        if source not in profiles:
            return names, "missing"
        if source == current:
            return names, "self-key" if _has_static(values) else "self"
        if source in names:
            return names, "loop"
        names.append(source)
        current = source


def _hop_profiles(names: list[str], reason: str) -> list[str]:
    """The role profiles assumed, first to last, for a walk ending for ``reason``."""
    roles = names[:-1] if reason == "key" else names
    return list(reversed(roles))


def _expected_calls(profiles: Mapping[str, Mapping[str, Any]], hops: list[str]) -> list[Call]:
    """The AssumeRole calls botocore would make for ``hops`` (first to last) if the first
    could be signed with the hop's own key: the reference for "role-own-key"."""
    calls = []
    for index, name in enumerate(hops):
        values = profiles[name]
        calls.append(
            Call(
                role_arn=values["role_arn"],
                duration=_int_or_none(values.get("duration_seconds")),
                serial=values.get("mfa_serial"),
                external_id=values.get("external_id"),
                session_name=values.get("role_session_name"),
                signer=f"store:{name}" if index == 0 else f"role:{index - 1}",
            )
        )
    return calls


def _client_settings(client: Any) -> dict[str, Any]:
    return {
        "endpoint_url": client.meta.endpoint_url,
        "region": client.meta.region_name,
        "verify": client._endpoint.http_session._verify,
        "retries": client.meta.config.retries,
    }


def _client_view(make: Callable[[], Any]) -> ClientView:
    try:
        return ClientView(settings=_client_settings(make()))
    except MissingApi:
        raise
    except Exception as exc:  # any failure to build the client is compared as a failure
        return ClientView(error=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------- broker's view


def _broker(module: str, attr: str) -> Any:
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise MissingApi(f"{module} cannot be imported ({exc})") from None
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise MissingApi(f"{module}.{attr} is missing") from None


def _attr(obj: object, name: str, what: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise MissingApi(f"{what}.{name} is missing") from None


def _broker_errors() -> tuple[type[Exception], ...]:
    return (_broker("broker.errors", "BrokerError"),)


def broker_load() -> Any:
    return _broker("broker.aws.profiles", "load")()


def broker_client(profile: str, region: str) -> Any:
    client = _broker("broker.aws.sts", "client")
    if "profile" not in inspect.signature(client).parameters:
        raise MissingApi("broker.aws.sts.client(service, creds, region, profile=NAME)")
    credentials = _broker("broker.aws.credentials", "Credentials")(*STS_CREDS)
    return client("sts", credentials, region, profile=profile)


def broker_plan(config: Any, profile: str) -> tuple[Any, list[Any]]:
    """broker's chain for ``profile`` and the STS calls it plans (default options)."""
    chain = _broker("broker.aws.profiles", "resolve_chain")(config, profile)
    options = _broker("broker.aws.chain", "ChainOptions")(duration=None)
    return chain, list(_broker("broker.aws.chain", "plan")(chain, options))


# ---------------------------------------------------------------------------- comparison


class Report:
    """Mismatches for one file (and profile), each naming file, profile, field and both
    values; and the deliberate differences used, which must be documented."""

    def __init__(self, case: Case, profile: str | None) -> None:
        self.case = case
        self.profile = profile
        self.lines: list[str] = []
        self._documented = documented_ids()

    def where(self) -> str:
        profile = "(whole file)" if self.profile is None else f"[{self.profile}]"
        return f"{self.case.label} {profile}"

    def mismatch(
        self, what: str, botocore_value: object, broker_value: object, note: str = ""
    ) -> None:
        line = f"{self.where()} {what}: botocore={botocore_value!r} broker={broker_value!r}"
        self.lines.append(line + (f" ({note})" if note else ""))

    def allow(self, ident: str) -> bool:
        """A deliberate difference: fine only when DELIBERATE and the doc both name it."""
        if ident not in DELIBERATE:
            self.lines.append(f"{self.where()}: test bug: no deliberate difference {ident!r}")
            return False
        if ident not in self._documented:
            self.lines.append(
                f"{self.where()}: deliberate difference {ident!r} is not documented in "
                f"{DOC.name} (between {DOC_START} and {DOC_END})"
            )
            return False
        return True

    def check(self) -> None:
        assert not self.lines, f"{len(self.lines)} difference(s):\n" + "\n".join(self.lines)


def _public(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in SECRET_KEYS}


def compare_values(
    report: Report,
    profiles: Mapping[str, Mapping[str, Any]],
    name: str,
    broker_values: Mapping[str, Any],
) -> None:
    """Profile.values against botocore's scoped config; keys filled from included
    profiles are "include-profile"."""
    ours = _public(profiles[name])
    theirs = _public(broker_values)
    included, _broken = _include_chain(profiles, name)
    for key in sorted(set(ours) | set(theirs)):
        mine, got = ours.get(key, "<absent>"), theirs.get(key, "<absent>")
        if mine == got:
            continue
        if mine in ("<absent>", "") and included:
            source = next((profiles[p][key] for p in included if profiles[p].get(key)), None)
            if got == source:
                report.allow("include-profile")
                continue
        report.mismatch(f"values[{key!r}]", mine, got)


def check_no_credentials_secret(
    report: Report, name: str, broker_values: Mapping[str, Any]
) -> None:
    """broker keeps the credentials file's profile names and non-secret values only."""
    credentials = os.path.expanduser(
        os.path.expandvars(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", ""))
    )
    if not os.path.isfile(credentials):
        return
    secrets = set(botocore.configloader.raw_config_parse(credentials).get(name, {}))
    config = os.path.expanduser(os.path.expandvars(os.environ.get("AWS_CONFIG_FILE", "")))
    if os.path.isfile(config):  # a secret written in the config file itself is its values'
        secrets -= set(botocore.configloader.load_config(config)["profiles"].get(name, {}))
    for key in sorted(secrets & SECRET_KEYS & set(broker_values)):
        report.mismatch(
            f"values[{key!r}]", "<secret from the credentials file>", "<kept in Profile.values>"
        )


def compare_fields(
    report: Report,
    pure: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, Mapping[str, Any]],
    name: str,
    profile: Any,
) -> None:
    """The settings broker reads, against botocore's values (aws-vault's where the file
    uses include_profile)."""
    loop = _include_chain(pure, name)[1] == "loop"
    for key in (*TEXT_FIELDS, "duration_seconds"):
        read = _int_or_none if key == "duration_seconds" else _text
        if key == "role_session_name":  # botocore's AssumeRoleCredentialFetcher: "" is unset
            read = _text_or_none
        expected, plain = read(reference[name].get(key)), read(pure[name].get(key))
        got = _attr(profile, key, "Profile")
        raw_value = reference[name].get(key)
        unusable = isinstance(raw_value, dict) or (
            key in UNUSABLE_KEYS and isinstance(raw_value, str) and not raw_value.strip()
        )
        if got is None and unusable and any(
            key in p for p in _attr(profile, "problems", "Profile")
        ):
            report.allow("unusable-value")
            continue
        if got == expected:
            if expected != plain:
                report.allow("include-profile")
            continue
        if loop and got == plain:
            continue  # checked below: an include loop must be a problem
        report.mismatch(key, expected, got)
    problems = list(_attr(profile, "problems", "Profile"))
    if loop and not any("include_profile" in p or "parent_profile" in p for p in problems):
        report.mismatch("problems", "include loop (aws-vault: an error)", problems)
    raw = pure[name].get("duration_seconds")
    if raw is not None and _int_or_none(raw) is None and any(
        "duration_seconds" in p for p in problems
    ):
        report.allow("duration-not-integer")  # botocore drops it; broker names it


def _planned(call: Any, name: str) -> Any:
    return _attr(call, name, "PlannedCall")


def _serials(calls: list[Any]) -> list[str]:
    seen: list[str] = []
    for call in calls:
        serial = _attr(call, "serial", type(call).__name__)
        if serial is not None and serial not in seen:
            seen.append(serial)
    return seen


def _duration_breaks_aws_rules(call: Call) -> bool:
    """Whether AWS refuses the DurationSeconds of botocore's call."""
    if call.duration is None:
        return False
    low, high = ASSUME_ROLE_RANGE
    chained = call.signer.startswith("role:")
    return not low <= call.duration <= high or (chained and call.duration > ROLE_CHAINING_MAX)


def compare_calls(report: Report, expected: list[Call], planned: list[Any]) -> None:
    """botocore's AssumeRole calls against broker's planned ones."""
    roles = [c for c in planned if _planned(c, "action") == "AssumeRole"]
    arns = [_planned(c, "role_arn") for c in roles]
    if [c.role_arn for c in expected] != arns:
        report.mismatch("AssumeRole RoleArn sequence", [c.role_arn for c in expected], arns)
        return
    for index, (want, got) in enumerate(zip(expected, roles, strict=True)):
        what = f"AssumeRole #{index + 1} ({want.role_arn})"
        external_id, session_name = _planned(got, "external_id"), _planned(got, "session_name")
        duration = _planned(got, "duration")
        if want.external_id != external_id:
            report.mismatch(f"{what} ExternalId", want.external_id, external_id)
        if want.session_name is not None and want.session_name != session_name:
            report.mismatch(f"{what} RoleSessionName", want.session_name, session_name)
        mine = want.duration if want.duration is not None else ROLE_CHAINING_MAX
        theirs = duration if duration is not None else ROLE_CHAINING_MAX
        if mine != theirs and not (
            _duration_breaks_aws_rules(want)
            and theirs == ROLE_CHAINING_MAX
            and report.allow("aws-duration-rules")
        ):
            report.mismatch(f"{what} DurationSeconds", want.duration, duration)
        if _planned(got, "signed_with") == "session" and theirs > ROLE_CHAINING_MAX:
            report.mismatch(
                f"{what} DurationSeconds", want.duration, duration,
                "signed with the MFA session: AWS refuses more than 1 h for role chaining",
            )


def compare_mfa(
    report: Report, expected: list[Call], planned: list[Any], nearest: str | None
) -> None:
    """The MFA devices used anywhere in the chain."""
    mine, theirs = _serials(expected), _serials(planned)
    if mine == theirs:
        return
    if theirs == [nearest] and nearest is not None:
        if not expected and report.allow("mfa-session-first"):
            return  # a profile without a role: GetSessionToken with its device
        if not mine and report.allow("mfa-serial-nearest"):
            return
        if len(mine) > 1 and nearest in mine and report.allow("mfa-session-first"):
            return
    report.mismatch("MFA SerialNumber(s)", mine, theirs)


def _describe(view: ChainView) -> str:
    arns = [c.role_arn for c in view.calls]
    return f"credentials from {view.key}, then AssumeRole {arns}"


def _refusal_is_deliberate(
    report: Report,
    profiles: Mapping[str, Mapping[str, Any]],
    names: list[str],
    ref: ChainView,
    error: str,
) -> bool:
    """Whether broker's refusal of a chain botocore would run is a documented difference."""
    walked = [profiles[n] for n in names]
    if any(_include_chain(profiles, n)[1] for n in names) and (
        "include_profile" in error or "parent_profile" in error
    ):
        return report.allow("include-profile")  # a loop or a missing profile
    if "duration_seconds" in error and any(
        v.get("duration_seconds") is not None and _int_or_none(v["duration_seconds"]) is None
        for v in walked
    ):
        return report.allow("duration-not-integer")
    if "duration" in error.lower() and any(_duration_breaks_aws_rules(c) for c in ref.calls):
        return report.allow("aws-duration-rules")
    if ("is empty" in error or "nested block" in error or "comment" in error
            or "contains a space" in error) and any(
        isinstance(v.get(k), dict)
        or (isinstance(v.get(k), str) and (not v[k].strip() or len(v[k].split()) > 1))
        for v in walked
        for k in UNUSABLE_KEYS
    ):
        return report.allow("unusable-value")
    process = (_text(walked[-1].get("credential_process")) or "").split()
    if (
        _kind(ref.key) == "process"
        and process
        and os.path.basename(process[0]) == "broker"
        and "credential_process" in error
    ):
        return report.allow("credential-process-broker")
    return False


def compare_chain(
    report: Report,
    reference: Mapping[str, Any],
    name: str,
    ref: ChainView,
    broker_chain: Callable[[], tuple[Any, list[Any]]],
) -> None:
    profiles = reference["profiles"]
    names, reason = botocore_walk(profiles, name)
    try:
        chain, planned = broker_chain()
        error = None
    except _broker_errors() as exc:
        chain, planned, error = None, [], f"{type(exc).__name__}: {exc}"
    nearest = next((p for n in names if (p := _text(profiles[n].get("mfa_serial")))), None)

    if ref.error is not None:
        if reason in ("self", "no-source"):  # botocore: no source; broker: the role's own key
            hops = _hop_profiles(names, reason)
            if error is not None:
                if not _refusal_is_deliberate(report, profiles, names, ref, error):
                    report.mismatch("chain", ref.error, error, "role-own-key: the role's own key")
                return
            key_name = _attr(chain, "key_profile", "Chain").name
            if key_name != names[-1]:
                report.mismatch("key profile", f"{names[-1]} (own key)", key_name)
            elif report.allow("role-own-key"):
                expected = _expected_calls(profiles, hops)
                compare_calls(report, expected, planned)
                compare_mfa(report, expected, planned, nearest)
            return
        if error is None:
            report.mismatch("chain", ref.error, [repr(c) for c in planned])
        return

    kind = _kind(ref.key)
    if kind in REFUSED_KINDS:
        if error is None:
            report.mismatch(
                "credentials", f"from {ref.key}", f"stored key of {chain.key_profile.name}",
                "refused-sources: broker must refuse",
            )
        else:
            report.allow("refused-sources")
        return
    if error is not None:
        if not _refusal_is_deliberate(report, profiles, names, ref, error):
            report.mismatch("chain", _describe(ref), error)
        return
    if kind == "store":
        report.allow("key-in-store")
    key_name = _attr(chain, "key_profile", "Chain").name
    if key_name != _marker_profile(ref.key):
        report.mismatch("key profile", ref.key, key_name)
    compare_calls(report, ref.calls, planned)
    compare_mfa(report, ref.calls, planned, nearest)


def compare_client(report: Report, mine: ClientView, theirs: ClientView) -> None:
    if mine.error is not None or theirs.error is not None:
        if (mine.error is None) != (theirs.error is None):
            report.mismatch(
                "STS client", mine.error or mine.settings, theirs.error or theirs.settings
            )
        return
    assert mine.settings is not None and theirs.settings is not None
    for key, value in mine.settings.items():
        if theirs.settings.get(key) != value:
            report.mismatch(f"STS client {key}", value, theirs.settings.get(key))


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True, scope="module")
def _shared_botocore_data() -> Iterator[None]:
    """One cache of botocore's data files (service models, endpoint rules) for every
    session the tests make, botocore's and broker's alike: a client costs ~6 ms, not 40."""
    cache: dict[Any, Any] = {}
    real = botocore.loaders.create_loader

    def create_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        loader = real(search_path_string)
        loader._cache = cache
        return loader

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", create_loader)
        yield


# ---------------------------------------------------------------------------- tests


def test_corpus_is_there() -> None:
    assert len(CASES) >= 100, f"only {len(CASES)} files in {CORPUS}"
    assert len(PROFILE_PARAMS) >= 200, f"only {len(PROFILE_PARAMS)} profiles in the corpus"


def test_deliberate_differences_are_documented() -> None:
    documented = documented_ids()
    assert set(DELIBERATE) <= documented, (
        f"not documented in {DOC}: {sorted(set(DELIBERATE) - documented)}"
    )
    assert documented <= set(DELIBERATE), (
        f"documented in {DOC} but not in DELIBERATE: {sorted(documented - set(DELIBERATE))}"
    )


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_file_matches_botocore(
    case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _isolate(monkeypatch, case, tmp_path / "no-credentials")
    report = Report(case, None)
    session = botocore.session.Session()
    try:
        mine: list[str] | None = list(session.available_profiles)
        failure = None
    except botocore.exceptions.ConfigParseError as exc:
        mine, failure = None, exc
    try:
        config = broker_load()
        theirs, error = list(config.profiles), None
    except MissingApi as exc:
        pytest.fail(f"{case.label}: broker API missing: {exc}")
    except _broker_errors() as exc:
        config, theirs, error = None, None, exc

    if failure is not None:
        path = str(failure.kwargs.get("path", ""))
        if error is None:
            report.mismatch("load", f"cannot parse {path}", f"{len(theirs or [])} profiles")
        elif path not in str(error):
            report.mismatch("load error names the file", path, str(error))
        elif Path(path).read_bytes().startswith(b"\xef\xbb\xbf") and (
            "byte-order mark" not in str(error)
        ):
            report.mismatch("load error names the BOM", "byte-order mark", str(error))
        report.check()
        return
    if error is not None:
        report.mismatch("load", f"{len(mine or [])} profiles", f"{type(error).__name__}: {error}")
        report.check()
        return
    if sorted(mine or []) != sorted(theirs or []):
        report.mismatch(
            "profile names (botocore only / broker only)",
            sorted(set(mine or []) - set(theirs or [])),
            sorted(set(theirs or []) - set(mine or [])),
        )
    named = session.get_config_variable("profile")
    expected = "default" if named is None else named
    got = _attr(config, "default_profile_name", "AwsConfig")()
    if got != expected:
        report.mismatch("default profile name", expected, got)
    report.check()


@pytest.mark.parametrize(("case", "profile"), PROFILE_PARAMS)
def test_profile_matches_botocore(
    case: Case, profile: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _isolate(monkeypatch, case, tmp_path / "no-credentials")
    report = Report(case, profile)
    session = botocore.session.Session(profile=profile)
    # a copy: making clients normalises some values in botocore's own dicts
    full = copy.deepcopy(session.full_config)
    pure = full["profiles"]
    assert session.get_scoped_config() == pure[profile]
    reference = dict(full, profiles=_with_includes(pure)) if _uses_includes(pure) else full
    chain_view = botocore_chain(reference, profile)
    region = session.get_config_variable("region") or "us-east-1"
    client_view = _client_view(
        lambda: session.create_client(
            "sts", aws_access_key_id=STS_CREDS[0], aws_secret_access_key=STS_CREDS[1],
            region_name=region,
        )
    )

    try:
        try:
            config = broker_load()
        except _broker_errors() as exc:
            report.mismatch("load", "reads the file", f"{type(exc).__name__}: {exc}")
            report.check()
            return
        found = config.profiles.get(profile)
        if found is None:
            report.mismatch("profile", sorted(pure[profile]), None, "broker has no such profile")
            report.check()
            return
        if found.name != profile:
            report.mismatch("Profile.name", profile, found.name)
        compare_values(report, pure, profile, _attr(found, "values", "Profile"))
        check_no_credentials_secret(report, profile, found.values)
        compare_fields(report, pure, reference["profiles"], profile, found)
        compare_chain(
            report, reference, profile, chain_view, lambda: broker_plan(config, profile)
        )
        compare_client(report, client_view, _client_view(lambda: broker_client(profile, region)))
    except MissingApi as exc:
        report.lines.append(f"{report.where()}: broker API missing: {exc}")
    report.check()
