"""Where MFA codes come from, and the guard that never sends one twice.

Sources, asked in this order:

1. an explicit code (``--mfa-code``; :class:`ExplicitCode`);
2. the profile's ``mfa_process`` (:class:`MfaProcess`);
3. a TOTP seed kept with the key profile's key (the Item field ``totp``: base32 or an
   ``otpauth://`` URI, stored in each backend's native shape; :class:`StoredSeed`);
4. the profile's ``broker_totp`` secret reference: 6 to 8 digits are a code (as from
   ``op://...?attribute=totp``), anything else a seed or an otpauth URI
   (:class:`TotpReference`);
5. a prompt on /dev/tty (an SDK running ``credential_process`` captures stdout and
   stderr, so the prompt must use the terminal; :class:`Prompt`).

Each source is a small object behind one interface, :class:`CodeSource`: it offers a
code or a seed for a device, or nothing (the next one is asked).

The reuse guard: AWS refuses a code already used for the same device. The last accepted
step per ``mfa_serial`` is kept in :mod:`broker.aws.mfa_ledger`; a computed code that
would repeat it waits for the next step (a countdown on the terminal), and a typed or
explicit code equal to the last accepted one is refused with the reason. ``mfa_process``
is run again after the next step when it repeats a code just used (AWS would refuse it:
each code is accepted once per device). A code counts as used once STS accepted
it: the credential chain makes each call that carries a code inside
:meth:`MfaCodes.attempt` (:mod:`broker.aws.chain`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator
from dataclasses import InitVar, dataclass, field
from typing import Protocol

from broker import tty
from broker.aws import totp
from broker.aws.mfa_ledger import MfaLedger, UsedCode
from broker.aws.profiles import Chain
from broker.aws.totp import TotpSeed, parse_seed
from broker.backend import TOTP, Item
from broker.errors import AuthenticationError, ConfigError, MFARequired

_CODE = re.compile(r"^[0-9]{6}$")  # ASCII digits only: \d would take any script's digits
_CODE_SHAPE = re.compile(r"^[0-9]{6,8}$")
#: A typed code equal to the last accepted one this recently is a reuse, not a coincidence.
REUSE_WINDOW = 300
#: How often a reference that returns live codes is asked again for a fresher one.
REFETCH_LIMIT = 3

#: How many answers the MFA prompt takes in one command before it gives up: a typo (5
#: digits, a letter) or a code AWS refuses is asked again, as pinentry asks three times for
#: a passphrase. Both kinds of failure count against this one budget (:class:`Prompt`).
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

    ``live``: the source hands out live codes (``mfa_process``, a reference to live
    codes), so asking it again after the next time step may give a fresher code.
    """

    code: str | None = None
    seed: TotpSeed | None = None
    live: bool = False


class CodeSource(Protocol):
    """Where MFA codes may come from.

    ``name`` is what `broker list` shows for it, ``origin`` how messages name it ("the MFA
    code from <origin> is not 6 digits"). :class:`MfaCodes` checks the shape of every code
    offered.
    """

    name: str
    origin: str

    def offer(self, serial: str, chain: Chain) -> Offer | None:
        """A code or a seed for device ``serial`` of ``chain``; None when this source has
        nothing for it (the next source is asked).

        Raises:
            BrokerError: the source is configured but cannot give a code (MFARequired,
                AuthenticationError, ConfigError...).
        """
        ...


def check_code(code: str, origin: str) -> str:
    """``code`` without blanks, if it is 6 ASCII digits.

    Raises:
        AuthenticationError: anything else, naming ``origin``.
    """
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
    """Which source will give ``chain``'s codes ("" without an MFA device), for `list`:
    a :attr:`CodeSource.name`, in the order :func:`default_sources` asks them.
    ``seed_stored``: whether a seed is kept with the key (None: not known)."""
    if not chain.mfa_serial:
        return ""
    if _nearest(chain, "mfa_process"):
        return MfaProcess.name
    if seed_stored:
        return StoredSeed.name
    if _nearest(chain, "broker_totp"):
        return TotpReference.name
    return Prompt.name


def tries_left(left: int) -> str:
    """The end of a prompt's retry message: "try again (2 tries left)", "(1 try left)"."""
    return f"try again ({left} {'try' if left == 1 else 'tries'} left)"


class ExplicitCode:
    """A code given on the command line (``--mfa-code``): offered once, then nothing."""

    name = origin = "--mfa-code"

    def __init__(self, code: str | None) -> None:
        self._code = code

    def offer(self, serial: str, chain: Chain) -> Offer | None:
        """:meth:`CodeSource.offer`: the ``--mfa-code`` value as a code the first time (its shape
        is checked by :class:`MfaCodes`), None from then on and when none was given.
        """
        code, self._code = self._code, None
        return Offer(code=code) if code else None


