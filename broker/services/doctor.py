"""`broker doctor`: what is set up, what is broken, and how to fix it.

Each check is a small function returning :class:`Check` results (ok, warn or
fail, with the fix). Doctor checks what is generic here (configs, plugins,
profiles, the default backend and session cache, the clock, WSL);
each installed backend adds its own rows through :meth:`Backend.checks
<broker.backend.Backend.checks>` (the pass plugin its gpg rows, the keyctl plugin
the kernel keyring's, the onepassword plugin the token's). Doctor is quick and
local by default: no backend item is read, only listed where listing is local;
the one request leaving the machine is an unauthenticated one to STS for its
clock (TOTP codes and request signatures depend on it). ``online`` adds one
listing of each shared backend in use (a 1Password vault: one API call).
"""

from __future__ import annotations

import configparser
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

from broker import config, paths
from broker.aws import profiles
from broker.aws.chain import problems as chain_problems
from broker.aws.credentials import utcnow
from broker.backend import Backend, Capability, Check, unnamed
from broker.errors import BrokerError, ConfigError
from broker.registry import Registry
from broker.services import backends, listing
from broker.services.context import Context

OK, WARN, FAIL = "ok", "warn", "fail"
CLOCK_OK, CLOCK_FAIL = 5.0, 30.0
DEFAULT_STS_URL = "https://sts.amazonaws.com/"


