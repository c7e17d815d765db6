"""Day one's exit codes: what a new user typed wrong gets the code docs/errors.md gives
for it, one line, and changes nothing.

* A profile name that is empty, or that a backend cannot hold (`../x` in pass), is a
  usage error (2) before anything is stored or written to ~/.aws/config.
* `broker remove` of a name that is neither a profile nor a stored key is an unknown
  profile (4, close matches); of a role profile using its source_profile's key, a usage
  error naming that profile (2); its question names the backend and warns when the only
  copy is in memory; "no" is exit 1 ("nothing was changed"), Ctrl-C stays 130; the MFA
  ledger forgets the removed key.
* A source_profile naming no profile is a configuration error (3), as for botocore.
* `--region` and `--mfa-code` of the wrong shape are usage errors (2), before any call
  and also when a cached session would serve the command.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterator

import pytest

from broker.aws.mfa_ledger import MfaLedger
from broker.backend import Item
from tests.conftest import ACCOUNT, TEST_KEY_ID, TEST_SECRET, BrokerHome
from tests.support.contexts import require_keyctl
from tests.support.stores import Stores
from tests.test_bad_input import check_one_line
from tests.test_prompts_forgive import Terminal

KEY = f"{TEST_KEY_ID}\n{TEST_SECRET}\n"
DEVICE = f"arn:aws:iam::{ACCOUNT}:mfa/dev-user"


def keyctl_item(home: BrokerHome, name: str) -> Item | None:
    from broker_keyctl import KeyctlBackend

    return KeyctlBackend(settings={"keyring": home.keyring}).get(name)


@pytest.fixture
def keyed(home: BrokerHome) -> BrokerHome:
    """The test home (keyctl the chosen backend) with base's key stored."""
    require_keyctl()
    home.add_key("base")
    return home


@pytest.fixture
def stores(in_home, monkeypatch, capsys, tmp_path) -> Iterator[Stores]:
    made = Stores(in_home, monkeypatch, capsys, tmp_path)
    yield made
    made.close()


@pytest.fixture
def pass_home(stores: Stores) -> BrokerHome:
    """The test home with a pass store (a throwaway GnuPG key) as the chosen backend."""
    stores.provide("pass")
    home: BrokerHome = stores.home
    text = home.broker_config.read_text()
    assert text.startswith('backend = "keyctl"\n')
    home.broker_config.write_text(text.replace('backend = "keyctl"', 'backend = "pass"', 1))
    return home


#: ^C on the terminal sends SIGINT to broker: tests.test_prompts_forgive's Terminal starts
#: it with SIGINT at its default disposition, as on a user's terminal.
CtrlCTerminal = Terminal


def shown_on_stderr(terminal: Terminal, text: str, timeout: float = 30) -> str:
    """Wait until broker's stderr (a pipe: click asks there) shows ``text``; what it
    showed. Read from the descriptor, so that ``finish()`` still gets the rest."""
    assert terminal.process.stderr is not None
    fd, seen = terminal.process.stderr.fileno(), b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        assert time.monotonic() < deadline, f"no {text!r} on stderr: {seen!r}"
        if select.select([fd], [], [], 0.2)[0]:
            chunk = os.read(fd, 4096)
            assert chunk, f"stderr closed before {text!r}: {seen!r}"
            seen += chunk
    return seen.decode()


def pass_entries(home: BrokerHome) -> list[str]:
    store = home.root / ".password-store"
    return sorted(str(p.relative_to(store)) for p in store.rglob("*.gpg"))


# --- 1. an empty profile name ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   "])
def test_add_with_an_empty_profile_name_is_refused_not_taken_for_default(home, name):
    require_keyctl()
    before = home.aws_config.read_text()
    result = home.run("add", "--", name, input=KEY)
    check_one_line(result, 2, "profile name", "is empty")
    assert keyctl_item(home, "default") is None
    assert name == "" or keyctl_item(home, name) is None
    assert home.aws_config.read_text() == before


@pytest.mark.parametrize("args", [("exec", "", "--", "true"), ("export", ""),
                                  ("remove", "", "--force")])
def test_other_commands_refuse_an_empty_profile_name_too(keyed, args):
    check_one_line(keyed.run(*args), 2, "is empty")


