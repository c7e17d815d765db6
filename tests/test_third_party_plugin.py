"""A third-party plugin, built and installed for real, is a backend like any other.

The test writes the tiny distribution of docs/plugins.md (its pyproject's name, entry
point and dependencies, and its module, taken from the page), installs it with pip into
a fresh virtual environment, and drives ``python -m broker`` there.

Two things keep it offline and quick: the distribution builds with a 40-line
in-tree PEP 517 backend (no setuptools or wheel to download into an isolated
build environment), and the new environment reaches broker and its
dependencies through a ``.pth`` file that adds this environment's
site-packages, instead of installing them again. pip still resolves the
plugin's dependency on ``aws-broker-cli``: the installed one satisfies it.

The last tests stay in process: a backend class that outranks the built-in ones and
declares their capabilities is chosen as they are (the default backend, the session
cache, the store `backend login` keeps a token in), and doctor runs its checks.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import sysconfig
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar

import pytest

from broker import config
from broker.backend import Capability, Check
from broker.errors import ConfigError, NotFound, UsageError
from broker.registry import Registry
from broker.services import backends, doctor
from broker.services.context import Context
from broker.testing.memory import MemoryBackend
from tests.conftest import TEST_KEY_ID, TEST_SECRET

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - broker depends on tomli there
    import tomli as tomllib

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _doc_block(first_line: str) -> str:
    """The fenced block of docs/plugins.md whose first line is ``first_line``."""
    blocks = re.findall(r"```\w*\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    return next(b for b in blocks if b.startswith(first_line + "\n") or b.startswith(
        first_line + ":"))


#: The plugin of docs/plugins.md, as the page gives it: its module, its pyproject.
PLUGIN = _doc_block("# broker_tinyfile.py")
DOC_PROJECT = tomllib.loads(_doc_block("# pyproject.toml"))["project"]

CONTRACT_TEST = '''
import pytest
from broker.testing.contract import BackendContract
from broker_tinyfile import TinyFileBackend


class TestTinyFile(BackendContract):
    @pytest.fixture
    def backend(self, tmp_path):
        return TinyFileBackend(settings={"path": str(tmp_path)})

    @pytest.fixture
    def reopen(self):
        return lambda b: TinyFileBackend(settings=b.settings, namespace=b.namespace)

    @pytest.fixture
    def bad_settings(self):
        return [{}]  # no path: not available, and why

    @pytest.fixture
    def neighbour(self):
        return lambda b: TinyFileBackend(settings={"path": b.settings["path"] + "-2"})
'''

# A PEP 517 backend in the source tree: builds a wheel from the module list below.
BUILD_BACKEND = '''
import base64, hashlib, zipfile
from pathlib import Path

NAME, VERSION, MODULES = {name!r}, "1.0", {modules!r}
ENTRY_POINTS = {entry_points!r}
REQUIRES = {requires!r}


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    dist = NAME.replace("-", "_")
    info = f"{{dist}}-{{VERSION}}.dist-info"
    files = {{m: Path(m).read_bytes() for m in MODULES}}
    files[f"{{info}}/METADATA"] = (
        f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n"
        + "".join(f"Requires-Dist: {{r}}\\n" for r in REQUIRES)
    ).encode()
    files[f"{{info}}/WHEEL"] = (
        b"Wheel-Version: 1.0\\nGenerator: tiny_build\\nRoot-Is-Purelib: true\\n"
        b"Tag: py3-none-any\\n"
    )
    files[f"{{info}}/entry_points.txt"] = ENTRY_POINTS.encode()
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{{path}},sha256={{digest.decode()}},{{len(data)}}")
    record.append(f"{{info}}/RECORD,,")
    files[f"{{info}}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    wheel = f"{{dist}}-{{VERSION}}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel
'''


def make_distribution(root: Path, name: str, modules: dict[str, str], entry_points: str,
                      dependencies: list[str] | None = None) -> Path:
    """A source tree of distribution ``name`` with ``modules`` (file name -> text), the
    entry points (an entry_points.txt) and ``dependencies`` (requirement strings, in the
    pyproject and in the wheel's metadata), built by the in-tree backend above."""
    source = root / name
    source.mkdir(parents=True)
    (source / "pyproject.toml").write_text(textwrap.dedent(f"""\
        [build-system]
        requires = []
        build-backend = "tiny_build"
        backend-path = ["."]

        [project]
        name = "{name}"
        version = "1.0"
        dependencies = {json.dumps(dependencies or [])}
    """))
    (source / "tiny_build.py").write_text(BUILD_BACKEND.format(
        name=name, modules=list(modules), entry_points=entry_points,
        requires=list(dependencies or []),
    ))
    for filename, text in modules.items():
        (source / filename).write_text(text)
    return source


#: A plugin with a bug past availability(): its list() raises, with a secret in the text.
FAULTY_PLUGIN = """\
from broker.backend import Capability
from broker.testing.memory import MemoryBackend


class FaultyBackend(MemoryBackend):
    capabilities = Capability.LIST | Capability.PERSISTENT

    def list(self):
        raise KeyError("wJalrXUtnFEMI-leaked-secret")
"""


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the tiny plugin and a broken one pip-installed."""
    root = tmp_path_factory.mktemp("plugin")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip())
    ours = sysconfig.get_paths()["purelib"]  # broker (editable) and its dependencies
    (site / "_broker_test_deps.pth").write_text(f"import site; site.addsitedir({ours!r})\n")

    entry_points = DOC_PROJECT["entry-points"]["broker.backends"]
    tiny = make_distribution(
        root / "src", DOC_PROJECT["name"], {"broker_tinyfile.py": PLUGIN},
        "[broker.backends]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()),
        DOC_PROJECT["dependencies"],
    )
    (tiny / "tests").mkdir()
    (tiny / "tests" / "test_contract.py").write_text(CONTRACT_TEST)  # not packaged
    broken = make_distribution(
        root / "src", "broker-explodes",
        {"broker_explodes.py": "raise RuntimeError('explodes at import')\n"},
        "[broker.backends]\nexplodes = broker_explodes:Backend\n",
    )
    faulty = make_distribution(
        root / "src", "broker-faulty", {"broker_faulty.py": FAULTY_PLUGIN},
        "[broker.backends]\nfaulty = broker_faulty:FaultyBackend\n",
    )
    for source in (tiny, broken, faulty):
        # pip resolves the plugin's dependencies, as for a user: aws-broker-cli is found
        # installed (through the .pth above), so nothing is fetched (--no-index)
        installed = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(python), "install",
             "--no-index", "--no-build-isolation", "--no-cache-dir",
             "--disable-pip-version-check", "--quiet", str(source)],
            timeout=300, capture_output=True, text=True,
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


@pytest.fixture
def in_venv(home, plugin_venv: Path, tmp_path: Path):
    """Run ``python -m broker`` in the plugin's environment with the test home."""
    with open(home.broker_config, "a", encoding="utf-8") as handle:
        handle.write(f'\n[backends.tinyfile]\npath = "{tmp_path / "tinyfile"}"\n')

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(plugin_venv / "bin" / "python"), "-m", "broker", *args],
            env={**home.env, **(env or {})}, input="" if args[:1] != ("add",) else
            f"{TEST_KEY_ID}\n{TEST_SECRET}\n", capture_output=True, text=True, timeout=120,
            start_new_session=True,
        )

    return run


