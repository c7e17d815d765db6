"""The credential chain: stored key -> GetSessionToken (MFA) -> AssumeRole per hop.

Each level is cached in the session cache and refreshed under its own lock,
so an MFA session is asked for once per lifetime and shared by every role
profile with the same source and device. The chain names its cached levels
(:func:`level_session_names`) and so answers whether a refresh now needs an MFA
code (:func:`needs_code`). The call that carries the code runs inside one MFA attempt
(:meth:`broker.aws.mfa.MfaCodes.attempt`): the code counts as used once STS accepted it.

AWS's duration rules decide the shape (:func:`plan`): AssumeRole signed with
temporary credentials is role chaining and gets at most one hour
(https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_terms-and-concepts.html#iam-term-role-chaining),
so a first role asked for longer than that is assumed with the long-lived key and
the MFA code instead of through the MFA session, as aws-vault's
``canUseGetSessionToken`` does.
"""

from __future__ import annotations

from collections.abc import Callable

from broker.aws.credentials import Credentials
from broker.aws.profiles import Chain
from broker.aws.session_cache import SessionCache, session_name
from broker.errors import ConfigError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # mfa imports subprocess, needed only when a session is made
    from broker.aws.mfa import MfaCodes
    from broker.config import Settings

#: DurationSeconds limits, seconds (STS API reference: GetSessionToken, AssumeRole).
GET_SESSION_TOKEN_LIMITS = (900, 129_600)
ASSUME_ROLE_LIMITS = (900, 43_200)
#: Role chaining: a role assumed with temporary credentials gets at most one hour.
ROLE_CHAINING_MAX = 3600
#: What AWS gives a role session when DurationSeconds is not sent.
DEFAULT_ROLE_DURATION = 3600


class ChainOptions:
    """How to run the chain: ``duration`` is the final credentials' lifetime (seconds,
    from ``--duration``), ``session_duration`` the MFA session's; ``no_session`` skips
    GetSessionToken; ``region`` and ``profile`` choose the STS client's settings."""

    def __init__(
        self,
        duration: int | None = None,
        no_session: bool = False,
        session_duration: int = 8 * 3600,
        region: str | None = None,
        profile: str | None = None,
    ) -> None:
        self.duration = duration
        self.no_session = no_session
        self.session_duration = session_duration
        self.region = region
        self.profile = profile

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        duration: int | None = None,
        no_session: bool = False,
        region: str | None = None,
        profile: str | None = None,
    ) -> ChainOptions:
        """The options every use case runs the chain with: the MFA session's lifetime from
        broker's config (``settings.session_duration``, seconds), the rest as given
        (``duration``: ``--duration`` in seconds; ``region`` already resolved; ``profile``
        the profile whose STS client settings apply, None for none)."""
        return cls(
            duration=duration,
            no_session=no_session,
            session_duration=settings.session_duration,
            region=region,
            profile=profile,
        )


class PlannedCall:
    """One STS call the chain makes: ``action`` is ``GetSessionToken`` or ``AssumeRole``;
    ``profile`` the level it makes (the key profile, or the hop); ``duration`` the
    DurationSeconds sent (None: not sent, AWS's default of one hour) and
    ``duration_source`` where it came from; ``serial`` the SerialNumber sent with the
    MFA code (None: no code); ``signed_with`` ``key`` (the long-lived key), ``session``
    (the MFA session) or ``role`` (the previous role's session: role chaining)."""

    def __init__(
        self,
        action: str,
        profile: str,
        *,
        signed_with: str,
        duration: int | None,
        duration_source: str,
        serial: str | None = None,
        role_arn: str | None = None,
        external_id: str | None = None,
        session_name: str | None = None,
    ) -> None:
        self.action = action
        self.profile = profile
        self.signed_with = signed_with
        self.duration = duration
        self.duration_source = duration_source
        self.serial = serial
        self.role_arn = role_arn
        self.external_id = external_id
        self.session_name = session_name

    def __repr__(self) -> str:
        return (
            f"PlannedCall({self.action} {self.profile} signed_with={self.signed_with} "
            f"duration={self.duration} serial={self.serial})"
        )


def _hop_duration(chain: Chain, index: int, options: ChainOptions) -> tuple[int | None, str]:
    """The DurationSeconds wanted for hop ``index`` and where it comes from."""
    hop = chain.hops[index]
    if index == len(chain.hops) - 1 and options.duration is not None:
        return options.duration, "--duration"
    hop.problem("duration_seconds")
    if hop.duration_seconds is not None:
        return hop.duration_seconds, f"duration_seconds in {hop.where}"
    return None, "AWS's default"