class MfaProcess:
    """The profile's ``mfa_process`` (the nearest in the chain): a command that prints a
    code on stdout. Its codes are live: it is run again for a fresher one."""

    name = FROM_PROCESS
    origin = "mfa_process"

    def code(self, serial: str, chain: Chain) -> str | None:
        """The code the command prints; None when no profile of ``chain`` sets one.

        Raises:
            MFARequired: the command cannot run, times out (120 s) or fails.
            AuthenticationError: it printed no 6-digit code.
        """
        command = _nearest(chain, "mfa_process")
        if not command:
            return None
        import subprocess  # here: `broker list` imports this module and starts no process
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
        return check_code(result.stdout.decode("utf-8", "replace"), self.origin)

    def offer(self, serial: str, chain: Chain) -> Offer | None:
        """:meth:`CodeSource.offer`: :meth:`code` as a live code, None without ``mfa_process``.

        Raises:
            MFARequired, AuthenticationError: as :meth:`code`.
        """
        code = self.code(serial, chain)
        return Offer(code=code, live=True) if code else None


class StoredSeed:
    """The TOTP seed kept with the key profile's key (the Item field ``totp``).

    ``key_item`` returns that Item (already read for the key, so the seed costs no second
    read); None, or an Item without the field, offers nothing.
    """

    name = FROM_STORED
    origin = "the stored TOTP seed"

    def __init__(self, key_item: Callable[[], Item | None] | None = None) -> None:
        self.key_item = key_item

    def offer(self, serial: str, chain: Chain) -> Offer | None:
        """Raises ConfigError when the stored value is no seed."""
        item = self.key_item() if self.key_item is not None else None
        value = item.get(TOTP) if item is not None else None
        if not value:
            return None
        name = chain.key_profile.name
        seed = parse_seed(
            value, origin=f"the TOTP seed stored with {name}'s key", error=ConfigError,
            hint=f"store it again with `broker totp set {name}`",
        )
        return Offer(seed=seed)


class TotpReference:
    """The profile's ``broker_totp`` secret reference (the nearest in the chain), resolved
    with ``resolve``: 6 to 8 digits are a live code (as from ``op://...?attribute=totp``),
    anything else a seed or an otpauth URI. Without ``resolve`` it offers nothing."""

    name = FROM_REFERENCE
    origin = "broker_totp"

    def __init__(self, resolve: Callable[[str], str] | None = None) -> None:
        self.resolve = resolve

    def offer(self, serial: str, chain: Chain) -> Offer | None:
        """Raises ConfigError when the value is neither a code nor a seed."""
        reference = _nearest(chain, "broker_totp")
        if not reference or self.resolve is None:
            return None
        value = self.resolve(reference).strip()
        compact = value.replace(" ", "")
        if _CODE_SHAPE.match(compact):  # the reference hands out codes, not the seed
            return Offer(code=compact, live=True)
        seed = parse_seed(
            value, origin="the seed from broker_totp", error=ConfigError,
            hint="point broker_totp at a base32 seed, an otpauth:// URI or a 6-digit code",
        )
        return Offer(seed=seed)


class Prompt:
    """A code typed on the terminal (/dev/tty); nothing without a terminal.

    One instance serves one command (one :class:`MfaCodes`), and every failed answer counts
    against one budget of ``PROMPT_TRIES``: one that is not 6 digits (:meth:`code`) and one
    AWS refused (:meth:`refused`) alike, so alternating the two never starts the count
    again.
    """

    name = FROM_PROMPT
    origin = PROMPT_ORIGIN

    def __init__(self) -> None:
        #: Answers that failed so far: malformed, or refused by AWS.
        self.failures = 0

    @property
    def tries_left(self) -> int:
        """How many more answers this prompt takes (0: none)."""
        return max(PROMPT_TRIES - self.failures, 0)

    def refused(self) -> int:
        """Count the code last typed as refused by AWS; the tries left after it (0: the
        command ends)."""
        self.failures += 1
        return self.tries_left

    def code(self, serial: str, chain: Chain) -> str | None:
        """The code typed; one that is not 6 digits is asked for again while the budget
        lasts (``PROMPT_TRIES`` failed answers per instance, refused codes included).

        Raises:
            AuthenticationError: the answer that used up the budget was not 6 digits
                either, or the budget was used up before (by codes AWS refused).
        """
        if not tty.has_tty():
            return None
        if not self.tries_left:
            raise AuthenticationError(
                f"the MFA prompt took {PROMPT_TRIES} codes that failed already",
                "run the command again with the code your device shows",
            )
        while True:
            typed = tty.prompt(f"MFA code for {serial}: ")
            try:
                return check_code(typed, self.origin)
            except AuthenticationError as exc:
                self.failures += 1
                if not self.tries_left:
                    raise
                tty.write(f"broker: {exc.message}; {tries_left(self.tries_left)}\n")

    def offer(self, serial: str, chain: Chain) -> Offer | None:
        """:meth:`CodeSource.offer`: :meth:`code`, None without a terminal.

        Raises:
            AuthenticationError: as :meth:`code`.
        """
        code = self.code(serial, chain)
        return Offer(code=code) if code else None


