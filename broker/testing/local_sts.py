"""A local STS/IAM for tests, the demo and the benchmarks: moto's server, and in front of it
:class:`LocalSTS`, a proxy on 127.0.0.1 that enforces AWS's STS rules moto ignores.

moto accepts any MFA code, evaluates no trust policy, caps no duration, has no clock and
returns ``AKIA...`` keys from GetSessionToken. :class:`LocalSTS` refuses what AWS refuses,
with AWS's codes and messages (see :mod:`broker.testing.aws_rules`), hands out ``ASIA...``
keys for temporary credentials (moto keeps serving them under its own key), and records
every request's parameters so tests can assert what a client *sent*::

    with enforcing_sts() as sts:            # moto + the proxy; sts.url for AWS_ENDPOINT_URL
        sts.register_mfa_device(serial, seed)   # or CreateVirtualMFADevice through sts.url
        code = sts.code(serial)             # the device's code at the server's clock
        sts.advance(30)                     # the server's clock (and so the codes) moves
        sts.rules.role_chaining = False     # one rule off: moto's leniency
        sts.actions("AssumeRole")           # what was sent, refused or not
        sts.reset(rules=True)               # calls, used codes, clock and rules as new

A process that cannot reach the object asks ``GET {url}/_local_sts/code?serial=...``, or runs
``python -m broker.testing.local_sts code SERIAL [URL]`` (default URL: ``AWS_ENDPOINT_URL``).

Not enforced (moto's leniency stays): EnableMFADevice's two codes, that a device belongs to
the caller, signatures and unknown keys, policy conditions other than Bool/StringEquals/
StringLike, roles outside moto's default account, and the clock of services other than
STS and IAM.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import re
import secrets
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from broker.testing import aws_rules as aws
from broker.testing.aws_rules import Issued, MfaDevices, Refusal, Rules

NAMESPACES = {"sts": "https://sts.amazonaws.com/doc/2011-06-15/",
              "iam": "https://iam.amazonaws.com/doc/2010-05-08/"}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/[^/]+/([^/]+)/aws4_request")
_KEY_CHARS = string.ascii_uppercase + "234567"
Response = tuple[int, dict[str, str], bytes]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_sts(bin_dir: Path | None = None, timeout: float = 30) -> Iterator[str]:
    """Run ``moto_server`` (from ``bin_dir``, default the interpreter's) until the block
    ends; yields its URL once it answers. moto alone enforces nothing: see
    :func:`enforcing_sts`. The server is stopped by its own PID."""
    executable = (bin_dir or Path(sys.executable).parent) / "moto_server"
    port = free_port()
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def enforcing_sts(bin_dir: Path | None = None, rules: Rules | None = None) -> Iterator[LocalSTS]:
    """moto's server with :class:`LocalSTS` in front; both stop when the block ends."""
    with local_sts(bin_dir) as upstream, LocalSTS(upstream, rules) as proxy:
        yield proxy


@dataclass
class _Pending:
    """What a GetSessionToken/AssumeRole that passed the rules will make, once moto answers."""

    duration: int
    mfa: bool
    arn: str
    upstream_key: str
    role_session: bool


class LocalSTS:
    """The enforcing, recording proxy in front of moto's server at ``upstream``."""

    def __init__(self, upstream: str, rules: Rules | None = None) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.rules = rules or Rules()
        self.devices = MfaDevices()
        self.calls: list[dict[str, str]] = []
        #: (Action, Code, Message) of every request refused by a rule.
        self.refusals: list[tuple[str, str, str]] = []
        self._issued: dict[str, Issued] = {}
        self._lock = threading.RLock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # -- the test's side --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The proxy's endpoint, ``http://127.0.0.1:PORT`` (no trailing slash): what a test sets
        as ``AWS_ENDPOINT_URL``.
        """
        return f"http://127.0.0.1:{self.port}"

    def actions(self, name: str | None = None) -> list[dict[str, str]]:
        """The parameters of every request sent (refused ones too), optionally one Action's."""
        with self._lock:
            return [c for c in self.calls if name is None or c.get("Action") == name]

    def reset(self, *, rules: bool = False) -> None:
        """Forget the calls, the refusals and the used codes; with ``rules``, also turn every
        rule back on and the clock back to real time (a new test). Devices and issued
        credentials stay (so do moto's users and roles)."""
        with self._lock:
            self.calls.clear()
            self.refusals.clear()
            self.devices.used.clear()
            if rules:
                self.rules = Rules()

    def register_mfa_device(self, serial: str, seed: str, period: int = 30) -> None:
        """Make codes of ``seed`` valid for ``serial`` (AWS devices use 30-second steps)."""
        with self._lock:
            self.devices.register(serial, seed, period)

    def code(self, serial: str, at: float | None = None) -> str:
        """The device's code at the server's clock (or at the server time ``at``)."""
        with self._lock:
            return self.devices.code(serial, self.rules.now() if at is None else at)

    def advance(self, seconds: float) -> None:
        """Move the server's clock (and so the codes it expects) by ``seconds``."""
        with self._lock:
            self.rules.clock_offset += seconds

    def issued(self, access_key_id: str) -> Issued | None:
        """What this proxy recorded when it handed out the temporary key ``access_key_id`` (whose,
        expiry, with MFA or not), or None for a key it did not issue.
        """
        with self._lock:
            return self._issued.get(access_key_id)

    def stop(self) -> None:
        """Shut the proxy's HTTP server down and close its port (moto's server is the caller's)."""
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LocalSTS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- a request ----------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Response:
        """One HTTP request, as (status, headers, body): a ``/_local_sts/code?serial=...`` control
        request answers the device's current code; any other is recorded, judged by the
        :class:`Rules` that are on (an error document as AWS words it when refused, recorded in
        :attr:`refusals`), else forwarded to moto, with the temporary credentials it issues
        recorded (and their expiry set by the rules).
        """
        split = urllib.parse.urlsplit(path)
        if split.path.startswith("/_local_sts/"):
            return self._control(split.path, dict(urllib.parse.parse_qsl(split.query)))
        params = dict(urllib.parse.parse_qsl(split.query))
        if body and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
            params.update(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        action = params.get("Action", "")
        if action:
            with self._lock:
                self.calls.append(params)
        low = {k.lower(): v for k, v in headers.items()}
        signed = low.get("authorization") or "Credential=" + params.get("X-Amz-Credential", "")
        match = _CREDENTIAL.search(signed)
        key, service = match.groups() if match else ("", "")
        amz_date = low.get("x-amz-date") or params.get("X-Amz-Date", "")
        try:
            with self._lock:
                pending = self._judge(service, action, key, params, amz_date)
        except Refusal as refusal:
            with self._lock:
                self.refusals.append((action, refusal.code, refusal.message))
            return _error(refusal, service)
        status, reply_headers, data = self._forward(method, path, headers, body, key)
        if status == 200 and pending is not None:
            data = self._issue(data, pending)
        elif status == 200 and action == "CreateVirtualMFADevice":
            self._learn_seed(data)
        return status, reply_headers, data

    def _judge(self, service: str, action: str, key: str, params: Mapping[str, str],
               amz_date: str) -> _Pending | None:
        rules, now = self.rules, self.rules.now()
        if rules.clock and amz_date and service in NAMESPACES:
            aws.check_clock(amz_date, now)
        issued = self._issued.get(key)
        if rules.expiry and issued is not None:
            aws.check_expiry(issued, now)
        if service != "sts" or action not in ("GetSessionToken", "AssumeRole"):
            return None
        temporary = issued is not None or key.startswith("ASIA")
        upstream_key = issued.upstream_key if issued else key
        if action == "GetSessionToken":
            if rules.temporary_keys:
                aws.check_no_session_from_session(temporary)
            duration = aws.requested_duration(action, params, rules.durations)
            mfa = self._mfa(params, now)
            return _Pending(duration, mfa, self._arn_of(upstream_key), upstream_key, False)
        return self._assume_role(params, issued, temporary, upstream_key, now)

    def _mfa(self, params: Mapping[str, str], now: float) -> bool:
        if not self.rules.mfa:
            return bool(params.get("SerialNumber") and params.get("TokenCode"))
        return self.devices.verify(params, now)

    def _assume_role(self, params: Mapping[str, str], issued: Issued | None, temporary: bool,
                     upstream_key: str, now: float) -> _Pending:
        """Source: https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html.

        aws:MultiFactorAuthPresent is absent for a long-term key, present for temporary
        credentials, "true" when MFA authenticated them (GetSessionToken or AssumeRole with
        SerialNumber and TokenCode):
        https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-multifactorauthpresent
        and https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_mfa_configure-api-require.html.
        So it is "true" here when this request carries a good code, or its credentials are
        an MFA session, or a role session made with MFA: a chained session keeps the MFA
        context of the one that made it (that page does not spell chaining out; this is how
        peers describe AWS: "MFA presence is sticky on STS sessions")."""
        rules = self.rules
        duration = aws.requested_duration("AssumeRole", params, rules.durations)
        mfa = self._mfa(params, now) or bool(issued and issued.mfa)
        role_arn = params.get("RoleArn", "")
        role = self._role(role_arn) if (rules.trust_policy or rules.durations) else None
        caller = issued.arn if issued else self._arn_of(upstream_key)
        if rules.trust_policy:
            present = "true" if mfa else ("false" if temporary else None)
            context = {"aws:multifactorauthpresent": present,
                       "sts:externalid": params.get("ExternalId"), "aws:principalarn": caller}
            if role is None or not aws.trust_allows(role[0], caller, context):
                raise aws.not_authorized(caller, role_arn)
        if rules.role_chaining:
            aws.check_role_chaining(temporary, duration)
        if rules.durations and role is not None:
            aws.check_max_session(duration, role[1])
        return _Pending(duration, mfa, "", "", True)

    # -- moto ---------------------------------------------------------------------------------

    def _forward(self, method: str, path: str, headers: Mapping[str, str], body: bytes,
                 key: str) -> Response:
        out = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
        issued = self._issued.get(key)
        if issued is not None:  # moto knows them by its own key
            theirs = f"Credential={issued.upstream_key}/"
            for name in [k for k in out if k.lower() == "authorization"]:
                out[name] = out[name].replace(f"Credential={key}/", theirs)
        conn = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1",
                                          self.upstream.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=out)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        skip = ("transfer-encoding", "connection", "content-length", "server", "date")
        return response.status, {k: v for k, v in response.getheaders()
                                 if k.lower() not in skip}, data

    def _moto(self, service: str, params: dict[str, str], key: str) -> ET.Element | None:
        """A call straight to moto, as ``key`` (moto reads the key, not the signature)."""
        stamp = aws.amz_time(time.time())
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Amz-Date": stamp,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={key or 'AKIAIOSFODNN7EXAMPLE'}/"
                             f"{stamp[:8]}/us-east-1/{service}/aws4_request, "
                             "SignedHeaders=host;x-amz-date, Signature=0",
        }
        body = urllib.parse.urlencode(params).encode()
        status, _, data = self._forward("POST", "/", headers, body, "")
        return _parse(data) if status == 200 else None

    def _arn_of(self, key: str) -> str:
        """The caller's ARN, as moto's GetCallerIdentity names it (IAM user ARNs as IAM
        writes them: moto says arn:aws:sts::...:user/moto for keys it does not know)."""
        found = self._moto("sts", {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, key)
        arn = _text(found, "Arn") if found is not None else ""
        return re.sub(r"^arn:aws:sts::(\d+):user/", r"arn:aws:iam::\1:user/", arn)

    def _role(self, role_arn: str) -> tuple[dict[str, Any], int] | None:
        """(trust policy, MaxSessionDuration) of the role, None when moto has no such role."""
        name = role_arn.rsplit("/", 1)[-1] if ":role/" in role_arn else ""
        found = self._moto("iam", {"Action": "GetRole", "RoleName": name,
                                   "Version": "2010-05-08"}, "") if name else None
        if found is None or _text(found, "Arn") != role_arn:
            return None
        document = urllib.parse.unquote(_text(found, "AssumeRolePolicyDocument") or "{}")
        maximum = int(_text(found, "MaxSessionDuration") or aws.DEFAULT_MAX_SESSION)
        return json.loads(document), maximum

    def _issue(self, data: bytes, pending: _Pending) -> bytes:
        """moto's credentials as AWS hands them out: a fresh ASIA key, the expiry on the
        server's clock; remembered so later calls signed with them are judged right.
        Source: https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_request.html
        (temporary access key IDs begin with ASIA)."""
        if not self.rules.temporary_keys:
            return data
        document = _parse(data)
        moto_key = _text(document, "AccessKeyId")
        new_key = "ASIA" + "".join(secrets.choice(_KEY_CHARS) for _ in range(16))
        expires = self.rules.now() + pending.duration
        expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        text = _replace(data.decode("utf-8"), "AccessKeyId", new_key)
        text = _replace(text, "Expiration", expiration)
        if not pending.role_session:  # moto's are all alike
            token = base64.b64encode(secrets.token_bytes(96)).decode()
            text = _replace(text, "SessionToken", token)
        arn = _text(document, "Arn") or pending.arn
        upstream = moto_key if pending.role_session else pending.upstream_key
        with self._lock:
            self._issued[new_key] = Issued(new_key, upstream, arn, expires, pending.mfa,
                                           pending.role_session)
        return text.encode("utf-8")

    def _learn_seed(self, data: bytes) -> None:
        document = _parse(data)
        serial, seed = _text(document, "SerialNumber"), _text(document, "Base32StringSeed")
        if serial and seed:
            self.register_mfa_device(serial, base64.b64decode(seed).decode("ascii"))

    def _control(self, path: str, query: Mapping[str, str]) -> Response:
        plain = {"Content-Type": "text/plain"}
        if path == "/_local_sts/code":
            try:
                return 200, plain, self.code(query.get("serial", "")).encode()
            except KeyError:
                return 404, plain, b"no such MFA device\n"
        return 404, plain, b"unknown control path\n"


def _parse(data: bytes) -> ET.Element:
    return ET.fromstring(data)  # noqa: S314 - moto's own answers, on 127.0.0.1


def _replace(text: str, tag: str, value: str) -> str:
    return re.sub(f"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", text)


def _text(element: ET.Element | None, tag: str) -> str:
    """The text of the first ``tag`` anywhere under ``element``, namespaces ignored."""
    if element is None:
        return ""
    for child in element.iter():
        if child.tag.rsplit("}", 1)[-1] == tag:
            return child.text or ""
    return ""


def _error(refusal: Refusal, service: str) -> Response:
    """AWS's query-protocol error document."""
    namespace = NAMESPACES.get(service, NAMESPACES["sts"])
    message = refusal.message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>Sender</Type>'
        f"<Code>{refusal.code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return refusal.status, {"Content-Type": "text/xml"}, body.encode()


def _handler(sts: LocalSTS) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = dict(self.headers.items())
            status, headers, data = sts.handle(self.command, self.path, headers, body)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

    return Handler


def main(argv: list[str]) -> int:
    """``code SERIAL [URL]``: print the device's current code from a running LocalSTS."""
    if len(argv) not in (2, 3) or argv[0] != "code":
        print("usage: python -m broker.testing.local_sts code SERIAL [URL]", file=sys.stderr)
        return 2
    url = argv[2] if len(argv) == 3 else os.environ.get("AWS_ENDPOINT_URL", "")
    query = urllib.parse.urlencode({"serial": argv[1]})
    try:
        with urllib.request.urlopen(f"{url}/_local_sts/code?{query}", timeout=10) as reply:  # noqa: S310
            print(reply.read().decode())
    except OSError as exc:
        print(f"local_sts: no code for {argv[1]} from {url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
