"""A stand-in for the 1Password CLI (``op``) signed in through the desktop app.

1Password cannot be reached from here, so the CLI transport's tests run broker
against this script, installed as ``op`` (or ``op.exe``) in a temporary folder put
first on PATH. It stands in for the CLI, the desktop app and the 1Password servers
at once; their state (accounts, vaults, items, who approved what, every call) is a
JSON file, 0600, named by ``FAKE_OP_STATE``. It is a test fixture: the values it
holds are the tests' made-up keys.

It follows the CLI's documented behaviour and its messages as users report them:

* item JSON (``op item get --format json``): "Item templates are formatted
  similarly to the JSON output for op item get"
  (https://developer.1password.com/docs/cli/item-template-json); field ``type``
  names, ``purpose``, ``section``, ``reference``, an OTP field's current code under
  ``totp``, ``vault {id, name}``, ``tags``, ``version`` (1Password's op-js types,
  src/index.ts); ``op vault list`` rows ``{id, name}``; ``op account list`` rows
  ``{url, email, user_uuid, account_uuid, shorthand}``; ``op whoami`` the same plus
  ``user_type``;
* ``op item create -`` reads the item's JSON template on stdin, ``op item edit
  ITEM --vault V`` reads it on stdin (CLI 2.23.0 and later): how 1Password's op-js
  and Terraform provider (internal/onepassword/cli/op.go) drive the CLI. Set an older
  ``version`` (:meth:`FakeOp.update`) and ``op item edit`` ignores stdin, changes
  nothing and answers with the item as ``op item get`` does, as those versions did;
* app integration: one approval per terminal session, lasting 10 idle minutes,
  revoked when the app locks (https://developer.1password.com/docs/cli/app-integration-security);
  several accounts need ``--account`` or ``OP_ACCOUNT`` (the ``signin`` reference:
  https://developer.1password.com/docs/cli/reference/commands/signin); the terminal
  session is the process's session id here;
* errors: ``[ERROR] YYYY/MM/DD HH:MM:SS <message>`` on stderr, exit code 1, with the
  CLI's words: ``"X" isn't an item. Specify the item with its UUID, name, or
  domain.``, ``More than one item matches "X". Try again and specify the item by
  its ID:``, ``"V" isn't a vault in this account. Specify the vault with its ID or
  name.``, ``account is not signed in``, ``multiple accounts found. Use the
  --account flag or set the OP_ACCOUNT environment variable to select an
  account.``, ``error initializing client: found no accounts for filter "X"``,
  ``error initializing client: authorization prompt dismissed, please try
  again``, ``connecting to desktop app: read: connection reset, make sure 1Password
  CLI is installed correctly, then open the 1Password app, select 1Password >
  Settings > Developer and make sure the 'Integrate with 1Password CLI' setting is
  turned on...``, and ``No accounts configured for use with 1Password CLI.`` when
  the integration is off (reports in 1Password's op-vscode, shell-plugins and
  terraform-provider issue trackers, and CLI output quoted in public projects);
* a one-time-password field's id gets the prefix ``TOTP_`` (what 1Password's core
  does, measured through the SDK).

Run as a script it is ``op``; imported, :class:`FakeOp` sets one up for a test.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
import sys
import time
from pathlib import Path
from typing import Any

STATE_VARIABLE = "FAKE_OP_STATE"
VERSION = "2.30.3"
#: From this version on ``op item edit`` reads the item's JSON template on stdin.
READS_TEMPLATE = (2, 23, 0)
#: An approval lasts this long without use (seconds).
IDLE = 600
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_CATEGORIES = {"apicredential": "API_CREDENTIAL", "login": "LOGIN", "password": "PASSWORD",
               "securenote": "SECURE_NOTE"}
_VALUE_FLAGS = ("format", "account", "vault", "tags", "categories", "title", "category",
                "fields", "session", "config", "encoding", "template", "url")
_BOOL_FLAGS = ("no-color", "cache", "reveal", "otp", "include-archive", "archive", "dry-run",
               "long", "iso-timestamps", "raw", "force", "favorite")
APP_CLOSED = ("connecting to desktop app: read: connection reset, make sure 1Password CLI is "
              "installed correctly, then open the 1Password app, select 1Password > Settings "
              "> Developer and make sure the 'Integrate with 1Password CLI' setting is turned "
              "on. If you're still having trouble connecting, visit "
              "https://developer.1password.com/docs/cli/app-integration#troubleshooting for "
              "more help.")
NO_ACCOUNTS = """No accounts configured for use with 1Password CLI.