def test_installed_plugin_is_listed_selectable_and_works(in_venv, sts, tmp_path: Path) -> None:
    listing = in_venv("backend", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    by_name = {b["name"]: b for b in json.loads(listing.stdout)}
    assert by_name["tinyfile"]["available"] is True
    assert by_name["tinyfile"]["distribution"] == "broker-tinyfile"
    assert by_name["tinyfile"]["entry_point"] == "broker_tinyfile:TinyFileBackend"
    assert by_name["tinyfile"]["capabilities"] == ["list", "persistent"]
    # the broken one is reported, with its reason, and nothing else suffers
    assert by_name["explodes"]["broken"] is True
    assert "explodes at import" in by_name["explodes"]["reason"]
    assert "plugin 'explodes' from broker-explodes is broken" in listing.stderr
    assert by_name["keyctl"]["available"] is True

    assert in_venv("backend", "set", "tinyfile").returncode == 0
    added = in_venv("add", "plain")
    assert added.returncode == 0, added.stderr
    assert "backend tinyfile" in added.stderr
    stored = json.loads((tmp_path / "tinyfile" / "credentials.json").read_text())
    assert stored["plain"]["aws_access_key_id"] == TEST_KEY_ID
    credentials = tmp_path / "tinyfile" / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in credentials.parent.iterdir()) == ["credentials.json"]
    exported = in_venv("export", "plain", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["SessionToken"]  # temporary credentials, from STS
    assert len(sts.actions("GetSessionToken")) == 1


def test_the_documented_plugin_depends_on_brokers_distribution(plugin_venv: Path) -> None:
    """docs/plugins.md's pyproject names broker's distribution, ``aws-broker-cli`` (on the
    package index, ``broker`` is an unrelated project), and pip, resolving it, found the
    installed broker: the installed plugin requires it."""
    assert DOC_PROJECT["dependencies"] == ["aws-broker-cli"]
    asked = subprocess.run(
        [str(plugin_venv / "bin" / "python"), "-c",
         "from importlib.metadata import requires; print(requires('broker-tinyfile'))"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert asked.stdout.strip() == "['aws-broker-cli']"
    text = DOC.read_text(encoding="utf-8")
    assert "pipx inject aws-broker-cli ./broker-tinyfile" in text
    assert "pipx inject broker " not in text
    assert '"broker"]' not in text


def test_a_plugin_can_be_switched_off(in_venv, home) -> None:
    off = in_venv("backend", "list", "--json", env={"BROKER_DISABLED_PLUGINS": "tinyfile"})
    assert "tinyfile" not in {b["name"] for b in json.loads(off.stdout)}
    chosen = in_venv("list", "--backend", "tinyfile", env={"BROKER_DISABLED_PLUGINS": "tinyfile"})
    assert chosen.returncode == 7 and "disabled" in chosen.stderr

    text = home.broker_config.read_text()
    home.broker_config.write_text('disabled_plugins = ["explodes"]\n' + text)
    quiet = in_venv("backend", "list", "--json")
    assert quiet.returncode == 0
    assert "explodes" not in {b["name"] for b in json.loads(quiet.stdout)}
    assert "explodes" not in quiet.stderr  # a disabled plugin is never imported


def test_a_plugins_bug_is_one_line_naming_it_without_its_message(in_venv) -> None:
    """An exception a plugin raises past availability() (its bug) is exit code 6 and one
    line naming the plugin and its distribution; the exception's text, which may hold
    anything the plugin had, is left out (--debug shows the traceback)."""
    listed = in_venv("list", "--backend", "faulty")
    assert listed.returncode == 6, listed.stderr
    last = listed.stderr.strip().splitlines()[-1]
    assert last.startswith("broker: plugin 'faulty' (broker-faulty) failed: KeyError"), last
    assert "report it to the plugin's authors" in last
    assert "leaked-secret" not in listed.stderr and "Traceback" not in listed.stderr
    debug = in_venv("--debug", "list", "--backend", "faulty")
    assert debug.returncode == 6 and "Traceback" in debug.stderr


def test_the_contract_suite_runs_against_the_plugin(plugin_venv: Path) -> None:
    """The recipe of docs/plugins.md: subclass BackendContract in the plugin's own tests."""
    plugin = plugin_venv.parent / "src" / "broker-tinyfile"
    result = subprocess.run(
        [str(plugin_venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(plugin), "tests"],
        capture_output=True, text=True, timeout=300, cwd=plugin,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


# --- in process: a plugin's declarations get it what the built-in ones get ----------------


class Acme(MemoryBackend):
    """A third-party store that outranks the built-in ones and declares what they do:
    fit for STS sessions with expiry, and keeping secrets for references."""

    name: ClassVar[str] = "acme"
    priority: ClassVar[float] = 10.0
    capabilities: ClassVar[Capability] = (
        Capability.LIST | Capability.PERSISTENT | Capability.STORE_SESSIONS
        | Capability.EXPIRY | Capability.SECRET_STORE
    )
    schemes: ClassVar[tuple[str, ...]] = ("acme",)
    kept: ClassVar[dict[str, tuple[str, int | None]]] = {}

    def store_secret(self, name: str, value: str, ttl_seconds: int | None) -> None:
        Acme.kept[name] = (value, ttl_seconds)

    def secret_reference(self, name: str) -> str:
        return f"acme:{name}"

    def delete_secret(self, name: str) -> bool:
        return Acme.kept.pop(name, None) is not None

    def resolve(self, reference: str) -> str:
        name = reference.partition(":")[2]
        if name not in Acme.kept:
            raise NotFound(f"acme: no secret {name!r}", "store it first")
        return Acme.kept[name][0]

    def checks(self, used: bool) -> list[Check]:
        return [Check("acme", "ok", f"acme's own row (used: {used})")]


class AcmeKeeper(Acme):
    """Acme keeping its secrets and sessions in memory only (no PERSISTENT): fit for
    `backend login`'s tokens."""

    capabilities: ClassVar[Capability] = (
        Capability.LIST | Capability.STORE_SESSIONS | Capability.EXPIRY
        | Capability.SECRET_STORE
    )


def _acme_context(home: Path, cls: type[Acme] = Acme) -> Context:
    settings = config.Settings(home / "config.toml", backends={"acme": {"store": "acme-test"}})
    return Context(settings, Registry(settings.backends, extra={"acme": cls}))


def test_a_higher_priority_plugin_is_chosen_as_the_built_ins_are(in_home) -> None:
    ctx = _acme_context(in_home.root)
    assert ctx.registry.preference_order()[0] == "acme"
    assert ctx.credential_backend_name() == "acme"  # nobody chose: the best available
    assert ctx.session_cache_name() == "acme"  # STORE_SESSIONS | EXPIRY, highest priority
    assert ctx.sessions.backend is not None and ctx.sessions.backend.name == "acme"


def test_backend_login_keeps_the_token_in_a_plugins_secret_store(in_home) -> None:
    Acme.kept.clear()
    ctx = _acme_context(in_home.root, AcmeKeeper)
    reference, expires = backends.login(ctx, "onepassword", "ops_token", 600)
    assert reference == "acme:onepassword-token"
    assert Acme.kept["onepassword-token"] == ("ops_token", 600)
    assert ctx.resolver(reference) == "ops_token"  # found again by its scheme
    assert 590 <= (expires - datetime.now(timezone.utc)).total_seconds() <= 600
    assert backends.logout(ctx, "onepassword") is True
    assert backends.logout(ctx, "onepassword") is False


def test_doctor_runs_a_plugins_checks(in_home) -> None:
    registry = Registry(extra={"acme": Acme})
    checks = {c.name: c for c in doctor.run(
        doctor.Facts(environ={"AWS_ENDPOINT_URL": in_home.env["AWS_ENDPOINT_URL"]}), registry)}
    assert checks["acme"].summary == "acme's own row (used: True)"  # the default and cache
    assert checks["session cache"].summary == "sessions are kept in acme"


def test_builtin_order_is_their_declared_priority() -> None:
    class Plain(MemoryBackend):
        pass

    class Eager(MemoryBackend):
        priority: ClassVar[float] = 2.5

    registry = Registry(extra={"zz": Plain, "aa": Plain, "eager": Eager})
    order = registry.preference_order()
    builtin = [n for n in order if n in ("onepassword", "pass", "keyctl")]
    assert builtin == ["onepassword", "pass", "keyctl"]  # as before priorities existed
    assert order.index("eager") == order.index("pass") - 1  # 2.5: between 3 and 2
    assert order[-2:] == ["aa", "zz"]  # the default 0, ties by name


def test_the_token_login_keeps_is_found_in_a_plugins_secret_store(in_home, monkeypatch) -> None:
    """`backend login onepassword` keeps the token in the highest-priority secret store (a
    third-party one here, over keyctl); the onepassword backend and its doctor row find it
    there, through the resolver, without naming any store."""
    monkeypatch.delenv("OP_SERVICE_ACCOUNT_TOKEN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no 1Password CLI: the SDK and a token
    Acme.kept.clear()
    ctx = _acme_context(in_home.root, AcmeKeeper)
    before = ctx.registry.availability("onepassword")
    if "native core" in before.reason:
        pytest.skip(before.reason)
    assert not before.ok and "no service-account token" in before.reason
    assert ctx.resolver.login_reference("onepassword") == "acme:onepassword-token"
    reference, _ = backends.login(ctx, "onepassword", "ops_token", 600)
    assert reference == ctx.resolver.login_reference("onepassword")
    assert ctx.registry.availability("onepassword").ok
    rows = {c.name: c for c in ctx.backend("onepassword").checks(True)}
    assert rows["1Password token"].status == "ok", rows["1Password token"]
    assert "acme:onepassword-token" in rows["1Password token"].summary
    backends.logout(ctx, "onepassword")
    assert not ctx.registry.availability("onepassword").ok


def test_a_persistent_or_shared_store_never_keeps_login_tokens(in_home) -> None:
    """A token `backend login` keeps is never written to disk nor synced: a store
    declaring PERSISTENT (Acme) or SHARED is passed over for one in memory (keyctl)."""
    from broker_keyctl import KeyctlBackend

    class Synced(AcmeKeeper):
        capabilities: ClassVar[Capability] = AcmeKeeper.capabilities | Capability.SHARED

    if not KeyctlBackend().availability().ok:
        pytest.skip("kernel keyring unavailable")
    for cls in (Acme, Synced):
        Acme.kept.clear()
        ctx = _acme_context(in_home.root, cls)
        assert "acme" not in ctx.registry.secret_stores()
        reference, _ = backends.login(ctx, "onepassword", "ops_token", 60)
        assert reference == "keyctl:onepassword-token" and Acme.kept == {}
        assert backends.logout(ctx, "onepassword") is True


def test_a_shared_store_is_never_the_default_session_cache(in_home) -> None:
    """STS sessions stay on the machine that made them: a SHARED store fit for sessions
    is not chosen as the cache (the next one is), nor offered by doctor."""

    class Synced(Acme):
        capabilities: ClassVar[Capability] = Acme.capabilities | Capability.SHARED

    ctx = _acme_context(in_home.root, Synced)
    assert "acme" in ctx.registry.with_capabilities(Capability.STORE_SESSIONS)
    assert "acme" not in ctx.registry.session_caches()
    assert ctx.session_cache_name() != "acme"


def test_login_keeps_nothing_when_no_backend_resolves_the_reference(in_home) -> None:
    """A secret store whose plugin forgot its broker.references entry point: the token
    would be kept where nothing finds it; login says so and keeps nothing."""

    class Unregistered(AcmeKeeper):
        schemes: ClassVar[tuple[str, ...]] = ()

    Acme.kept.clear()
    ctx = _acme_context(in_home.root, Unregistered)
    with pytest.raises(ConfigError) as caught:
        backends.login(ctx, "onepassword", "ops_token", 60)
    assert "acme:onepassword-token" in caught.value.message
    assert "broker.references" in caught.value.hint
    assert "ops_token" not in str(caught.value)
    assert Acme.kept == {}


def test_logout_and_clear_reach_stores_chosen_before(in_home) -> None:
    """A token or sessions kept in keyctl before a plugin of higher priority took over
    are forgotten by `backend logout` and `clear` too, not left to be served again."""
    from broker_keyctl import KeyctlBackend

    from broker.aws.credentials import Credentials
    from broker.aws.session_cache import SessionCache

    if not KeyctlBackend().availability().ok:
        pytest.skip("kernel keyring unavailable")
    settings = config.Settings(in_home.root / "config.toml", backends={})
    before = Context(settings, Registry(settings.backends))
    backends.login(before, "onepassword", "ops_token", 60)
    in_home.aws_config.write_text("[profile dev]\n")
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    before.sessions.put("dev/session", Credentials("ASIA1", "s", "t", expires),
                        profile="dev")
    assert before.sessions.backend is not None and before.sessions.backend.name == "keyctl"

    Acme.kept.clear()
    after = _acme_context(in_home.root, AcmeKeeper)
    assert after.session_cache_name() == "acme"
    assert backends.logout(after, "onepassword") is True  # found in keyctl
    assert before.resolver.login_reference("onepassword") is not None
    with pytest.raises(NotFound):
        before.resolver("keyctl:onepassword-token")
    assert backends.clear_sessions(after) == 1
    assert SessionCache(KeyctlBackend(namespace="sessions"), 0).entries() == []


def test_a_persistent_plugin_ranked_low_is_still_the_default_over_memory(in_home) -> None:
    """A persistent plugin with priority below keyctl's is the default credential backend
    when the persistent built-ins are not available: a key is not put in memory while a
    store that keeps it works here."""

    class Lowly(MemoryBackend):
        priority: ClassVar[float] = 0.5
        capabilities: ClassVar[Capability] = Capability.LIST | Capability.PERSISTENT

    settings = config.Settings(in_home.root / "config.toml", backends={})
    ctx = Context(settings, Registry(settings.backends, extra={"lowly": Lowly}))
    order = ctx.registry.preference_order()
    assert order.index("lowly") > order.index("keyctl")
    persistent_built_ins = [n for n in ("onepassword", "pass")
                            if ctx.registry.availability(n).ok]
    if persistent_built_ins:
        pytest.skip(f"{persistent_built_ins[0]} works here and ranks first")
    assert ctx.backend_choice() == ("lowly", "")
    # and memory-only keyctl is the default only when no persistent store works
    ctx = Context(settings, Registry(settings.backends))
    if ctx.registry.availability("keyctl").ok:
        assert ctx.backend_choice() == ("keyctl", "")


def test_login_refuses_a_backend_that_reads_no_token(in_home) -> None:
    """Only a backend declaring LOGIN_TOKEN reads what `backend login` keeps: a token
    for any other would sit in the keyring unused."""
    Acme.kept.clear()
    ctx = _acme_context(in_home.root, AcmeKeeper)
    with pytest.raises(UsageError) as caught:
        backends.login(ctx, "acme", "some_token", 60)
    assert "reads no token" in caught.value.message and "onepassword" in caught.value.hint
    assert Acme.kept == {}
