"""Where MFA codes come from, and the guard that never sends one twice.

Sources, asked in this order:

1. an explicit code (``--mfa-code``);
2. the profile's ``mfa_process``;
3. a TOTP seed kept with the key profile's key (the Item field ``totp``: base32 or an
   ``otpauth://`` URI, stored in each backend's native shape);
4. the profile's ``broker_totp`` secret reference: 6 to 8 digits are a code (as from
   ``op://...?attribute=totp``), anything else a seed or an otpauth URI;
5. a prompt on /dev/tty (an SDK running ``credential_process`` captures stdout and
   stderr, so the prompt must use the terminal).

The reuse guard: AWS refuses a code already used for the same device. The last accepted
step per ``mfa_serial`` is kept in :mod:`broker.aws.mfa_ledger`; a computed code that
would repeat it waits for the next step (a countdown on the terminal), and a typed or
explicit code equal to the last accepted one is refused with the reason. ``mfa_process``
is run again after the next step when it repeats a code just used (AWS would refuse it:
each code is accepted once per device). A code counts as used once STS accepted
it: :class:`GuardedSessions` wraps each session refresh in :meth:`MfaCodes.attempt`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from broker import tty
from broker.aws import totp
from broker.aws.credentials import Credentials
from broker.aws.mfa_ledger import MfaLedger, UsedCode
from broker.aws.profiles import Chain
from broker.aws.session_cache import SessionCache
from broker.aws.totp import TotpSeed, parse_seed
from broker.backend import TOTP, Item
from broker.errors import AuthenticationError, ConfigError, MFARequired

_CODE = re.compile(r"^[0-9]{6}$")  # ASCII digits only: \d would take any script's digits
_CODE_SHAPE = re.compile(r"^[0-9]{6,8}$")
#: A typed code equal to the last accepted one this recently is a reuse, not a coincidence.
REUSE_WINDOW = 300
#: How often a reference that returns live codes is asked again for a fresher one.
REFETCH_LIMIT = 3

#: How many codes a prompt takes before it gives up: a typo (5 digits, a letter, a code
#: AWS refuses) is asked again, as pinentry asks three times for a passphrase.
PROMPT_TRIES = 3
#: Where a code typed at the prompt comes from (:attr:`MfaCodes.last_origin`).
PROMPT_ORIGIN = "the prompt"

# What `broker list` shows for each source.
FROM_PROCESS = "mfa_process"
FROM_STORED = "stored totp"
FROM_REFERENCE = "broker_totp"
FROM_PROMPT = "prompt"


@dataclass(frozen=True)
class Offer:
    """What a source offers: a code as it is, or a seed to compute one from.

    ``refetch`` asks the source again (a reference to live codes, or ``mfa_process``).
    """

    origin: str
    code: str | None = None
    seed: TotpSeed | None = None
    refetch: Callable[[], Offer] | None = None


#: A source returns a 6-digit code, or None when it has nothing for this device.
CodeSource = Callable[[str, Chain], "str | None"]


def check_code(code: str, origin: str) -> str:
    code = code.strip().replace(" ", "")
    if not _CODE.match(code):
        raise AuthenticationError(
            f"the MFA code from {origin} is not 6 digits", "give the 6-digit code your device shows"
        )
    return code


def _nearest(chain: Chain, attribute: str) -> str | None:
    """The setting from the target profile, walking down the chain to the key profile."""
    for profile in [chain.target, *reversed(chain.hops), chain.key_profile]:
        value = getattr(profile, attribute)
        if value:
            return str(value)
    return None


def source_name(chain: Chain, seed_stored: bool | None) -> str:
    """Which source will give ``chain``'s codes ("" without an MFA device), for `list`."""
    if not chain.mfa_serial:
        return ""
    if _nearest(chain, "mfa_process"):
        return FROM_PROCESS
    if seed_stored:
        return FROM_STORED
    if _nearest(chain, "broker_totp"):
        return FROM_REFERENCE
    return FROM_PROMPT


def mfa_process_source(serial: str, chain: Chain) -> str | None:
    command = _nearest(chain, "mfa_process")
    if not command:
        return None
    # stdout is the code; stderr ("Touch your YubiKey") goes to the terminal, because an
    # SDK running credential_process captures broker's own stderr.
    try:
        with tty.helper_stderr() as stderr:
            result = subprocess.run(  # noqa: S602 - a command the user configured, like aws-vault
                command, shell=True, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                stderr=stderr, timeout=120, check=False,
            )
    except subprocess.TimeoutExpired:
        raise MFARequired("mfa_process did not finish in 120 s", "check the command") from None
    except OSError as exc:
        raise MFARequired(
            f"cannot run mfa_process: {exc.strerror or exc}", "check the command"
        ) from None
    if result.returncode != 0:
        raise MFARequired(
            f"mfa_process exited with status {result.returncode}",
            "run the command by hand to see why",
        )
    return check_code(result.stdout.decode("utf-8", "replace"), "mfa_process")


