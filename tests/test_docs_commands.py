"""Commands the docs give, run as written (README's quick start: tests/test_readme.py)."""

from __future__ import annotations

import contextlib
import re
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from broker.testing.gnupg import throwaway_gnupg_home
from tests.conftest import TEST_KEY_ID, TEST_SECRET
from tests.support.contexts import require_keyctl
from tests.support.pass_store import pass_run

ROOT = Path(__file__).resolve().parents[1]


def _block_after(doc: str, words: str) -> str:
    """The first fenced block after ``words`` in ``doc``."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    return re.findall(r"```\w*\n(.*?)```", text[text.index(words):], re.DOTALL)[0]


def test_trying_onepassword_without_an_account_by_hand(home, tmp_path):
    """docs/backends/onepassword.md, "Trying it without an account"."""
    script = _block_after("docs/backends/onepassword.md", "To use it by hand")
    script = script.replace("/tmp/op-account.json", str(tmp_path / "op-account.json"))
    assert script.count("\nbroker ") == 3
    done = subprocess.run(["bash", "-euc", script], cwd=ROOT, env=home.env, text=True,
                          input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n", capture_output=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Default backend is now onepassword" in done.stderr
    assert "Added the key for dev in backend onepassword" in done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("dev "))
    assert row.split()[2:4] == ["onepassword", "stored"]


@pytest.mark.parametrize("order", [
    ["exec", "--region", "eu-west-1", "--duration", "2h", "dev"],
    ["exec", "dev", "--region", "eu-west-1", "--duration", "2h"],
])
def test_options_go_before_or_after_the_profile(home, order):
    """docs/operations.md: "Options go before or after the profile"."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "Options go before or after the profile" in text
    assert "Options come before the profile" not in text
    require_keyctl()
    home.add_key("dev")
    result = home.run(*order, "--", "sh", "-c", 'echo "$AWS_REGION"', check=True)
    assert result.stdout.strip() == "eu-west-1"
    assert home.sts.actions("AssumeRole")[-1]["DurationSeconds"] == "7200"


def test_the_refresh_rule_is_the_one_the_code_has():
    """docs/operations.md: a margin longer than half the lifetime counts as half."""
    from broker.aws.credentials import Credentials
    from broker.aws.session_cache import SessionCache

    text = " ".join((ROOT / "docs" / "operations.md").read_text(encoding="utf-8").split())
    assert "never later than half" not in text
    assert "a refresh never starts earlier than halfway through it" in text
    issued = datetime.now(timezone.utc)
    creds = Credentials("ASIAX", "s", "t", issued + timedelta(minutes=15))
    item = creds.to_item(issued=str(int(issued.timestamp())))
    # a 10-minute margin on 15-minute sessions counts as 7.5 minutes: halfway, not earlier
    assert SessionCache(None, margin=600)._margin_for(item, creds) == pytest.approx(450, abs=2)


def test_recovering_from_a_lost_gpg_key_as_the_pass_docs_say(home):
    """docs/backends/pass.md, "Recovering from a lost GPG key", step by step."""
    text = (ROOT / "docs" / "backends" / "pass.md").read_text(encoding="utf-8")
    section = text[text.index("## Recovering from a lost GPG key"):text.index("## Several")]
    assert "TOTP seed" in section and "`unreadable`" in section
    exits = contextlib.ExitStack()
    gnupg = exits.enter_context(throwaway_gnupg_home())
    store = home.root / ".password-store"
    env = {**home.env, "GNUPGHOME": str(gnupg.path), "PASSWORD_STORE_DIR": str(store)}
    try:
        pass_run(gnupg, store, "init", gnupg.key.uid)
        home.run("backend", "set", "pass", env=env, check=True)
        home.run("add", "dev", input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n", env=env, check=True)
        # the key is lost: its secret part is gone from this machine
        gnupg.gpg("--yes", "--delete-secret-keys", gnupg.key.fingerprint)
        listed = home.run("backend", "list", env=env, check=True).stdout
        assert "no usable secret key here for" in listed
        shown = home.run("backend", "show", "pass", env=env, check=True).stdout
        assert "available:     no" in shown and "unreadable" not in shown  # not yet
        # 1. a new key; 2. pass init with it
        new_id = "new-key@example.invalid"
        gnupg.add_key(new_id)
        pass_init = subprocess.run(["pass", "init", new_id], env=env, capture_output=True,
                                   text=True, timeout=60)
        assert pass_init.returncode == 0, pass_init.stderr
        assert "decryption failed" in pass_init.stderr
        # 3. the unreadable entries are listed now; removed
        shown = home.run("backend", "show", "pass", env=env, check=True).stdout
        assert re.search(r"^unreadable: +dev ", shown, re.MULTILINE), shown
        subprocess.run(["pass", "rm", "broker/dev"], env=env, check=True, timeout=60,
                       capture_output=True, stdin=subprocess.DEVNULL)
        # 4. a new access key
        home.run("add", "dev", input=f"{TEST_KEY_ID}\n{TEST_SECRET}\n", env=env, check=True)
        assert "unreadable" not in home.run("backend", "show", "pass", env=env).stdout
    finally:
        exits.close()
