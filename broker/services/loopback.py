"""broker's local HTTP endpoints on 127.0.0.1: `exec --server`'s credential endpoint and
`login`'s one-shot hand-off of the sign-in link to the browser.

Any local user can connect to a port on 127.0.0.1, so this is a deliberately small
HTTP/1.1 server (one request per connection, answered, then closed) that assumes the
neighbours are hostile:

- the whole request head must arrive within ``head_timeout`` (a silent or trickling
  connection holds a thread for seconds, not forever); the answer is sent within
  ``send_timeout``;
- at most ``max_connections`` connections are handled at once; one more gets
  ``503`` and is closed straight away, so nothing piles up;
- ``admit`` (optional) decides on each connection before it takes a place (`login`:
  only the user's own processes);
- accept() errors (EMFILE under a low file-descriptor limit, ENOBUFS...) back off
  from 50 ms to 1 s instead of spinning, and are reported at most once a minute;
- nothing a client does prints a traceback: a reset or a timeout ends the connection
  silently; a bug in a handler is one line through ``report`` and a ``500``.

:func:`peer_uid` tells which local user owns the other end of a loopback connection
(the owner of its socket in ``/proc/net/tcp``).
"""

from __future__ import annotations

import contextlib
import http
import re
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = tuple[str, int]
Report = Callable[[str], None]

HOST = "127.0.0.1"
MAX_CONNECTIONS = 32
#: The request line and headers must all arrive within this many seconds.
HEAD_TIMEOUT = 5.0
SEND_TIMEOUT = 5.0
MAX_HEAD = 16 * 1024
MAX_HEADERS = 100
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 1.0
#: The same kind of complaint (an accept error, a handler bug) at most this often.
REPORT_EVERY = 60.0
#: After the answer: how long to let the client read it and close before closing.
LINGER = 0.5

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n"
    b"Connection: close\r\n\r\n"
)
TCP_TABLE = "/proc/net/tcp"
_TIME_WAIT, _LISTEN = "06", "0A"


def _ignore(_: str) -> None:
    pass


@dataclass(frozen=True)
class Request:
    """One request head: ``method``, ``target`` (origin form, ``/path?query``), the headers,
    and the client's (``peer``) and this server's (``local``) address, as (host, port).
    """
    method: str
    target: str
    #: (lower-case name, value as sent, leading blanks removed), in order.
    headers: tuple[tuple[str, bytes], ...]
    peer: Address
    local: Address

    @property
    def path(self) -> str:
        """The target's path, without query or fragment."""
        return urlsplit(self.target).path

    def values(self, name: str) -> list[bytes]:
        """Every value of the header ``name`` (case-insensitive)."""
        wanted = name.lower()
        return [value for key, value in self.headers if key == wanted]


@dataclass
class Response:
    """An answer: ``status`` code, ``body`` (sent with its Content-Length), ``content_type``,
    extra ``headers`` as (name, value) pairs, and ``delivered``, called once the answer
    was sent or failed.
    """
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    #: Told whether the whole answer went out (True) or the client was gone (False).
    delivered: Callable[[bool], None] | None = None


class BadRequest(Exception):
    """A request head that breaks HTTP/1.1's syntax (RFC 9112): ``status`` is the answer,
    400, or 431 for a head with too many headers or too long.
    """
    def __init__(self, status: int = 400) -> None:
        super().__init__(status)
        self.status = status