You can either:
 - Turn on the 1Password desktop app integration to sign in with the accounts you've added to the app: https://developer.1password.com/docs/cli/app-integration/ for details.
 - Add an account manually with 'op account add' and sign in by entering your password on the command line. See 'op account add --help' for details.
 - Authenticate using a 1Password service account by setting the 'OP_SERVICE_ACCOUNT_TOKEN' environment variable to your service account token. Learn more: https://developer.1password.com/docs/service-accounts/
"""  # noqa: E501 - the CLI's own text


def new_id() -> str:
    return "".join(secrets.choice(_ID_CHARS) for _ in range(26))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# -- the state file ----------------------------------------------------------------------


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Any:
    """The state, read under an exclusive lock and written back on success."""
    fd = os.open(str(path) + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = json.loads(path.read_text(encoding="utf-8"))
        yield data
        _write(path, data)
    finally:
        os.close(fd)


def initial_state(accounts: int = 1, vaults: tuple[str, ...] = ("Private", "Broker")) -> dict:
    made = []
    for n in range(accounts):
        made.append({"url": f"team{n}.1password.com" if n else "my.1password.com",
                     "email": f"me{n}@example.com" if n else "me@example.com",
                     "user_uuid": new_id().upper(), "account_uuid": new_id().upper(),
                     "shorthand": f"team{n}" if n else "my"})
    return {
        "version": VERSION, "app": "running", "integration": True, "approval": "allow",
        "accounts": made,
        "vaults": [{"id": new_id(), "name": name, "account": a["account_uuid"]}
                   for a in made for name in vaults],
        "items": [], "sessions": {}, "approvals": 0, "calls": [],
    }


# -- the command line ----------------------------------------------------------------------


class Failure(Exception):
    def __init__(self, message: str, plain: bool = False) -> None:
        super().__init__(message)
        self.plain = plain


def _parse(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    words: list[str] = []
    flags: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and len(arg) > 2:
            name, eq, value = arg[2:].partition("=")
            if name in _VALUE_FLAGS:
                if not eq:
                    if i + 1 >= len(argv):
                        raise Failure(f"flag needs an argument: --{name}")
                    i += 1
                    value = argv[i]
                flags[name] = value
            elif name in _BOOL_FLAGS or name == "version":
                flags[name] = True
            else:
                raise Failure(f"unknown flag: --{name}")
        else:
            words.append(arg)
        i += 1
    return words, flags


def _out(value: Any, flags: dict[str, Any]) -> str:
    if flags.get("format") == "json":
        return json.dumps(value, indent=2) + "\n"
    if isinstance(value, list):
        return "\n".join(str(v.get("id", v)) for v in value) + "\n"
    return json.dumps(value) + "\n"


def _account(state: dict, flags: dict[str, Any]) -> dict:
    accounts = state["accounts"]
    wanted = flags.get("account") or os.environ.get("OP_ACCOUNT", "")
    if wanted:
        low = wanted.lower().removeprefix("https://").rstrip("/")
        for a in accounts:
            if low in (a["shorthand"].lower(), a["url"].lower(), a["email"].lower(),
                       a["account_uuid"].lower(), a["user_uuid"].lower()):
                return dict(a)
        raise Failure(f'error initializing client: found no accounts for filter "{wanted}"')
    if len(accounts) > 1:
        raise Failure("multiple accounts found. Use the --account flag or set the OP_ACCOUNT "
                      "environment variable to select an account.")
    if not accounts:
        raise Failure(NO_ACCOUNTS, plain=True)
    return dict(accounts[0])


def _sign_in(state: dict, flags: dict[str, Any], *, prompt: bool = True) -> dict:
    """The account this command acts as, asking the app's approval when needed."""
    if not state["integration"]:
        raise Failure(NO_ACCOUNTS, plain=True)
    if state["app"] != "running":
        raise Failure(APP_CLOSED)
    account = _account(state, flags)
    key = f"{os.getsid(0)}:{account['account_uuid']}"
    now = time.time()
    last = state["sessions"].get(key)
    if last is None or now - last > IDLE:
        if not prompt:
            raise Failure("account is not signed in")
        if state["approval"] == "hang":
            time.sleep(3600)
        if state["approval"] != "allow":
            raise Failure("error initializing client: authorization prompt dismissed, "
                          "please try again")
        state["approvals"] += 1
    state["sessions"][key] = now
    return account