def _refuse_duration(source: str, message: str, hint: str) -> None:
    if source == "--duration":
        raise UsageError(f"--duration {message}", hint)
    raise ConfigError(f"{source}: {message}", hint)


def _direct_first_hop(chain: Chain, options: ChainOptions) -> bool:
    """Whether the first role is assumed with the long-lived key (no MFA session):
    with --no-session, or when it is asked for more than role chaining allows."""
    if options.no_session:
        return True
    wanted, _ = _hop_duration(chain, 0, options)
    return wanted is not None and wanted > ROLE_CHAINING_MAX


def plan(chain: Chain, options: ChainOptions) -> list[PlannedCall]:
    """The STS calls that make ``chain``'s credentials, in order, ignoring the cache.

    Raises:
        UsageError: ``--duration`` outside what AWS allows for the call it shapes.
        ConfigError: ``duration_seconds`` unusable or outside what AWS allows, naming
            the file and section.
    """
    calls: list[PlannedCall] = []
    if not chain.hops:
        if options.no_session:
            if options.duration is not None:
                raise UsageError(
                    "--duration has no effect with --no-session on a profile without a role",
                    "drop one of the two flags",
                )
            return calls
        seconds: int = options.session_duration
        source = "session_duration in broker's config"
        if options.duration is not None:
            seconds, source = options.duration, "--duration"
        low, high = GET_SESSION_TOKEN_LIMITS
        if not low <= seconds <= high:
            _refuse_duration(
                source,
                f"{seconds}s is outside what AWS allows for GetSessionToken "
                f"({low // 60} min to {high // 3600} h)",
                f"choose a value between {low} and {high} seconds",
            )
        return [
            PlannedCall(
                "GetSessionToken", chain.key_profile.name, signed_with="key",
                duration=seconds, duration_source=source, serial=chain.mfa_serial,
            )
        ]
    direct = _direct_first_hop(chain, options)
    if not direct:
        calls.append(
            PlannedCall(
                "GetSessionToken", chain.key_profile.name, signed_with="key",
                duration=options.session_duration,
                duration_source="session_duration in broker's config",
                serial=chain.mfa_serial,
            )
        )
    last = len(chain.hops) - 1
    for index, hop in enumerate(chain.hops):
        duration, source = _hop_duration(chain, index, options)
        signed_with = ("key" if direct else "session") if index == 0 else "role"
        if duration is not None:
            low, high = ASSUME_ROLE_LIMITS
            chained = signed_with != "key"
            if chained and duration > ROLE_CHAINING_MAX and index != last:
                duration = ROLE_CHAINING_MAX  # an intermediate role only carries the next call
            elif chained and duration > ROLE_CHAINING_MAX:
                _refuse_duration(
                    source,
                    f"{duration}s exceeds the 1 hour limit AWS sets for a role assumed with "
                    f"another role's session (role chaining: {' -> '.join(chain.names)})",
                    f"choose at most {ROLE_CHAINING_MAX} seconds",
                )
            elif not low <= duration <= high:
                _refuse_duration(
                    source,
                    f"{duration}s is outside what AWS allows for AssumeRole "
                    f"({low // 60} min to {high // 3600} h; the role's own maximum may be lower)",
                    f"choose a value between {low} and {high} seconds",
                )
        calls.append(
            PlannedCall(
                "AssumeRole", hop.name, signed_with=signed_with, duration=duration,
                duration_source=source,
                serial=chain.mfa_serial if signed_with == "key" else None,
                role_arn=hop.role_arn, external_id=hop.external_id,
                session_name=hop.role_session_name,
            )
        )
    return calls


def problems(chain: Chain, options: ChainOptions | None = None) -> list[str]:
    """What would stop ``chain`` before any call, as ``"message; next step"`` lines: the
    durations :func:`plan` refuses (for `list` and `doctor`, which must agree with `exec`)."""
    try:
        plan(chain, options or ChainOptions())
    except (ConfigError, UsageError) as exc:
        return [exc.as_problem()]
    return []


def check_duration(chain: Chain, options: ChainOptions) -> None:
    """Refuse durations AWS would refuse, before any prompt or call.

    Raises:
        UsageError, ConfigError: as :func:`plan`.
    """
    plan(chain, options)


