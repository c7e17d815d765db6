"""The credential chain: stored key -> GetSessionToken (MFA) -> AssumeRole per hop.

Each level is cached in the session cache and refreshed under its own lock,
so an MFA session is asked for once per lifetime and shared by every role
profile with the same source and device.
"""

from __future__ import annotations

from collections.abc import Callable

from broker.aws.credentials import Credentials
from broker.aws.profiles import Chain, Profile
from broker.aws.session_cache import SessionCache, session_name
from broker.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # mfa imports subprocess, needed only when a session is made
    from broker.aws.mfa import MfaCodes

GET_SESSION_TOKEN_LIMITS = (900, 129_600)
ASSUME_ROLE_LIMITS = (900, 43_200)
ROLE_CHAINING_MAX = 3600
DEFAULT_ROLE_DURATION = 3600


class ChainOptions:
    """How to run the chain: ``duration`` is the final credentials' lifetime,
    ``session_duration`` the MFA session's; ``no_session`` skips GetSessionToken."""

    def __init__(
        self,
        duration: int | None = None,
        no_session: bool = False,
        session_duration: int = 8 * 3600,
        region: str | None = None,
    ) -> None:
        self.duration = duration
        self.no_session = no_session
        self.session_duration = session_duration
        self.region = region


def check_duration(chain: Chain, options: ChainOptions) -> None:
    """Refuse durations AWS would refuse, before any prompt or call."""
    if options.duration is None:
        return
    seconds = options.duration
    if not chain.hops:
        if options.no_session:
            raise UsageError(
                "--duration has no effect with --no-session on a profile without a role",
                "drop one of the two flags",
            )
        low, high = GET_SESSION_TOKEN_LIMITS
        what = "GetSessionToken"
    elif len(chain.hops) > 1:
        low, high = ASSUME_ROLE_LIMITS[0], ROLE_CHAINING_MAX
        what = "a chained role (role assumed from a role)"
    else:
        low, high = ASSUME_ROLE_LIMITS
        what = "AssumeRole"
    if not low <= seconds <= high:
        raise UsageError(
            f"--duration {seconds}s is outside what AWS allows for {what} "
            f"({low // 60} min to {high // 3600} h)",
            f"choose a value between {low} and {high} seconds",
        )


def _lifetime_tag(options: ChainOptions | None, final: bool) -> str:
    """An explicit --duration gets its own cache entry for the credentials it shapes, so a
    short-lived request neither returns a long cached session nor leaves a short one
    behind for everything else built on the same level."""
    if final and options is not None and options.duration is not None:
        return f"duration={options.duration}"
    return ""


def hop_session_name(chain: Chain, index: int, options: ChainOptions) -> str:
    hop = chain.hops[index]
    if index:
        below = hop_session_name(chain, index - 1, options)
    elif options.no_session:
        below = f"key:{chain.key_profile.name}"
    else:
        below = mfa_session_name(chain, options)
    direct_mfa = chain.mfa_serial if (options.no_session and index == 0) else ""
    final = index == len(chain.hops) - 1
    return session_name(
        hop.name, "role", hop.role_arn, hop.external_id, hop.role_session_name, below, direct_mfa,
        _lifetime_tag(options, final) or None,
    )


def mfa_session_name(chain: Chain, options: ChainOptions | None = None) -> str:
    tag = _lifetime_tag(options, final=not chain.hops)
    return session_name(chain.key_profile.name, "session", chain.mfa_serial, tag or None)


def final_session_name(chain: Chain, options: ChainOptions) -> str | None:
    """Where the target's credentials are cached; None when they are not (raw key)."""
    if chain.hops:
        return hop_session_name(chain, len(chain.hops) - 1, options)
    if options.no_session:
        return None
    return mfa_session_name(chain, options)


class CredentialChain:
    """Produces a profile's credentials, from the cache where it can."""

    def __init__(
        self,
        chain: Chain,
        cache: SessionCache,
        load_master: Callable[[], Credentials],
        mfa: MfaCodes,
        options: ChainOptions,
    ) -> None:
        self.chain = chain
        self.cache = cache
        self.load_master = load_master
        self.mfa = mfa
        self.options = options
        self.calls: list[str] = []  # STS calls made, for tests and --debug

    def cached(self) -> Credentials | None:
        name = final_session_name(self.chain, self.options)
        return self.cache.get(name) if name else None

    def get(self) -> Credentials:
        check_duration(self.chain, self.options)
        if not self.chain.hops:
            if self.options.no_session:
                return self.load_master()
            return self._mfa_session(self.options.duration or self.options.session_duration)
        return self._hop(len(self.chain.hops) - 1)

    def _mfa_session(self, duration: int) -> Credentials:
        from broker.aws import sts

        def create() -> Credentials:
            master = self.load_master()
            serial = self.chain.mfa_serial
            code = self.mfa.code_for(serial, self.chain) if serial else None
            self.calls.append("GetSessionToken")
            return sts.get_session_token(master, self.options.region, duration, serial, code)

        return self.cache.get_or_create(
            mfa_session_name(self.chain, self.options),
            create,
            kind="session",
            profile=self.chain.key_profile.name,
            mfa_serial=self.chain.mfa_serial or "",
        )

    def _hop(self, index: int) -> Credentials:
        from broker.aws import sts

        hop = self.chain.hops[index]
        last = index == len(self.chain.hops) - 1

        def create() -> Credentials:
            serial = code = None
            if index:
                source = self._hop(index - 1)
            elif self.options.no_session:
                source = self.load_master()
                serial = self.chain.mfa_serial
                code = self.mfa.code_for(serial, self.chain) if serial else None
            else:
                source = self._mfa_session(self.options.session_duration)
            assert hop.role_arn is not None
            self.calls.append(f"AssumeRole {hop.name}")
            return sts.assume_role(
                source,
                self.options.region,
                hop.role_arn,
                duration=_role_duration(hop, index, last, self.options),
                session_name=hop.role_session_name,
                external_id=hop.external_id,
                serial=serial,
                code=code,
            )

        return self.cache.get_or_create(
            hop_session_name(self.chain, index, self.options),
            create,
            kind="role",
            profile=hop.name,
            role_arn=hop.role_arn or "",
        )


def _role_duration(hop: Profile, index: int, last: bool, options: ChainOptions) -> int:
    wanted = (options.duration if last else None) or hop.duration_seconds or DEFAULT_ROLE_DURATION
    if index:  # role chaining: AWS caps these sessions at one hour
        return min(wanted, ROLE_CHAINING_MAX)
    return wanted