def tries_left(left: int) -> str:
    return f"try again ({left} {'try' if left == 1 else 'tries'} left)"


def tty_source(serial: str, chain: Chain) -> str | None:
    """A code typed on the terminal; one that is not 6 digits is asked for again."""
    if not tty.has_tty():
        return None
    for left in reversed(range(PROMPT_TRIES)):
        typed = tty.prompt(f"MFA code for {serial}: ")
        try:
            return check_code(typed, PROMPT_ORIGIN)
        except AuthenticationError as exc:
            if not left:
                raise
            tty.write(f"broker: {exc.message}; {tries_left(left)}\n")
    raise AssertionError("unreachable")  # pragma: no cover


def stored_seed_source(serial: str, chain: Chain) -> str | None:
    """Stands in :attr:`MfaCodes.sources` for the TOTP seed kept with the key, which
    :class:`MfaCodes` computes from (it holds the key's Item and the clock)."""
    return None


def reference_source(serial: str, chain: Chain) -> str | None:
    """Stands in :attr:`MfaCodes.sources` for the profile's ``broker_totp`` reference,
    which :class:`MfaCodes` resolves (a code, or a seed it computes from)."""
    return None


_ORIGINS: dict[CodeSource, str] = {mfa_process_source: "mfa_process", tty_source: PROMPT_ORIGIN}


def default_sources() -> list[CodeSource]:
    return [mfa_process_source, stored_seed_source, reference_source, tty_source]


@dataclass
class _Pending:
    serial: str
    used: UsedCode
    lock: contextlib.ExitStack | None


def _default_clock() -> totp.Clock:
    return totp.CLOCK  # looked up when used, so tests can replace it