def _lifetime_tag(options: ChainOptions | None, final: bool) -> str:
    """An explicit --duration gets its own cache entry for the credentials it shapes, so a
    short-lived request neither returns a long cached session nor leaves a short one
    behind for everything else built on the same level."""
    if final and options is not None and options.duration is not None:
        return f"duration={options.duration}"
    return ""


def hop_session_name(chain: Chain, index: int, options: ChainOptions) -> str:
    """The cache name of hop ``index``'s role session: every part that shapes the
    credentials (role, external id, session name, what signed the call, the MFA
    device when the call carries the code, an explicit --duration) is in it."""
    hop = chain.hops[index]
    direct = index == 0 and _direct_first_hop(chain, options)
    if index:
        below = hop_session_name(chain, index - 1, options)
    elif direct:
        below = f"key:{chain.key_profile.name}"
    else:
        below = mfa_session_name(chain, options)
    direct_mfa = chain.mfa_serial if direct else ""
    final = index == len(chain.hops) - 1
    return session_name(
        hop.name, "role", hop.role_arn, hop.external_id, hop.role_session_name, below, direct_mfa,
        _lifetime_tag(options, final) or None,
    )


def mfa_session_name(chain: Chain, options: ChainOptions | None = None) -> str:
    """The cache name of the key profile's MFA session (GetSessionToken)."""
    tag = _lifetime_tag(options, final=not chain.hops)
    return session_name(chain.key_profile.name, "session", chain.mfa_serial, tag or None)


def final_session_name(chain: Chain, options: ChainOptions) -> str | None:
    """Where the target's credentials are cached; None when they are not (raw key)."""
    if chain.hops:
        return hop_session_name(chain, len(chain.hops) - 1, options)
    if options.no_session:
        return None
    return mfa_session_name(chain, options)


def level_session_names(chain: Chain, options: ChainOptions) -> list[str]:
    """Every cached level of ``chain``, from the target down (the MFA session last,
    when the chain has one)."""
    names = [hop_session_name(chain, i, options) for i in reversed(range(len(chain.hops)))]
    has_mfa_session = (
        not _direct_first_hop(chain, options) if chain.hops else not options.no_session
    )
    if has_mfa_session:
        names.append(mfa_session_name(chain, options))
    return names


def needs_code(chain: Chain, options: ChainOptions, cache: SessionCache) -> bool:
    """Whether making ``chain``'s credentials now sends an MFA code (so may ask a person):
    the chain has an MFA device, makes at least one STS call (not the raw key of
    ``--no-session`` without a role), and every cached level down to the one that
    carries the code has expired in ``cache`` (or is within its refresh margin).

    When no profile of the chain sets ``mfa_serial`` but the key profile reads its key
    from an item it names (``broker_item``), the device may be that item's ``mfa serial``
    (:meth:`CredentialChain._serial_kept_with_key`), which only reading the item tells:
    such a chain counts as having a device, so that a refresh that may ask for a code is
    never treated as one that cannot."""
    if not chain.mfa_serial and not chain.key_profile.broker_item:
        return False
    names = level_session_names(chain, options)
    if not names:  # the long-lived key itself: no call, no code
        return False
    return all(cache.get(name) is None for name in names)


