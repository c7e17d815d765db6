"""What the processes broker starts receive in their environment.

Two kinds of process:

* the user's command (``exec``, ``exec --server``): everything broker inherited, less
  the credential variables :data:`broker.services.present.SCRUBBED` and less broker's own
  secret inputs (:func:`withheld_variables`); plus the credentials (or the endpoint).
* the helpers broker runs for itself (gpg, the gpg-agent gpg starts, git, ``pass``): a
  short allow-list (:func:`helper_environment`), enough to find the user's files, draw a
  pinentry and sign a commit. A gpg-agent keeps the environment it started with for its
  whole life, and git runs hooks from the store: neither sees anything else broker had.

Standard library only, and cheap: this runs on the cached fast path.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from broker.aws.profiles import AwsConfig
    from broker.config import Settings

#: Variables that hold broker's own secret inputs by convention: the 1Password
#: service-account token and the passphrase of aws-vault's file store.
SECRET_INPUTS = ("OP_SERVICE_ACCOUNT_TOKEN", "AWS_VAULT_FILE_PASSPHRASE")

#: What a helper may need: the user's files, locale, the terminal or display a pinentry
#: draws on, the session bus and runtime directory gpg-agent and pinentry use.
HELPER_VARIABLES = frozenset({
    "HOME", "USER", "LOGNAME", "PATH", "TMPDIR", "TZ", "LANG", "LANGUAGE",
    "TERM", "TERMINFO", "TERMINFO_DIRS", "COLORTERM",
    "GNUPGHOME", "GPG_TTY", "GPG_AGENT_INFO", "PINENTRY_USER_DATA", "INSIDE_EMACS",
    "DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY", "XDG_SESSION_TYPE",
    "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS", "LD_LIBRARY_PATH",
})
HELPER_PREFIXES = ("LC_",)
#: What git also needs: its configuration, identity and commit signing.
GIT_VARIABLES = frozenset({"XDG_CONFIG_HOME", "EMAIL", "SSH_AUTH_SOCK"})
GIT_PREFIXES = ("GIT_",)
#: What the real ``pass`` command also reads (aws-vault's pass store).
PASS_PREFIXES = ("PASSWORD_STORE_",)


def helper_environment(
    environ: Mapping[str, str],
    *,
    also: Iterable[str] = (),
    prefixes: Iterable[str] = (),
) -> dict[str, str]:
    """The allow-listed part of ``environ`` for a helper program, plus ``also`` and any
    variable starting with one of ``prefixes``."""
    names = HELPER_VARIABLES.union(also)
    starts = (*HELPER_PREFIXES, *prefixes)
    return {k: v for k, v in environ.items() if k in names or k.startswith(starts)}


def _env_names(value: object) -> Iterator[str]:
    """The NAMEs of ``env:NAME`` references anywhere in ``value`` (settings tables)."""
    if isinstance(value, str):
        if value[:4].lower() == "env:" and value[4:]:
            yield value[4:]
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _env_names(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _env_names(item)


def withheld_variables(
    settings: Settings | None = None, aws: AwsConfig | None = None
) -> frozenset[str]:
    """Variables a child of ``exec`` never receives: :data:`SECRET_INPUTS`, every variable
    an ``env:NAME`` reference in broker's settings names (a GPG passphrase, a token), and
    every one a profile's ``broker_totp = env:NAME`` names (a TOTP seed).

    ``settings`` and ``aws`` default to broker's config and ~/.aws/config as loaded now;
    one that cannot be read adds nothing (the command reading it has failed already).
    """
    names = set(SECRET_INPUTS)
    try:
        if settings is None:
            from broker import config

            settings = config.load()
        names.update(_env_names(settings.backends))
    except Exception:  # noqa: S110 - see the docstring
        pass
    try:
        if aws is None:
            from broker.aws import profiles

            aws = profiles.load()
        for profile in aws.profiles.values():
            names.update(_env_names(profile.values.get("broker_totp")))
    except Exception:  # noqa: S110 - see the docstring
        pass
    return frozenset(names)