@dataclass
class MfaCodes:
    """Ask each source in turn, then let the reuse guard settle the code.

    ``key_item`` returns the key profile's stored Item (already read for the key, so
    the seed costs no second read); ``resolve`` resolves ``broker_totp`` references.
    An explicit ``--mfa-code`` is used once.
    """

    explicit: str | None = None
    sources: list[CodeSource] = field(default_factory=default_sources)
    key_item: Callable[[], Item | None] | None = None
    resolve: Callable[[str], str] | None = None
    clock: totp.Clock = field(default_factory=_default_clock)
    ledger: MfaLedger = field(default_factory=MfaLedger)
    asked: int = 0
    #: The code last handed out, with its step, and the source it came from.
    last_issued: UsedCode | None = None
    last_origin: str = ""
    _pending: list[_Pending] = field(default_factory=list, repr=False)
    _depth: int = 0

    # -- sources that need this object's collaborators --------------------------------

    def _stored_seed(self, chain: Chain) -> Offer | None:
        item = self.key_item() if self.key_item is not None else None
        value = item.get(TOTP) if item is not None else None
        if not value:
            return None
        name = chain.key_profile.name
        seed = parse_seed(
            value, origin=f"the TOTP seed stored with {name}'s key", error=ConfigError,
            hint=f"store it again with `broker totp set {name}`",
        )
        return Offer("the stored TOTP seed", seed=seed)

    def _reference(self, chain: Chain) -> Offer | None:
        reference = _nearest(chain, "broker_totp")
        if not reference or self.resolve is None:
            return None
        return self._from_reference(reference)

    def _from_reference(self, reference: str) -> Offer:
        assert self.resolve is not None
        value = self.resolve(reference).strip()
        compact = value.replace(" ", "")
        if _CODE_SHAPE.match(compact):  # the reference hands out codes, not the seed
            return Offer(
                "broker_totp", code=check_code(compact, "broker_totp"),
                refetch=lambda: self._from_reference(reference),
            )
        seed = parse_seed(
            value, origin="the seed from broker_totp", error=ConfigError,
            hint="point broker_totp at a base32 seed, an otpauth:// URI or a 6-digit code",
        )
        return Offer("broker_totp", seed=seed)

    def _from_source(self, source: CodeSource, serial: str, chain: Chain) -> Offer | None:
        code = source(serial, chain)
        if not code:
            return None
        origin = _ORIGINS.get(source, "a code source")
        # mfa_process hands out live codes: one equal to a code just used for this device
        # would be refused by AWS, so the guard waits for the next step and runs it again.
        refetch = None
        if source is mfa_process_source:
            def again() -> Offer:
                offer = self._from_source(source, serial, chain)
                if offer is None:
                    raise MFARequired(f"mfa_process gave no code for {serial}", "check the command")
                return offer

            refetch = again
        return Offer(origin, code=check_code(code, origin), refetch=refetch)

    # -- choosing and guarding ----------------------------------------------------------

    def code_for(self, serial: str, chain: Chain) -> str:
        self.asked += 1
        offer = self._offer(serial, chain)
        lock: contextlib.ExitStack | None = None
        if not any(p.serial == serial and p.lock for p in self._pending):
            lock = contextlib.ExitStack()
            lock.enter_context(self.ledger.device_lock(serial))
        try:
            used = self._settle(serial, offer)
        except BaseException:
            if lock is not None:
                lock.close()
            raise
        self.last_issued, self.last_origin = used, offer.origin
        pending = _Pending(serial, used, lock)
        if self._depth:
            self._pending.append(pending)  # recorded when STS has accepted it
        else:  # no attempt to see the end of: count it as handed out now
            pending.used = dataclasses.replace(used, accepted=False)
            self._commit([pending])
        return used.code

    @contextlib.contextmanager
    def attempt(self) -> Iterator[None]:
        """Codes handed out inside count as used if the block ends without an error
        (STS accepted them); the device locks are held until then."""
        mark = len(self._pending)
        self._depth += 1
        try:
            yield
        except BaseException:
            self._release(self._pending[mark:])
            del self._pending[mark:]
            raise
        else:
            self._commit(self._pending[mark:])
            del self._pending[mark:]
        finally:
            self._depth -= 1

    def _commit(self, pending: list[_Pending]) -> None:
        try:
            for entry in pending:
                self.ledger.record(entry.serial, entry.used)
        finally:
            self._release(pending)

    @staticmethod
    def _release(pending: list[_Pending]) -> None:
        for entry in reversed(pending):
            if entry.lock is not None:
                entry.lock.close()

    def _offer(self, serial: str, chain: Chain) -> Offer:
        if self.explicit:
            explicit, self.explicit = self.explicit, None
            return Offer("--mfa-code", code=check_code(explicit, "--mfa-code"))
        for source in self.sources:
            offer: Offer | None
            if source is stored_seed_source:
                offer = self._stored_seed(chain)
            elif source is reference_source:
                offer = self._reference(chain)
            else:
                offer = self._from_source(source, serial, chain)
            if offer is not None:
                return offer
        raise MFARequired(
            f"an MFA code for {serial} is needed and there is no terminal to ask on",
            "pass --mfa-code, set mfa_process in the profile, keep a TOTP seed with the key "
            f"(`broker totp set {chain.key_profile.name}`), or run from a terminal",
        )

    def _settle(self, serial: str, offer: Offer) -> UsedCode:
        """The code to send, waiting for a fresh one or refusing a reused one."""
        if offer.seed is not None:
            return self._computed(serial, offer.seed)
        assert offer.code is not None
        refetched = 0
        while True:
            now = self.clock.now()
            step = int(now // totp.DEFAULT_PERIOD)
            last = self.ledger.last(serial)
            same = (
                last is not None and now - last.at < REUSE_WINDOW
                and self.ledger.same_code(serial, last, offer.code)
            )
            if offer.refetch is None:  # a typed code: refused only if STS took it already
                same = same and last is not None and last.accepted
            if not same:
                return UsedCode(step, totp.DEFAULT_PERIOD, offer.code, now)
            assert last is not None
            ago = max(int(now - last.at), 0)
            if offer.refetch is None or refetched >= REFETCH_LIMIT:
                raise AuthenticationError(
                    f"the MFA code from {offer.origin} was already used for {serial} {ago} s "
                    "ago, and AWS accepts each code only once",
                    "wait for the next code your device shows (at most 30 s), then try again",
                )
            self.clock.wait_until(
                (step + 1) * totp.DEFAULT_PERIOD,
                f"broker: the MFA code for {serial} was used {ago} s ago; next code in",
            )
            offer = offer.refetch()
            refetched += 1
            if offer.seed is not None:
                return self._computed(serial, offer.seed)
            assert offer.code is not None

    def _computed(self, serial: str, seed: TotpSeed) -> UsedCode:
        while True:
            now = self.clock.now()
            step = seed.step_at(now)
            code = seed.code_at_step(step)
            last = self.ledger.last(serial)
            if last is None:
                return UsedCode(step, seed.period, code, now)
            if last.until - now > 2 * max(seed.period, last.period):
                # a step from the future: the clock went back, or the state is damaged;
                # waiting for it could take hours, and this code is not the one used
                return UsedCode(step, seed.period, code, now)
            if step * seed.period < last.until:  # this step's code (or an older one) was used
                wait_for = float(last.until)
            elif now - last.at < REUSE_WINDOW and self.ledger.same_code(serial, last, code):
                # a rare repeat
                wait_for = float((step + 1) * seed.period)
            else:
                return UsedCode(step, seed.period, code, now)
            self.clock.wait_until(
                wait_for, f"broker: the current MFA code for {serial} was used; next code in"
            )


class GuardedSessions(SessionCache):
    """The session cache, with each refresh made one MFA attempt: a code handed out
    while creating a session counts as used once that session was created."""

    def __init__(self, cache: SessionCache, codes: MfaCodes) -> None:
        super().__init__(cache.backend, cache.margin, key_profile=cache.key_profile)
        self.codes = codes

    def get_or_create(
        self, name: str, create: Callable[[], Credentials], **meta: str
    ) -> Credentials:
        def attempt() -> Credentials:
            with self.codes.attempt():
                return create()

        return super().get_or_create(name, attempt, **meta)