def _vaults(state: dict, account: dict) -> list[dict]:
    return [v for v in state["vaults"] if v["account"] == account["account_uuid"]]


def _vault(state: dict, account: dict, name: str) -> dict:
    mine = _vaults(state, account)
    for vault in mine:
        if name == vault["id"]:
            return vault
    named = [v for v in mine if v["name"].lower() == name.lower()]
    if len(named) == 1:
        return named[0]
    raise Failure(f'"{name}" isn\'t a vault in this account. Specify the vault with its ID '
                  "or name.")


def _items(state: dict, account: dict, vault: dict | None) -> list[dict]:
    ids = {v["id"] for v in ([vault] if vault else _vaults(state, account))}
    return [i for i in state["items"] if i["vault"]["id"] in ids]


def _item(state: dict, account: dict, vault: dict | None, name: str) -> dict:
    items = _items(state, account, vault)
    for item in items:
        if item["id"] == name:
            return item
    matches = [i for i in items if i["title"] == name]
    if len(matches) > 1:
        listed = "".join(f'\n\t* for the item "{i["title"]}" in vault {i["vault"]["name"]}: '
                         f'{i["id"]}' for i in matches)
        raise Failure(f'More than one item matches "{name}". Try again and specify the item '
                      f"by its ID:{listed}")
    if not matches:
        raise Failure(f'"{name}" isn\'t an item. Specify the item with its UUID, name, or '
                      "domain.")
    return matches[0]


def _totp(value: str) -> str | None:
    try:
        import pyotp

        otp = pyotp.parse_uri(value) if value.startswith("otpauth://") else pyotp.TOTP(value)
        return str(otp.now())
    except Exception:
        return None


def _shown(item: dict) -> dict:
    """The item as ``op item get --format json`` prints it."""
    out = json.loads(json.dumps(item))
    sections = {s["id"]: s.get("label", "") for s in item.get("sections", [])}
    for f in out.get("fields", []):
        section = f.get("section", {}).get("id")
        if section:
            f["section"] = {"id": section, "label": sections.get(section, "")}
        path = "/".join(p for p in (sections.get(section or ""), f.get("label")) if p)
        f["reference"] = f"op://{item['vault']['name']}/{item['title']}/{path}"
        if f.get("type") == "OTP":
            code = _totp(f.get("value", ""))
            if code:
                f["totp"] = code
    for key in ("tags", "sections"):
        if not out.get(key):
            out.pop(key, None)
    return out


def _fields(template: dict, old: list[dict] | None = None) -> list[dict]:
    fields = []
    for raw in template.get("fields") or []:
        f = {k: v for k, v in raw.items() if k not in ("reference", "totp")}
        f["id"] = f.get("id") or new_id()
        if f.get("type") == "OTP" and not f["id"].startswith("TOTP_"):
            f["id"] = "TOTP_" + f["id"]
        if isinstance(f.get("section"), dict):
            f["section"] = {"id": f["section"].get("id", "")}
        fields.append(f)
    return fields


def _read_stdin() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        return ""
    return sys.stdin.read()


def _assignments(words: list[str]) -> list[dict]:
    """``label[type]=value`` arguments (the CLI's assignment statements)."""
    fields = []
    for word in words:
        left, _, value = word.partition("=")
        label, _, kind = left.partition("[")
        kind = kind.rstrip("]") or "password"
        fields.append({"id": new_id(), "label": label, "value": value,
                       "type": {"password": "CONCEALED", "text": "STRING",
                                "otp": "OTP"}.get(kind, "STRING")})
    return fields


def _version(state: dict) -> tuple[int, ...]:
    return tuple(int(p) for p in str(state["version"]).split(".") if p.isdigit())