def test_an_empty_aws_profile_is_still_the_documented_unknown_profile(home):
    result = home.run("export", env={"AWS_PROFILE": ""})
    check_one_line(result, 4, "the profile name is empty", "AWS_PROFILE")


# --- 2. a name a backend cannot hold -------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "a/../b", "./x", ".hidden", "team/.x", "a//b",
                                  "x/", "/x", "-x", "a\nb", "a\tb", "a\x7fb"])
def test_add_refuses_a_name_pass_cannot_hold_before_writing_anything(pass_home, name):
    before = pass_home.aws_config.read_text()
    result = pass_home.run("add", "--", name, input=KEY)
    check_one_line(result, 2, "cannot be the name broker stores a key under",
                   "docs/configuration.md")
    assert pass_home.aws_config.read_text() == before  # no [profile ../x] section
    assert pass_entries(pass_home) == []
    assert TEST_SECRET not in result.stderr


def test_add_refuses_the_name_before_asking_for_the_key(pass_home):
    """The refusal comes before the key is read: nothing typed is thrown away."""
    result = pass_home.run("add", "../x")  # stdin is empty: reading it would fail otherwise
    check_one_line(result, 2, "'..' part")


def test_add_item_refuses_such_a_name_too(pass_home):
    before = pass_home.aws_config.read_text()
    result = pass_home.run("add", "../x", "--item", "pass:aws/dev")
    check_one_line(result, 2, "cannot be the name")
    assert pass_home.aws_config.read_text() == before


def test_a_name_with_slashes_pass_can_hold_is_stored(pass_home):
    result = pass_home.run("add", "team/dev", input=KEY)
    assert result.returncode == 0, result.stderr
    assert pass_entries(pass_home) == ["broker/team/dev.gpg"]
    assert "[profile team/dev]" in pass_home.aws_config.read_text()


# --- 3, 4. remove of an unknown name, of a role using another profile's key -----------------


def test_remove_of_an_unknown_name_is_4_with_close_matches(keyed):
    check_one_line(keyed.run("remove", "bsae", "--force"), 4,
                   "no profile named 'bsae'", "no key stored under that name",
                   "did you mean 'base'?")
    check_one_line(keyed.run("remove", "nonexist", "--force"), 4, "`broker list`")


def test_remove_of_a_name_pass_cannot_hold_is_4_not_a_backend_failure(pass_home):
    check_one_line(pass_home.run("remove", "../x", "--force"), 4, "no profile named '../x'")


def test_remove_of_a_role_using_its_source_profiles_key_names_that_profile(keyed):
    result = keyed.run("remove", "admin", "--force")
    check_one_line(result, 2, "profile 'admin' uses the key of 'base' (source_profile)",
                   "`broker remove base` removes that key", "nothing was removed")
    assert keyctl_item(keyed, "base") is not None


def test_remove_of_a_profile_without_a_key_is_still_5(keyed):
    check_one_line(keyed.run("remove", "plain", "--force"), 5, "no key stored for 'plain'")


# --- 5. the question, "no", Ctrl-C -----------------------------------------------------------


def test_the_question_names_the_backend_and_no_is_exit_1(pass_home):
    pass_home.run("add", "x2", input=KEY, check=True)
    terminal = Terminal(pass_home, "remove", "x2")
    terminal.type("n")
    result = terminal.finish()
    assert result.returncode == 1, result.stderr
    assert "Delete the stored key of x2 from pass? [y/N]" in result.stderr
    assert "lost at reboot" not in result.stderr and "memory only" not in result.stderr
    # the answer typed is echoed on the terminal, not on stderr: the line goes on after it
    assert result.stderr.endswith("? [y/N]: broker: nothing was changed (answered no)\n")
    assert pass_entries(pass_home) == ["broker/x2.gpg"]


def test_a_key_only_in_memory_is_said_to_be_so_before_it_goes(keyed):
    terminal = Terminal(keyed, "remove", "base")
    terminal.type("y")
    result = terminal.finish()
    assert result.returncode == 0, result.stderr
    assert ("The key of base is only in keyctl (keyctl keeps keys in memory only), as far "
            "as broker sees: unless you kept it elsewhere, you will need a new access key "
            "from IAM. Delete the stored key of base from keyctl? [y/N]") in result.stderr
    assert keyctl_item(keyed, "base") is None


