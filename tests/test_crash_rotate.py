"""kill -9 during `broker rotate`: the stored key is always one IAM still has, and works."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
import uuid

import boto3

from tests.conftest import BIN
from tests.support.contexts import require_keyctl
from tests.support.iam import access_keys, create_iam_user, iam_client


def stored(home, profile: str) -> tuple[str, str]:
    doc = json.loads(
        home.run("export", profile, "--no-session", "--format", "json", check=True).stdout
    )
    return doc["AccessKeyId"], doc["SecretAccessKey"]


def test_kill_during_rotate_never_loses_the_working_key(home, moto_server):
    require_keyctl()
    user, key_id, secret = create_iam_user(moto_server, prefix="crash")
    profile = f"c-{uuid.uuid4().hex[:6]}"
    home.aws_config.write_text(
        home.aws_config.read_text() + f"\n[profile {profile}]\nregion = us-east-1\n"
    )
    home.run("add", profile, input=f"{key_id}\n{secret}\n", check=True)
    iam = iam_client(moto_server)
    rng = random.Random(99)
    for _ in range(6):
        proc = subprocess.Popen(
            [str(BIN / "broker"), "rotate", profile], env=home.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        time.sleep(rng.uniform(0.2, 1.6))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        current_id, current_secret = stored(home, profile)
        in_iam = access_keys(moto_server, user)
        assert current_id in in_iam  # the stored key is one IAM still has
        identity = boto3.client(
            "sts", endpoint_url=moto_server, region_name="us-east-1",
            aws_access_key_id=current_id, aws_secret_access_key=current_secret,
        ).get_caller_identity()
        assert identity["Arn"].endswith(f":user/{user}")
        # a kill between CreateAccessKey and storing leaves an extra key in IAM, which
        # `rotate` then names; delete it as its message says, so the next round can run
        for extra in in_iam - {current_id}:
            iam.delete_access_key(UserName=user, AccessKeyId=extra)
        key_id = current_id
    home.run("rotate", profile, check=True)  # and rotation still works afterwards