def run(state: dict, argv: list[str], stdin: str) -> str:
    words, flags = _parse(argv)
    if flags.get("version") and not words:
        return state["version"] + "\n"
    command = words[:2]
    if command == ["account", "list"]:  # the accounts the app lends the CLI
        if state["integration"] and state["app"] != "running":
            raise Failure(APP_CLOSED)
        rows = state["accounts"] if state["integration"] else []
        return _out(rows, flags)
    if command == ["whoami"] or words[:1] == ["whoami"]:
        account = _sign_in(state, flags, prompt=False)
        account.pop("shorthand", None)
        return _out({**account, "user_type": "HUMAN"}, flags)
    account = _sign_in(state, flags)
    if command == ["vault", "list"]:
        return _out([{"id": v["id"], "name": v["name"], "content_version": 1}
                     for v in _vaults(state, account)], flags)
    vault = _vault(state, account, flags["vault"]) if flags.get("vault") else None
    if command == ["item", "list"]:
        rows = []
        for item in _items(state, account, vault):
            row = {k: item[k] for k in ("id", "title", "version", "vault", "category",
                                        "last_edited_by", "created_at", "updated_at",
                                        "additional_information")}
            if item.get("tags"):
                row["tags"] = item["tags"]
            rows.append(row)
        return _out(rows, flags)
    if command == ["item", "get"]:
        if len(words) != 3:
            raise Failure("expected exactly one item")
        item = _item(state, account, vault, words[2])
        if flags.get("otp"):
            codes = [f.get("totp") for f in _shown(item)["fields"] if f.get("type") == "OTP"]
            return (codes[0] if codes else "") + "\n"
        return _out(_shown(item), flags)
    if command == ["item", "create"]:
        template = json.loads(stdin) if "-" in words[2:] else {}
        if vault is None:
            wanted = (template.get("vault") or {}).get("id")
            vault = (_vault(state, account, wanted) if wanted else next(
                v for v in _vaults(state, account) if v["name"] in ("Private", "Personal")))
        category = str(flags.get("category") or template.get("category") or "LOGIN")
        tags = list(template.get("tags") or [])
        tags += [t for t in str(flags.get("tags", "")).split(",") if t and t not in tags]
        item = {
            "id": new_id(), "title": flags.get("title") or template.get("title") or "Untitled",
            "version": 1, "vault": {"id": vault["id"], "name": vault["name"]},
            "category": _CATEGORIES.get(category.lower().replace(" ", "").replace("_", ""),
                                        category.upper()),
            "last_edited_by": account["user_uuid"], "created_at": _now(),
            "updated_at": _now(), "additional_information": "",
            "tags": tags, "sections": list(template.get("sections") or []),
            "fields": _fields(template) + _assignments([w for w in words[2:] if "=" in w]),
        }
        state["items"].append(item)
        return _out(_shown(item), flags)
    if command == ["item", "edit"]:
        item = _item(state, account, vault, words[2])
        text = stdin.strip() if _version(state) >= READS_TEMPLATE else ""
        if text:
            template = json.loads(text)
            item["title"] = template.get("title") or item["title"]
            item["tags"] = list(template.get("tags") or [])
            item["sections"] = list(template.get("sections") or [])
            item["fields"] = _fields(template)
        elif words[3:]:
            item["fields"] += _assignments(words[3:])
        else:  # nothing to change: the item as `op item get` shows it
            return _out(_shown(item), flags)
        item["version"] += 1
        item["updated_at"] = _now()
        return _out(_shown(item), flags)
    if command == ["item", "delete"]:
        item = _item(state, account, vault, words[2])
        state["items"].remove(item)
        return ""
    raise Failure(f'unknown command "{" ".join(words)}" for "op"')


def main() -> int:
    path = Path(os.environ[STATE_VARIABLE])
    argv = sys.argv[1:]
    stdin = _read_stdin()
    with _locked(path) as state:
        state["calls"].append({"argv": list(sys.argv), "stdin_bytes": len(stdin.encode()),
                               "sid": os.getsid(0)})
        try:
            output = run(state, argv, stdin)
        except Failure as failure:
            text = str(failure)
            if not failure.plain:
                text = f"[ERROR] {time.strftime('%Y/%m/%d %H:%M:%S')} {text}\n"
            sys.stderr.write(text)
            return 1
    sys.stdout.write(output)
    return 0


# -- for the tests --------------------------------------------------------------------------


WRAPPER = """#!{python}
import runpy, sys
sys.argv[0] = {name!r}
runpy.run_path({script!r}, run_name="__main__")
"""