def parse_head(head: bytes, peer: Address, local: Address) -> Request:
    """The request line and headers (without the blank line that ends them)."""
    lines = head.split(b"\n")
    lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[2]):
        raise BadRequest()
    method, target = parts[0].decode("ascii"), parts[1]
    if not target.startswith(b"/") or any(b <= 0x20 or b >= 0x7F for b in target):
        raise BadRequest()
    if len(lines) - 1 > MAX_HEADERS:
        raise BadRequest(431)
    headers: list[tuple[str, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        # no blank before the colon, no obsolete line folding (RFC 9112, 5.1 and 5.2)
        if not colon or not _TOKEN.fullmatch(name):
            raise BadRequest()
        headers.append((name.decode("ascii").lower(), value.lstrip(b" \t")))
    return Request(method, target.decode("ascii"), tuple(headers), peer, local)


def _head_end(buffer: bytearray) -> tuple[int, int] | None:
    """(end of the head, start of what follows), once the blank line has arrived."""
    found = [(i, i + len(mark)) for mark in (b"\r\n\r\n", b"\n\n") if (i := buffer.find(mark)) >= 0]
    return min(found) if found else None


def read_head(conn: socket.socket, deadline: float) -> bytes | None:
    """The request head, or None when the client closed first; TimeoutError past
    ``deadline`` (monotonic); BadRequest(431) when it grows beyond MAX_HEAD."""
    buffer = bytearray()
    while True:
        end = _head_end(buffer)
        if end is not None:
            return bytes(buffer[: end[0]])
        if len(buffer) > MAX_HEAD:
            raise BadRequest(431)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request head not complete in time")
        conn.settimeout(remaining)
        chunk = conn.recv(4096)
        if not chunk:
            return None
        buffer += chunk


def render(response: Response, head_only: bool = False) -> bytes:
    """``response`` as HTTP/1.1 bytes: the status line (with the standard reason phrase,
    "Unknown" for a code without one), Content-Type, Content-Length, ``Cache-Control:
    no-store``, ``Connection: close``, its own headers, then the body unless
    ``head_only`` (the answer to HEAD). Header values must be Latin-1.
    """
    try:
        reason = http.HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    lines += [
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    lines += [f"{name}: {value}" for name, value in response.headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


class LoopbackServer:
    """A listening socket on 127.0.0.1 (a port the kernel picks) and the threads that
    answer it: one accepting, one per connection (at most ``max_connections``)."""

    def __init__(
        self,
        handle: Callable[[Request], Response],
        *,
        name: str = "broker-endpoint",
        report: Report = _ignore,
        admit: Callable[[Address, Address], bool] | None = None,
        max_connections: int = MAX_CONNECTIONS,
        head_timeout: float = HEAD_TIMEOUT,
        send_timeout: float = SEND_TIMEOUT,
    ) -> None:
        self.name = name
        self._handle = handle
        self._report = report
        self._admit = admit
        self._head_timeout = head_timeout
        self._send_timeout = send_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._active = 0
        self._complained: dict[str, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._socket.bind((HOST, 0))
            self._socket.listen(64)
            self._socket.setblocking(False)
            self._wake_r, self._wake_w = socket.socketpair()
        except OSError:
            self._socket.close()
            raise
        self.server_address: Address = self._socket.getsockname()

    @property
    def port(self) -> int:
        """The port the kernel picked on 127.0.0.1."""
        return self.server_address[1]

    @property
    def active(self) -> int:
        """Connections being handled now."""
        with self._lock:
            return self._active

    def start(self) -> None:
        """Start the accepting thread (a daemon thread, named :attr:`name`); returns at once."""
        self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and close the port; connections in progress end by themselves
        (within their timeouts)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        for sock in (self._socket, self._wake_r, self._wake_w):
            sock.close()

    def __enter__(self) -> LoopbackServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- accepting --------------------------------------------------------------------

    def _complain(self, kind: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._complained.get(kind)
            if last is not None and now - last < REPORT_EVERY:
                return
            self._complained[kind] = now
        with contextlib.suppress(Exception):
            self._report(message)

    def _serve(self) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._socket, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                delay = 0.0
                while not self._stopping.is_set():
                    selector.select()
                    if self._stopping.is_set():
                        break
                    try:
                        conn, peer = self._socket.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM...
                        delay = min(max(delay * 2, BACKOFF_FIRST), BACKOFF_MAX)
                        self._complain(
                            "accept",
                            f"{self.name}: cannot accept connections "
                            f"({exc.strerror or exc}); retrying",
                        )
                        self._stopping.wait(delay)
                        continue
                    delay = 0.0
                    self._start_connection(conn, peer)
        except Exception as exc:  # a bug: never a traceback in the user's terminal
            self._complain("serve", f"{self.name} stopped: unexpected {type(exc).__name__}")

    def _start_connection(self, conn: socket.socket, peer: Address) -> None:
        try:
            local = conn.getsockname()
            if self._admit is not None and not self._admit(peer, local):
                conn.close()
                return
        except Exception as exc:
            conn.close()
            if not isinstance(exc, OSError):
                self._complain("admit", f"{self.name}: unexpected {type(exc).__name__}")
            return
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                conn.setblocking(False)
                conn.send(_BUSY)
            conn.close()
            return
        with self._lock:
            self._active += 1
        worker = threading.Thread(
            target=self._connection, args=(conn, peer, local),
            name=f"{self.name}-connection", daemon=True,
        )
        try:
            worker.start()
        except RuntimeError:  # no thread to be had: as if busy
            self._finished()
            conn.close()
            self._complain("thread", f"{self.name}: cannot start a thread for a connection")

    def _finished(self) -> None:
        with self._lock:
            self._active -= 1
        self._slots.release()

    # -- one connection -----------------------------------------------------------------

    def _connection(self, conn: socket.socket, peer: Address, local: Address) -> None:
        try:
            with conn:
                self._exchange(conn, peer, local)
        except OSError:
            pass  # a reset, a timeout, a closed pipe: the client went away; nothing to say
        except Exception as exc:
            self._complain("handler", f"{self.name}: unexpected {type(exc).__name__}")
        finally:
            self._finished()

    def _exchange(self, conn: socket.socket, peer: Address, local: Address) -> None:
        deadline = time.monotonic() + self._head_timeout
        try:
            head = read_head(conn, deadline)
            if head is None:
                return
            request = parse_head(head, peer, local)
        except BadRequest as exc:
            self._send(conn, Response(exc.status), head_only=False)
            return
        try:
            response = self._handle(request)
        except Exception as exc:
            self._complain("handler", f"{self.name}: unexpected {type(exc).__name__}")
            response = Response(500, b'{"Message": "unexpected error"}')
        self._send(conn, response, head_only=request.method == "HEAD")

    def _send(self, conn: socket.socket, response: Response, head_only: bool) -> None:
        try:
            conn.settimeout(self._send_timeout)
            conn.sendall(render(response, head_only))
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            if response.delivered is not None:
                response.delivered(False)
            raise
        if response.delivered is not None:
            response.delivered(True)
        # Let the client read the answer and close first: closing with unread input
        # would reset the connection, and a reset can destroy the answer in flight.
        conn.settimeout(LINGER)
        for _ in range(16):
            if not conn.recv(4096):
                break


# --- who is at the other end --------------------------------------------------------------


def _hex(address: Address) -> str:
    """An IPv4 address as /proc/net/tcp prints it (the raw 32 bits in host order)."""
    host, port = address
    (raw,) = struct.unpack("=I", socket.inet_aton(host))
    return f"{raw:08X}:{port:04X}"


def peer_uid(peer: Address, local: Address, table: str | None = None) -> int | None:
    """The uid owning the other end of the TCP connection ``local`` <- ``peer`` on this
    machine: its socket is the entry whose local address is ``peer`` and whose remote
    address is ``local``. None when there is no such socket (the peer is not a local
    socket in this network namespace, or has gone)."""
    mine, theirs = _hex(local), _hex(peer)
    with open(table or TCP_TABLE, encoding="ascii", errors="replace") as lines:
        next(lines, None)
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[1] != theirs or fields[2] != mine:
                continue
            if fields[3] in (_TIME_WAIT, _LISTEN):  # no owner any more
                continue
            try:
                return int(fields[7])
            except ValueError:
                return None
    return None


def can_tell_peers(table: str | None = None) -> bool:
    """Whether :func:`peer_uid` works here (Linux's /proc/net/tcp is readable)."""
    try:
        with open(table or TCP_TABLE, encoding="ascii", errors="replace") as lines:
            return next(lines, "").split()[:3] == ["sl", "local_address", "rem_address"]
    except OSError:
        return False