@dataclass
class Facts:
    """What the generic checks look at, replaceable in tests (a backend's own checks
    look at the process's environment themselves)."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    proc_version: Path = Path("/proc/version")
    clock: Callable[[], datetime] = utcnow
    online: bool = False
    timeout: float = 3.0

    @property
    def wsl(self) -> int:
        """0 outside WSL, else 1 or 2 (:func:`broker.paths.wsl_version`)."""
        return paths.wsl_version(self.proc_version)


# --- configuration ------------------------------------------------------------------------


def check_broker_config() -> tuple[Check, config.Settings]:
    """The ``broker config`` row (fail: the message and fix of the ConfigError) and the
    settings it read: broker's config file with ``BROKER_*`` on top, or the defaults when
    it failed, so the other checks can still run. Never raises.
    """
    path = paths.config_file()
    try:
        settings = config.load(path)
    except ConfigError as exc:
        return Check("broker config", FAIL, exc.message, exc.hint), config.Settings(path)
    where = f"{path}" if path.exists() else f"{path} (absent: defaults)"
    return Check("broker config", OK, f"parsed {where}"), settings


def check_aws_config() -> tuple[Check, profiles.AwsConfig | None]:
    """The ``aws config`` row and the parsed ~/.aws/config (None when it cannot be parsed:
    fail). An absent file, or sections botocore ignores, warn. Never raises.
    """
    path = profiles.config_path()
    try:
        parsed = profiles.load(path)
    except ConfigError as exc:
        return Check("aws config", FAIL, exc.message, exc.hint), None
    if not path.exists():
        return Check(
            "aws config", WARN, f"{path} does not exist",
            "add a [profile NAME] section for each key (see docs/guide.md)",
        ), parsed
    if parsed.warnings:
        return Check(
            "aws config", WARN, f"{len(parsed.profiles)} profiles in {path}; "
            + "; ".join(parsed.warnings),
            "the AWS CLI ignores these sections too: fix their headers",
        ), parsed
    return Check("aws config", OK, f"{len(parsed.profiles)} profiles in {path}"), parsed


def check_plaintext_credentials(facts: Facts) -> Check:
    """The ``plaintext keys`` row: warn when the shared credentials file
    (``AWS_SHARED_CREDENTIALS_FILE``, else ~/.aws/credentials) has sections with an
    ``aws_secret_access_key``, which SDKs would use before broker's endpoint (botocore's
    credential provider chain reads that file first). Only section names are shown, never
    a value.
    """
    path = Path(
        facts.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    ).expanduser()
    if not path.exists():
        return Check("plaintext keys", OK, f"no {path}")
    parser = configparser.RawConfigParser(default_section="\x00none")
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError) as exc:
        return Check("plaintext keys", WARN, f"cannot read {path}: {type(exc).__name__}",
                     f"check {path}")
    holding = [s for s in parser.sections() if parser.has_option(s, "aws_secret_access_key")]
    if not holding:
        return Check("plaintext keys", OK, f"{path} holds no secret keys")
    return Check(
        "plaintext keys", WARN,
        f"{path} holds plaintext keys for {', '.join(holding)}; SDKs prefer that file "
        "to `broker exec --server`'s endpoint",
        "move them into broker with `broker import credentials-file --remove-plaintext` "
        "(each section is removed once its key is verified in broker)",
    )


# --- backends -----------------------------------------------------------------------------


def referenced(ctx: Context) -> set[str]:
    """Backends that resolve a secret reference written in broker's config (the pass
    backend's passphrase from ``op://...``, a token from ``keyctl:NAME``): by the scheme
    each installed plugin claims."""
    names = set()
    for table in ctx.settings.backends.values():
        for value in table.values():
            scheme, sep, _ = value.partition(":") if isinstance(value, str) else ("", "", "")
            owner = ctx.registry.scheme_backend(scheme.lower()) if sep and scheme else None
            if owner is not None:
                names.add(owner)
    return names


class Backends:
    """Which backends are in use, and the names they hold (listed once each)."""

    def __init__(
        self, ctx: Context, aws: profiles.AwsConfig | None, online: bool,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.online = online
        self.environ: Mapping[str, str] = environ if environ is not None else os.environ
        self._listed: dict[str, tuple[set[str] | None, str]] = {}
        try:
            self.default: str | None = ctx.credential_backend_name()
            self.default_error = ""
        except BrokerError as exc:
            self.default, self.default_error = None, str(exc)
        try:
            self.cache: str | None = ctx.session_cache_name()
        except BrokerError:
            self.cache = None
        used = {self.default, self.cache}
        for profile in (aws.profiles.values() if aws else []):
            used.add(profile.broker_backend)
        used.update(referenced(ctx))
        #: Backends broker uses here: the default, the session cache, profiles'
        #: broker_backend, and those resolving secret references in broker's config.
        self.used = {n for n in used if n}

        #: Backends that failed to list for a problem of their own: name -> the reason.
        self.problems: dict[str, str] = {}
        #: Backends whose problem a row already says.
        self.said: set[str] = set()

    def listed(self, name: str) -> tuple[set[str] | None, str]:
        """The names stored in ``name``, or None and why they were not listed: a few words
        for a profile's row. A problem with the backend itself (unavailable, failing) is
        also kept in :attr:`problems`, to be said once, in a row of its own."""
        if name not in self._listed:
            self._listed[name] = self._list(name)
        return self._listed[name]

    def _list(self, name: str) -> tuple[set[str] | None, str]:
        try:
            backend = self.ctx.backend(name)
        except BrokerError as exc:
            self.problems[name] = exc.message
            return None, f"{name} cannot be loaded"
        availability = self.ctx.registry.availability_of(backend)
        if not availability.ok:
            self.problems[name] = unnamed(name, availability.reason)
            return None, f"{name} is unavailable"
        if Capability.LIST not in backend.capabilities:
            return None, f"{name} cannot list its items"
        if Capability.SHARED in backend.capabilities and not self.online:
            return None, "listed with --online"
        try:
            return set(backend.list()), ""
        except BrokerError as exc:
            self.problems[name] = unnamed(name, exc.message)
        except Exception as exc:
            self.problems[name] = f"listing failed: {type(exc).__name__}"
        return None, f"{name} failed to list its items"


def check_plugins(ctx: Context) -> list[Check]:
    """A warning row per installed plugin that fails to import (with the import error and
    how to disable it), or one ``plugins`` row listing them all when none is broken.
    """
    checks = []
    for name in ctx.registry.names():
        loaded = ctx.registry.load(name)
        if loaded.broken:
            checks.append(Check(
                f"plugin {name}", WARN,
                f"broken ({loaded.info.distribution or loaded.info.value}): {loaded.error}",
                f"reinstall it, or add {name!r} to disabled_plugins in broker's config",
            ))
    if not checks:
        checks.append(Check("plugins", OK, f"installed: {', '.join(ctx.registry.names()) or '-'}"))
    return checks


def check_default_backend(ctx: Context, used: Backends) -> Check:
    """The ``default backend`` row: fail when no credential backend can be chosen or the
    chosen one is unavailable (marked as said in ``used``, so profile rows only refer to
    it), warn when it keeps keys in memory only, else ok.
    """
    if used.default is None:
        return Check("default backend", FAIL, used.default_error,
                     "see `broker backend list`, then `broker backend set NAME`")
    availability = ctx.registry.availability(used.default)
    if not availability.ok:
        used.said.add(used.default)  # the profile rows only refer to it
        return Check("default backend", FAIL,
                     f"{used.default}: {unnamed(used.default, availability.reason)}",
                     "fix that, or choose another with `broker backend set NAME`")
    if backends.memory_only(ctx, used.default):
        return Check("default backend", WARN,
                     f"{used.default} keeps keys in {backends.LOST_AT_REBOOT}",
                     f"for keys that last, {backends.persistent_setup(ctx)}")
    return Check("default backend", OK, f"{used.default} is available")


def check_session_cache(ctx: Context, used: Backends) -> Check:
    """Where STS sessions are cached: the configured backend, else the default one (see
    :meth:`Context.session_cache_name`), or why none is."""
    configured, origin = ctx.configured_cache()
    able = ctx.registry.session_caches()
    if used.cache is None:
        if configured and configured.lower() == "none":
            return Check("session cache", WARN, "off (session_cache = none): every command "
                         "makes new STS sessions and asks for an MFA code",
                         f"drop {origin} to use the best that works here "
                         f"({', '.join(able) or 'none is installed'})")
        if not able:
            return Check("session cache", WARN,
                         "none available (no installed backend can cache STS sessions): "
                         "every command makes new STS sessions and asks for an MFA code",
                         "install a backend plugin that can (the built-in keyctl one)")
        return Check("session cache", WARN,
                     f"none available ({' and '.join(able)} "
                     f"{'does' if len(able) == 1 else 'do'} not work here): every "
                     "command makes new STS sessions and asks for an MFA code",
                     f"see the {able[0]} check below")
    availability = ctx.registry.availability(used.cache)
    if not availability.ok:
        return Check("session cache", FAIL,
                     f"{used.cache}: {unnamed(used.cache, availability.reason)}",
                     'fix it, or set session_cache = "none"')
    return Check("session cache", OK, f"sessions are kept in {used.cache}")


def check_profiles(ctx: Context, aws: profiles.AwsConfig, used: Backends) -> list[Check]:
    """One short row per profile; a backend's own problem in one row of its own (before
    the profiles it concerns), keys held in memory only in one row naming them all."""
    checks: list[Check] = []
    memory: dict[str, list[str]] = {}
    for name in sorted(aws.profiles):
        profile = aws.profiles[name]
        label = f"profile {name}"
        if any(k.startswith("sso_") for k in profile.values):
            checks.append(Check(label, OK, "uses IAM Identity Center (SSO), not broker"))
            continue
        if profile.credential_process and not profile.role_arn:
            checks.append(_process_check(ctx, aws, name, profile, used))
            continue
        try:
            chain = profiles.resolve_chain(aws, name)
            backend = ctx.credential_backend_name(chain.key_profile)
        except BrokerError as exc:
            checks.append(Check(label, FAIL, exc.message, exc.hint))
            continue
        problems = chain_problems(chain)  # what `exec` would refuse before any call
        if problems:
            text, _, hint = problems[0].rpartition("; ")
            checks.append(Check(label, FAIL, text, hint))
            continue
        key = chain.key_profile.name
        route = " -> ".join(chain.names)
        stored, why = used.listed(backend)
        if name == "default" and listing.settings_only(profile) and not (stored and key in stored):
            continue  # [default] usually only carries the region: no key expected
        if stored is None:
            problem = backend in used.problems
            checks.append(Check(label, WARN if problem else OK,
                                f"{route}; key in {backend} not checked ({why})"))
        elif key in stored:
            if backends.memory_only(ctx, backend):
                if key == name:
                    memory.setdefault(backend, []).append(name)
                checks.append(Check(label, OK, f"{route}; key stored in {backend} (memory only)"))
            else:
                checks.append(Check(label, OK, f"{route}; key stored in {backend}"))
        else:
            checks.append(Check(label, WARN, f"{route}; no key stored for {key!r} in {backend}",
                                f"run `broker add {key}`"))
    first = [Check(f"backend {name}", FAIL, reason, "fix that, or see `broker backend list`")
             for name, reason in sorted(used.problems.items()) if name not in used.said]
    used.said.update(used.problems)
    last = [Check("keys lost at reboot", WARN,
                  f"{', '.join(names)}: in {backend}, {backends.LOST_AT_REBOOT}",
                  listing.keep_keys_hint(ctx, backend))
            for backend, names in sorted(memory.items())]
    return first + checks + last


def _process_check(
    ctx: Context, aws: profiles.AwsConfig, name: str, profile: profiles.Profile, used: Backends
) -> Check:
    """A profile served by its credential_process: by `broker export TARGET` (the AWS CLI
    then needs a region in this profile: a named profile does not inherit [default]'s)."""
    label = f"profile {name}"
    target = listing.broker_export_target(profile.credential_process or "")
    if target is None:
        return Check(label, OK, "served by its credential_process")
    if target == name or target not in aws.profiles:
        return Check(label, FAIL, f"credential_process runs `broker export {target}`, "
                     + ("itself" if target == name else "a profile that does not exist"),
                     "point it at the profile whose key broker holds, e.g. `broker export dev`")
    if not profile.region and not any(
        used.environ.get(v) for v in ("AWS_REGION", "AWS_DEFAULT_REGION")
    ):
        return Check(label, WARN, f"served by `broker export {target}` but has no region: "
                     "the AWS CLI and SDKs do not take [default]'s for a named profile",
                     f"add `region = ...` to [profile {name}]")
    return Check(label, OK, f"served by `broker export {target}`")


# --- each backend's own checks ------------------------------------------------------------


def check_backends(ctx: Context, used: Backends) -> list[Check]:
    """Each installed backend's own rows (:meth:`broker.backend.Backend.checks`, told
    whether broker uses it here), in the order of their names; then, for a shared one in
    use (its items are elsewhere: a vault), whether it answers (:func:`_reachability`).
    A backend that cannot start, or whose checks raise, gets a row saying so."""
    checks: list[Check] = []
    for name in ctx.registry.names():
        if ctx.registry.load(name).broken:
            continue  # check_plugins said so
        in_use = name in used.used
        try:
            backend = ctx.backend(name)
        except BrokerError as exc:
            if name not in used.said:
                used.said.add(name)
                checks.append(Check(f"backend {name}", FAIL if in_use else WARN,
                                    unnamed(name, exc.message), exc.hint))
            continue
        try:
            rows = list(backend.checks(in_use))
        except Exception as exc:  # a plugin's mistake weakens doctor, never stops it
            rows = [Check(f"backend {name}", WARN, f"its checks failed ({type(exc).__name__})",
                          "report it to the plugin's authors, or disable the plugin")]
        checks += rows
        if in_use and Capability.SHARED in backend.capabilities:
            checks += _reachability(name, backend, used,
                                    said=any(r.status == FAIL for r in rows))
    return checks


def _reachability(name: str, backend: Backend, used: Backends, *, said: bool) -> list[Check]:
    """``NAME reachability`` for a shared backend in use: its availability reason (unless
    its own rows or an earlier row said a problem already), else not checked offline,
    else the one listing ``--online`` makes (shared with the profile rows)."""
    row = f"{name} reachability"
    availability = used.ctx.registry.availability_of(backend)
    if not availability.ok:
        if said or name in used.said:
            return []
        used.said.add(name)
        return [Check(row, FAIL, unnamed(name, availability.reason),
                      "fix that as the reason says; `broker backend list` shows every backend")]
    if not used.online:
        return [Check(row, OK, "not checked (`broker doctor --online` lists its items, "
                      "one request)")]
    names, why = used.listed(name)  # the same listing the profile rows use
    if names is None:
        used.said.add(name)
        return [Check(row, FAIL, used.problems.get(name, why),
                      "check its settings, its credentials and the network")]
    return [Check(row, OK, f"reachable ({len(names)} items)")]


# --- WSL ----------------------------------------------------------------------------------


def check_wsl(facts: Facts) -> Check:
    """The ``WSL`` row from :attr:`Facts.wsl`: ok outside WSL and on WSL2, warn on WSL1,
    which has no kernel keyring (so no session cache there).
    """
    version = facts.wsl
    if version == 0:
        return Check("WSL", OK, "not running under WSL")
    if version == 1:
        return Check("WSL", WARN, "WSL1: the kernel keyring (keyctl) does not exist here",
                     "convert the distribution: `wsl --set-version <distro> 2` (in Windows)")
    return Check("WSL", OK, "WSL2: the kernel keyring works; the Windows 1Password app is "
                 "reached through op.exe, the 1Password CLI for Windows (docs/wsl2.md)")


# --- the clock ----------------------------------------------------------------------------


def sts_url(environ: Mapping[str, str]) -> str:
    """The STS endpoint doctor asks for the time: ``AWS_ENDPOINT_URL_STS``, else
    ``AWS_ENDPOINT_URL`` (the SDKs' service-specific and global endpoint variables, AWS
    SDKs and Tools Reference Guide, "Service-specific endpoints"), else
    https://sts.amazonaws.com/.
    """
    return environ.get("AWS_ENDPOINT_URL_STS") or environ.get("AWS_ENDPOINT_URL") or DEFAULT_STS_URL


def check_clock(facts: Facts) -> Check:
    """The ``clock`` row: this machine's clock against the ``Date`` header of one unsigned
    request to STS (:func:`sts_url`), the header's whole second and the request's round
    trip allowed for. Ok within 5 s, warn up to 30 s (a TOTP code lives 30 s, RFC 6238),
    fail beyond (and AWS refuses signed requests beyond 15 minutes, SigV4); warn when STS
    cannot be reached or sends no usable Date. Never raises.
    """
    url = sts_url(facts.environ)
    fix = ("run `sudo hwclock -s` (WSL2's clock drifts while the PC sleeps)" if facts.wsl
           else "turn on time synchronisation: `sudo timedatectl set-ntp true`")
    before = facts.clock()
    try:
        with urllib.request.urlopen(url, timeout=facts.timeout) as response:  # noqa: S310
            date = response.headers.get("Date")
    except urllib.error.HTTPError as exc:  # STS answers an unsigned request with an error
        date = exc.headers.get("Date")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("clock", WARN, f"not checked: cannot reach {url} ({reason})",
                     "check again when online; MFA codes depend on the clock")
    after = facts.clock()
    try:
        theirs = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        theirs = None
    if theirs is None:
        return Check("clock", WARN, f"not checked: {url} sent no usable Date header", "")
    # The header has whole seconds: the server's time lay somewhere in the next second.
    skew = ((before + (after - before) / 2) - (theirs + timedelta(seconds=0.5))).total_seconds()
    text = f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} {url}"
    if abs(skew) <= CLOCK_OK:
        return Check("clock", OK, f"in sync ({text})")
    if abs(skew) <= CLOCK_FAIL:
        return Check("clock", WARN, f"{text}: MFA codes near the end of their 30 s may be refused",
                     fix)
    return Check("clock", FAIL, f"{text}: MFA codes will be refused (and AWS refuses signed "
                 "requests beyond 15 minutes)", fix)