class FakeOp:
    """A fake account and app, and the ``op`` that serves it, installed in ``directory``.

    ``names``: the program names to install (``"op"``, ``"op.exe"``). ``env()`` gives
    the variables a process needs to find it (PATH first, ``FAKE_OP_STATE``).
    """

    def __init__(self, directory: Path, *, names: tuple[str, ...] = ("op",),
                 accounts: int = 1, vaults: tuple[str, ...] = ("Private", "Broker")) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.bin = directory / "bin"
        self.bin.mkdir(exist_ok=True)
        self.path = directory / "op-state.json"
        _write(self.path, initial_state(accounts, vaults))
        for name in names:
            program = self.bin / name
            program.write_text(WRAPPER.format(python=sys.executable, name=name,
                                              script=str(Path(__file__).resolve())))
            program.chmod(stat.S_IRWXU)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        path = (base if base is not None else os.environ).get("PATH", "/usr/bin:/bin")
        return {"PATH": f"{self.bin}:{path}", STATE_VARIABLE: str(self.path)}

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return data

    def update(self, **changes: Any) -> None:
        """Change the app: ``app="closed"``, ``integration=False``, ``approval="dismiss"``."""
        with _locked(self.path) as state:
            state.update(changes)

    def lock_app(self) -> None:
        """The app locks: every approval is revoked."""
        with _locked(self.path) as state:
            state["sessions"] = {}

    def calls(self) -> list[list[str]]:
        """Each ``op`` run since the last reset: its argv without the program."""
        return [c["argv"][1:] for c in self.state()["calls"]]

    def raw_calls(self) -> list[dict[str, Any]]:
        return list(self.state()["calls"])

    def approvals(self) -> int:
        return int(self.state()["approvals"])

    def reset_calls(self) -> None:
        with _locked(self.path) as state:
            state["calls"] = []
            state["approvals"] = 0

    def vault_id(self, name: str) -> str:
        return str(next(v["id"] for v in self.state()["vaults"] if v["name"] == name))

    def find(self, title: str) -> dict[str, Any]:
        return dict(next(i for i in self.state()["items"] if i["title"] == title))

    def edit_item(self, item_id: str, **changes: Any) -> None:
        """Change an item as the 1Password app would (``title=...``), its version bumped."""
        with _locked(self.path) as state:
            item = next(i for i in state["items"] if i["id"] == item_id)
            item.update(changes)
            item["version"] = int(item.get("version") or 0) + 1
            item["updated_at"] = _now()

    def add_item(self, vault: str, item: dict[str, Any]) -> str:
        """Put an item in ``vault`` as the 1Password app would make it; its id."""
        with _locked(self.path) as state:
            target = next(v for v in state["vaults"] if v["name"] == vault)
            made = {"id": new_id(), "version": 1, "category": "LOGIN", "tags": [],
                    "sections": [], "last_edited_by": "", "created_at": _now(),
                    "updated_at": _now(), "additional_information": "", **item,
                    "vault": {"id": target["id"], "name": target["name"]}}
            made["fields"] = _fields(made)
            state["items"].append(made)
        return str(made["id"])


if __name__ == "__main__":
    sys.exit(main())


def isolate_op_home(tmp_path: Path, monkeypatch: Any) -> Path:
    """For in-process tests of the CLI transport: a private HOME and XDG dirs under
    ``tmp_path``, no 1Password token, account, Connect server, WSL or broker settings
    inherited, and a PATH without a real ``op``. Returns the new HOME."""
    home = tmp_path / "cli-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (("XDG_STATE_HOME", ".local/state"), ("XDG_CONFIG_HOME", ".config"),
                     ("XDG_CACHE_HOME", ".cache")):
        monkeypatch.setenv(var, str(home / sub))
    for var in ("OP_SERVICE_ACCOUNT_TOKEN", "OP_ACCOUNT", "OP_CONNECT_HOST", "OP_CONNECT_TOKEN",
                "WSL_DISTRO_NAME", "BROKER_CONFIG", "BROKER_BACKEND", "BROKER_OP_EMULATOR",
                "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no real op
    return home


def install_fake_op(tmp_path: Path, monkeypatch: Any, **kwargs: Any) -> FakeOp:
    """A :class:`FakeOp` under ``tmp_path`` whose environment (``op`` on PATH, its state
    file) is set in this process through ``monkeypatch``."""
    fake = FakeOp(tmp_path / "fake-op", **kwargs)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    return fake
