"""`broker login`: the console sign-in URL, against a stub federation endpoint and moto."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest

from broker.aws import federation
from broker.aws.credentials import Credentials
from broker.errors import BrokerError, UsageError
from broker.services import console
from tests.support.contexts import default_keys, home_context, require_keyctl
from tests.support.federation import stub_federation


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


@pytest.fixture
def keyctl_home(home):
    require_keyctl()
    return home


def test_role_profile_signs_in_with_its_role_session(keyctl_home, sts):
    home = keyctl_home
    home.add_key("dev")
    with stub_federation() as stub:
        env = {federation.ENDPOINT_VARIABLE: stub.url}
        result = home.run("login", "dev", "--stdout", env=env, check=True)
        session = stub.session()
    role = json.loads(home.run("export", "dev", "--format", "json", check=True).stdout)
    assert session == {
        "sessionId": role["AccessKeyId"],
        "sessionKey": role["SecretAccessKey"],
        "sessionToken": role["SessionToken"],
    }
    url = result.stdout.strip()
    assert url.startswith(stub.url + "?")
    assert _query(url) == {
        "Action": "login",
        "Issuer": "broker",
        "Destination": "https://console.aws.amazon.com/console/home?region=ap-northeast-1",
        "SigninToken": stub.token,
    }
    assert stub.token not in result.stderr
    assert len(sts.actions("AssumeRole")) == 1


def test_path_and_duration(keyctl_home, sts):
    home = keyctl_home
    home.add_key("dev")
    with stub_federation() as stub:
        result = home.run("login", "dev", "--stdout", "--path", "s3/home", "-d", "2h",
                          env={federation.ENDPOINT_VARIABLE: stub.url}, check=True)
    destination = _query(result.stdout.strip())["Destination"]
    assert destination == "https://console.aws.amazon.com/s3/home?region=ap-northeast-1"
    assert sts.actions("AssumeRole")[0]["DurationSeconds"] == "7200"


def test_plain_user_gets_a_federation_token_from_the_long_lived_key(keyctl_home, sts):
    home = keyctl_home
    home.add_key("plain")
    with stub_federation() as stub:
        result = home.run("login", "plain", "--stdout",
                          env={federation.ENDPOINT_VARIABLE: stub.url}, check=True)
        session = stub.session()
    call, = sts.actions("GetFederationToken")
    assert call["Name"] == "broker-plain"
    assert json.loads(call["Policy"])["Statement"][0] == {
        "Effect": "Allow", "Action": "*", "Resource": "*",
    }
    assert call["DurationSeconds"] == "3600"
    assert sts.actions("GetSessionToken") == []  # refused with session credentials anyway
    assert set(session) == {"sessionId", "sessionKey", "sessionToken"} and session["sessionToken"]
    assert _query(result.stdout.strip())["Destination"].endswith("?region=us-west-2")


def test_a_refusing_endpoint_is_an_aws_error_without_secrets(keyctl_home):
    home = keyctl_home
    home.add_key("dev")
    with stub_federation(status=400) as stub:
        result = home.run("login", "dev", "--stdout", env={federation.ENDPOINT_VARIABLE: stub.url})
        session = stub.session()
    assert result.returncode == 10
    assert "HTTP 400" in result.stderr
    assert result.stdout == ""
    assert session["sessionKey"] not in result.stderr and "Session" not in result.stderr


def test_partitions():
    assert federation.partition_for("arn:aws-cn:iam::1:role/r", None).name == "aws-cn"
    assert federation.partition_for("arn:aws-us-gov:iam::1:role/r", "us-east-1").name == (
        "aws-us-gov"
    )
    assert federation.partition_for(None, "cn-north-1").name == "aws-cn"
    assert federation.partition_for(None, "us-gov-west-1").name == "aws-us-gov"
    assert federation.partition_for(None, None).name == "aws"
    cn = federation.PARTITIONS["aws-cn"]
    assert cn.signin == "https://signin.amazonaws.cn/federation"
    assert federation.destination(cn, "cn-north-1", None) == (
        "https://console.amazonaws.cn/console/home?region=cn-north-1"
    )
    gov = federation.PARTITIONS["aws-us-gov"]
    assert gov.signin == "https://signin.amazonaws-us-gov.com/federation"
    assert federation.destination(gov, None, "/ec2/home") == (
        "https://console.amazonaws-us-gov.com/ec2/home"
    )
    aws = federation.PARTITIONS["aws"]
    assert federation.destination(aws, "eu-west-1", "ec2/home?x=1") == (
        "https://console.aws.amazon.com/ec2/home?x=1&region=eu-west-1"
    )
    deep = "https://console.aws.amazon.com/iam/home#/roles"
    assert federation.destination(aws, "eu-west-1", deep) == deep


def test_the_endpoint_must_be_https_unless_local():
    creds = Credentials("ASIA", "s", "t")
    with pytest.raises(UsageError, match="must be https"):
        federation.signin_token("http://example.com/federation", creds)
    with pytest.raises(UsageError, match="temporary credentials"):
        federation.signin_token("https://example.com/federation", Credentials("AKIA", "s"))


def _fetch_without_following(url: str) -> tuple[int, str | None]:
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request("GET", parts.path)
    response = connection.getresponse()
    location = response.getheader("Location")
    connection.close()
    return response.status, location


def test_the_browser_gets_a_one_shot_local_redirect():
    secret_url = "https://signin.aws.amazon.com/federation?Action=login&SigninToken=SECRET"
    opened: list[str] = []
    seen: list[tuple[int, str | None]] = []

    def browser(url: str) -> bool:
        opened.append(url)
        seen.append(_fetch_without_following(url))
        seen.append(_fetch_without_following(url))  # a second fetch gets nothing
        return True

    console.open_in_browser(secret_url, opener=browser, wait=10)
    assert opened[0].startswith("http://127.0.0.1:") and "SECRET" not in opened[0]
    assert seen == [(302, secret_url), (404, None)]


def test_no_browser_or_no_visit_is_an_error():
    with pytest.raises(BrokerError, match="could not start a web browser"):
        console.open_in_browser("https://x", opener=lambda url: False, wait=1)
    with pytest.raises(BrokerError, match="did not open the sign-in page"):
        console.open_in_browser("https://x", opener=lambda url: True, wait=0.2)


def test_login_in_process_opens_the_browser(in_home, sts, monkeypatch):
    ctx = home_context(in_home, default_keys("dev"))
    with stub_federation() as stub:
        monkeypatch.setenv(federation.ENDPOINT_VARIABLE, stub.url)
        visits: list[tuple[int, str | None]] = []

        def browser(url: str) -> bool:
            visits.append(_fetch_without_following(url))
            return True

        signin = console.login(ctx, "dev", opener=browser, wait=10)
    assert visits == [(302, signin.url)]
    assert signin.via == "AssumeRole" and signin.partition == "aws"
    assert signin.url not in repr(signin)