# --- all of it ----------------------------------------------------------------------------


def run(facts: Facts | None = None, registry: Registry | None = None) -> list[Check]:
    """Every check, in the order a reader fixes things."""
    facts = facts or Facts()
    broker_check, settings = check_broker_config()
    aws_check, aws = check_aws_config()
    ctx = Context(settings, registry or Registry(settings.backends, settings.disabled_plugins))
    if aws is not None:
        ctx.__dict__["aws"] = aws  # the cached_property, already parsed
    else:
        ctx.__dict__["aws"] = profiles.AwsConfig(profiles.config_path(), {})
    try:
        checks = [broker_check, aws_check, check_plaintext_credentials(facts)]
        checks += check_plugins(ctx)
        used = Backends(ctx, aws, facts.online, facts.environ)
        checks.append(check_default_backend(ctx, used))
        checks.append(check_session_cache(ctx, used))
        if aws is not None:
            checks += check_profiles(ctx, aws, used)
        checks += check_backends(ctx, used)
        checks.append(check_clock(facts))
        checks.append(check_wsl(facts))
        return checks
    finally:
        ctx.close()


def failed(checks: list[Check]) -> bool:
    """Whether any row failed (``broker doctor`` then exits non-zero); warnings do not count."""
    return any(c.status == FAIL for c in checks)