class CredentialChain:
    """Produces a profile's credentials, from the cache where it can.

    Sessions go through ``cache`` recording the chain's key profile
    (:meth:`SessionCache.for_key`). ``fresh``: never serve a cached level, make each
    again (a new session replaces the cached one), as proving a TOTP seed needs (a cached
    session would answer without AWS checking the code).
    """

    def __init__(
        self,
        chain: Chain,
        cache: SessionCache,
        load_master: Callable[[], Credentials],
        mfa: MfaCodes,
        options: ChainOptions,
        *,
        fresh: bool = False,
        key_serial: Callable[[], str | None] | None = None,
    ) -> None:
        self.chain = chain
        self.cache = cache.for_key(chain.key_profile.name)
        self.load_master = load_master
        self.mfa = mfa
        self.options = options
        self.fresh = fresh
        #: The MFA device kept with the key, for a chain whose profiles name none: asked
        #: after ``load_master`` (the same read), only for a call signed with the key.
        self.key_serial = key_serial
        self.calls: list[str] = []  # STS calls made, for tests and --debug

    def cached(self) -> Credentials | None:
        """The target's credentials if the cache holds them with more than the refresh margin
        left, else None (also for a ``--no-session`` chain without a role, whose raw key is
        never cached). Makes no STS call, asks for no MFA code and never raises.
        """
        name = final_session_name(self.chain, self.options)
        return self.cache.get(name) if name else None

    def get(self) -> Credentials:
        """The target's credentials: cached levels are reused, missing ones made.

        Raises:
            UsageError, ConfigError: as :func:`plan`, before any prompt or call.
            AuthenticationError, AWSError, NetworkError: STS refused or was unreachable.
        """
        steps = plan(self.chain, self.options)
        if not self.chain.hops:
            if self.options.no_session:
                return self.load_master()
            return self._mfa_session(steps[0])
        roles = [s for s in steps if s.action == "AssumeRole"]
        session = next((s for s in steps if s.action == "GetSessionToken"), None)
        return self._hop(len(self.chain.hops) - 1, roles, session)

    def _mfa_session(self, step: PlannedCall) -> Credentials:
        from broker.aws import sts

        def create() -> Credentials:
            master = self.load_master()
            serial = step.serial or self._serial_kept_with_key()

            def call(code: str | None) -> Credentials:
                self.calls.append("GetSessionToken")
                assert step.duration is not None
                return sts.get_session_token(
                    master, self.options.region, step.duration, serial, code,
                    profile=self.options.profile, key_profile=self.chain.key_profile.name,
                )

            return self._with_code(serial, call)

        return self.cache.get_or_create(
            mfa_session_name(self.chain, self.options),
            create,
            reuse=not self.fresh,
            kind="session",
            profile=self.chain.key_profile.name,
            mfa_serial=self.chain.mfa_serial or "",
        )

    def _serial_kept_with_key(self) -> str | None:
        """The MFA device named with the stored key (a ``broker_item``'s ``mfa serial``),
        for a chain whose profiles name none: the profile's ``mfa_serial`` always wins, as
        botocore reads only the profile. Cache names keep the profiles' device (None), so
        the cached fast path never needs the key to find a session."""
        return self.key_serial() if self.key_serial is not None else None

    def _with_code(
        self, serial: str | None, call: Callable[[str | None], Credentials]
    ) -> Credentials:
        """``call(code)`` with an MFA code for ``serial`` (None: no code). A code typed at
        the prompt that AWS refuses is asked for again while the prompt's budget lasts
        (``PROMPT_TRIES`` failed answers per command, malformed ones included:
        :meth:`MfaCodes.refused`).

        The whole exchange is one MFA attempt (:meth:`MfaCodes.attempt`): the device stays
        locked until STS has answered, and the code counts as used only if it accepted.
        """
        if not serial:
            return call(None)
        from broker import tty
        from broker.aws.mfa import tries_left
        from broker.errors import MFACodeRefused

        with self.mfa.attempt():
            while True:
                code = self.mfa.code_for(serial, self.chain)
                try:
                    return call(code)
                except MFACodeRefused as exc:
                    left = self.mfa.refused()
                    if not left:
                        raise
                    tty.write(f"broker: {exc.message}; {tries_left(left)}\n")

    def _hop(
        self, index: int, roles: list[PlannedCall], session: PlannedCall | None
    ) -> Credentials:
        from broker.aws import sts

        hop = self.chain.hops[index]
        step = roles[index]

        def create() -> Credentials:
            with_code = None  # the MFA device whose code goes with the call
            if step.signed_with == "role":
                source = self._hop(index - 1, roles, session)
            elif step.signed_with == "key":
                source = self.load_master()
                with_code = step.serial or self._serial_kept_with_key()
            else:
                assert session is not None
                source = self._mfa_session(session)
            assert step.role_arn is not None

            def call(code: str | None) -> Credentials:
                assert step.role_arn is not None
                self.calls.append(f"AssumeRole {hop.name}")
                return sts.assume_role(
                    source,
                    self.options.region,
                    step.role_arn,
                    duration=step.duration,
                    session_name=step.session_name,
                    external_id=step.external_id,
                    serial=with_code,  # only a call signed with the key carries a code
                    code=code,
                    profile=self.options.profile,
                    key_profile=self.chain.key_profile.name,
                )

            return self._with_code(with_code, call)

        return self.cache.get_or_create(
            hop_session_name(self.chain, index, self.options),
            create,
            reuse=not self.fresh,
            kind="role",
            profile=hop.name,
            role_arn=hop.role_arn or "",
        )