def default_sources(
    *,
    key_item: Callable[[], Item | None] | None = None,
    resolve: Callable[[str], str] | None = None,
) -> list[CodeSource]:
    """The sources `exec` asks, in order: ``mfa_process``, the stored seed (from
    ``key_item``), ``broker_totp`` (resolved with ``resolve``), the prompt."""
    return [MfaProcess(), StoredSeed(key_item), TotpReference(resolve), Prompt()]


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

    ``explicit``: a code given on the command line (``--mfa-code``), asked before
    ``sources`` and used once (:class:`ExplicitCode`).
    """

    explicit: InitVar[str | None] = None
    sources: list[CodeSource] = field(default_factory=default_sources)
    clock: totp.Clock = field(default_factory=_default_clock)
    ledger: MfaLedger = field(default_factory=MfaLedger)
    asked: int = 0
    #: The code last handed out, with its step.
    last_issued: UsedCode | None = None
    _last_source: CodeSource | None = field(default=None, repr=False)
    _pending: list[_Pending] = field(default_factory=list, repr=False)
    _depth: int = 0

    @property
    def last_origin(self) -> str:
        """The :attr:`CodeSource.origin` of the code last handed out ("" before any)."""
        return self._last_source.origin if self._last_source is not None else ""

    def __post_init__(self, explicit: str | None) -> None:
        if explicit:
            self.sources = [ExplicitCode(explicit), *self.sources]

    # -- choosing and guarding ----------------------------------------------------------

    def code_for(self, serial: str, chain: Chain) -> str:
        """The code to send for device ``serial`` of ``chain`` now: from the first source
        that offers one, settled by the reuse guard (which may wait for the next step).

        Inside :meth:`attempt` the device stays locked and the code is recorded when the
        attempt ends without an error; outside, it is recorded at once as handed out.

        Raises:
            MFARequired: no source offers a code.
            AuthenticationError: a code of the wrong shape, or one already used.
        """
        self.asked += 1
        source, offer = self._offer(serial, chain)
        lock: contextlib.ExitStack | None = None
        if not any(p.serial == serial and p.lock for p in self._pending):
            lock = contextlib.ExitStack()
            lock.enter_context(self.ledger.device_lock(serial))
        try:
            used = self._settle(serial, chain, source, offer)
        except BaseException:
            if lock is not None:
                lock.close()
            raise
        self.last_issued, self._last_source = used, source
        pending = _Pending(serial, used, lock)
        if self._depth:
            self._pending.append(pending)  # recorded when STS has accepted it
        else:  # no attempt to see the end of: count it as handed out now
            pending.used = dataclasses.replace(used, accepted=False)
            self._commit([pending])
        return used.code

    def refused(self) -> int | None:
        """Count the code last handed out as refused by AWS. When it was typed at the
        prompt: how many more answers the prompt takes (0: none, the command ends), from the
        budget malformed answers share (:meth:`Prompt.refused`); None when it came from any
        other source, which would give the same code again and is not asked again."""
        source = self._last_source
        return source.refused() if isinstance(source, Prompt) else None

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

    @staticmethod
    def _ask(source: CodeSource, serial: str, chain: Chain) -> Offer | None:
        """``source``'s offer, its code checked for shape (naming the source)."""
        offer = source.offer(serial, chain)
        if offer is None or offer.code is None:
            return offer
        return dataclasses.replace(offer, code=check_code(offer.code, source.origin))

    def _offer(self, serial: str, chain: Chain) -> tuple[CodeSource, Offer]:
        for source in self.sources:
            offer = self._ask(source, serial, chain)
            if offer is not None:
                return source, offer
        raise MFARequired(
            f"an MFA code for {serial} is needed and there is no terminal to ask on",
            "pass --mfa-code, set mfa_process in the profile, keep a TOTP seed with the key "
            f"(`broker totp set {chain.key_profile.name}`), or run from a terminal",
        )

    def _settle(self, serial: str, chain: Chain, source: CodeSource, offer: Offer) -> UsedCode:
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
            if not offer.live:  # a typed code: refused only if STS took it already
                same = same and last is not None and last.accepted
            if not same:
                return UsedCode(step, totp.DEFAULT_PERIOD, offer.code, now)
            assert last is not None
            ago = max(int(now - last.at), 0)
            if not offer.live or refetched >= REFETCH_LIMIT:
                raise AuthenticationError(
                    f"the MFA code from {source.origin} was already used for {serial} {ago} s "
                    "ago, and AWS accepts each code only once",
                    "wait for the next code your device shows (at most 30 s), then try again",
                )
            # A live source repeating a code just used for this device (AWS would refuse
            # it): wait for the next step and ask it again.
            self.clock.wait_until(
                (step + 1) * totp.DEFAULT_PERIOD,
                f"broker: the MFA code for {serial} was used {ago} s ago; next code in",
            )
            again = self._ask(source, serial, chain)
            if again is None:
                raise MFARequired(f"{source.origin} gave no code for {serial}", "check the command")
            offer = again
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