def test_a_persistent_copy_of_a_memory_only_key_is_named(stores: Stores):
    from broker.cli.key_commands import _removal_question
    from broker.services import keys

    stores.provide("memory")
    stores.provide("dirstore")
    item = Item({"aws_access_key_id": TEST_KEY_ID, "aws_secret_access_key": TEST_SECRET})
    stores.seed("memory", {"base": item})
    stores.seed("dirstore", {"base": item})
    plan = keys.plan_remove(stores.context(), "base", backend="memory")
    assert (plan.backend, plan.memory_only, plan.copies) == ("memory", True, ["dirstore"])
    assert _removal_question(plan) == (
        "Delete the stored key of base from memory (dirstore keeps a copy)?")


def test_ctrl_c_at_the_question_is_130_and_removes_nothing(keyed):
    terminal = CtrlCTerminal(keyed, "remove", "base")
    asked = shown_on_stderr(terminal, "[y/N]")
    terminal.type("\x03")
    result = terminal.finish()
    assert result.returncode == 130, asked + result.stderr
    assert result.stderr.splitlines()[-1] == "broker: interrupted"
    assert keyctl_item(keyed, "base") is not None


def test_ctrl_c_at_the_key_prompt_of_add_says_interrupted(home):
    require_keyctl()
    terminal = CtrlCTerminal(home, "add", "newp")
    asked = shown_on_stderr(terminal, "Access key ID: ")
    terminal.type("\x03")
    result = terminal.finish()
    assert result.returncode == 130, asked + result.stderr
    assert result.stderr.splitlines()[-1] == "broker: interrupted"
    assert keyctl_item(home, "newp") is None


def test_a_declined_confirmation_is_1_and_one_line(capsys):
    from broker.cli.errors import Declined, guarded

    def declined() -> int:
        raise Declined()

    assert guarded(declined, lambda: False) == 1
    assert capsys.readouterr().err == "broker: nothing was changed (answered no)\n"


# --- 6. the MFA ledger forgets a removed key -------------------------------------------------


def test_remove_forgets_the_seed_and_device_the_ledger_kept_for_the_key(keyed, in_home):
    ledger = MfaLedger()
    ledger.mark_seed("keyctl", "base", True)
    ledger.mark_device("keyctl", "base", DEVICE)
    ledger.mark_seed("keyctl", "dev", True)  # another key's: kept
    result = keyed.run("remove", "base", "--force")
    assert result.returncode == 0, result.stderr
    assert ledger.seed_stored("keyctl", "base") is None
    assert ledger.device_kept("keyctl", "base") is None
    assert ledger.seed_stored("keyctl", "dev") is True


# --- 7. a source_profile that names no profile -----------------------------------------------


def test_a_missing_source_profile_is_a_config_error_naming_file_profile_and_source(home):
    home.aws_config.write_text(
        f"[profile x]\nrole_arn = arn:aws:iam::{ACCOUNT}:role/admin\nsource_profile = nothere\n"
        "[profile notthere]\n"
    )
    result = home.run("exec", "x", "--", "true")
    check_one_line(result, 3, str(home.aws_config), "[profile x]",
                   "source_profile = 'nothere', which does not exist",
                   "did you mean 'notthere'?")


# --- 8. --region -----------------------------------------------------------------------------


@pytest.fixture
def cached(keyed: BrokerHome) -> BrokerHome:
    """base's key, and a profile made from it without MFA whose session is cached."""
    keyed.aws_config.write_text(keyed.aws_config.read_text()
                                + "\n[profile nomfa]\nregion = eu-west-1\n")
    keyed.add_key("nomfa")
    keyed.run("export", "nomfa", check=True)  # the session is cached now
    return keyed


@pytest.mark.parametrize("region", ["bad region", "", "us-east-1 # mine", "-east", "eu_west_1"])
def test_a_malformed_region_is_refused_even_with_a_cached_session(cached, region):
    check_one_line(cached.run("exec", "--region", region, "nomfa", "--", "true"), 2,
                   f"--region {region!r} is not a region name")
    check_one_line(cached.run("exec", "nomfa", "--region", region, "--", "true"), 2, "--region")
    check_one_line(cached.run("export", "nomfa", "--region", region), 2, "--region")


@pytest.mark.parametrize("command", ["login", "rotate"])
def test_login_and_rotate_refuse_a_malformed_region_before_any_call(cached, command):
    calls = len(cached.sts.actions())
    check_one_line(cached.run(command, "nomfa", "--region", "bad region"), 2, "--region")
    assert len(cached.sts.actions()) == calls


def test_a_region_name_is_taken(cached):
    result = cached.run("exec", "--region", "ap-southeast-2", "nomfa", "--", "sh", "-c",
                        'echo "$AWS_REGION"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ap-southeast-2"


# --- 9. --mfa-code ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", ""])
def test_a_malformed_mfa_code_is_a_usage_error_before_any_call(keyed, code):
    keyed.add_key("dev")
    calls = len(keyed.sts.actions())
    result = keyed.run("exec", "--mfa-code", code, "dev", "--", "true")
    check_one_line(result, 2, "the MFA code from --mfa-code is not 6 digits")
    assert len(keyed.sts.actions()) == calls


def test_a_malformed_mfa_code_from_stdin_is_a_usage_error_too(keyed):
    keyed.add_key("dev")
    calls = len(keyed.sts.actions())
    result = keyed.run("export", "dev", "--mfa-code", "-", input="12345\n")
    check_one_line(result, 2, "not 6 digits")
    assert len(keyed.sts.actions()) == calls


def test_a_well_formed_mfa_code_is_sent(keyed):
    keyed.add_key("dev")
    code = keyed.code()
    spaced = f"{code[:3]} {code[3:]}"  # as some apps show it
    result = keyed.run("exec", "--mfa-code", spaced, "dev", "--", "true")
    assert result.returncode == 0, result.stderr




def test_no_to_making_a_memory_only_backend_the_default_is_1_and_changes_nothing(home):
    require_keyctl()
    before = home.broker_config.read_text() if home.broker_config.exists() else None
    terminal = Terminal(home, "backend", "set", "keyctl")
    terminal.type("n")
    result = terminal.finish()
    assert result.returncode == 1, result.stderr
    assert "Make it the default? [y/N]" in result.stderr
    assert result.stderr.endswith("broker: nothing was changed (answered no)\n")
    after = home.broker_config.read_text() if home.broker_config.exists() else None
    assert after == before


# --- more names and answers -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", " ", "../x", "a//b", "x" * 251])
def test_migrate_refuses_a_profile_name_no_key_is_stored_under(home, name):
    """An empty --profile would be no filter at all (every key moved, every source copy
    deleted); ../x no name a key can have: both exit 2 before anything is read."""
    require_keyctl()
    home.add_key("dev")
    result = home.run("migrate", "--from", "keyctl", "--to", "pass", "--profile", name,
                      "--delete-source", "--memory-only", "--dry-run")
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "would" not in result.stdout
    assert keyctl_item(home, "dev") is not None


def test_add_refuses_a_name_longer_than_a_store_s_file_name(home):
    result = home.run("add", "x" * 251, input=KEY)
    check_one_line(result, 2, "longer than 250 bytes")
    assert "x" * 251 not in home.aws_config.read_text()


def test_clear_with_an_empty_name_is_a_usage_error(home):
    check_one_line(home.run("clear", ""), 2, "the profile name '' is empty")


@pytest.mark.parametrize("ttl", ["0", "30s"])
def test_backend_login_refuses_a_ttl_under_a_minute(home, ttl):
    result = home.run("backend", "login", "onepassword", "--ttl", ttl, input="ops_x\n")
    assert result.returncode == 2, result.stderr
    assert "shorter than a minute" in result.stderr and "Traceback" not in result.stderr


def test_end_of_input_at_the_question_is_no(keyed):
    terminal = Terminal(keyed, "remove", "base")
    terminal.type("\x04")  # Ctrl-D: no answer, so the default, no
    result = terminal.finish()
    assert result.returncode == 1, result.stderr
    assert result.stderr.endswith(
        "? [y/N]: broker: nothing was changed (no answer — end of input)\n")
    assert keyctl_item(keyed, "base") is not None
