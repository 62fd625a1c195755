"""A dependency a test can take away: a TCP forwarder in front of PostgreSQL (or any
server) that the test switches off and on, and helpers to watch an API through it.

Off, every connection through it is cut at once and every new one is accepted and
closed: to a client, the server went away and does not come back until ``on()``.
Only the service under test goes through it; the test's own connections do not.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import psycopg


class TcpSwitch:
    """Forwards ``127.0.0.1:<port>`` to ``host:port`` while on."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._on = True
        self._closed = False
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, name="tcp-switch", daemon=True).start()

    @classmethod
    def before(cls, url: str) -> TcpSwitch:
        """A switch in front of the server of a ``postgresql://`` URL."""
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 5432)

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this switch's."""
        parts = urlsplit(url)
        user, at, _ = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{user}{at}127.0.0.1:{self.port}"))

    def off(self) -> None:
        """Cut every connection now and refuse new ones."""
        with self._lock:
            self._on = False
            for sock in self._open:
                _cut(sock)
            self._open.clear()

    def on(self) -> None:
        with self._lock:
            self._on = True

    def close(self) -> None:
        self._closed = True
        self.off()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                on = self._on
            if not on:
                _cut(client)
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                _cut(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if not self._on:
                    _cut(client)
                    _cut(upstream)
                    continue
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink), name="tcp-switch-pump", daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _cut(source)
            _cut(sink)


def _cut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv on it
    sock.close()


def with_application_name(url: str, name: str) -> str:
    """``url`` with ``application_name`` set, so a test finds the service's backends."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["application_name"] = name
    return urlunsplit(parts._replace(query=urlencode(query)))


def terminate_backends(conn: psycopg.Connection, application_name: str) -> int:
    """``pg_terminate_backend`` on every backend of ``application_name``; how many."""
    rows = conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        (application_name,),
    ).fetchall()
    return len(rows)


def seconds_until(
    check: Callable[[], bool], what: str, timeout: float, every: float = 0.1
) -> float:
    """Seconds until ``check()`` is true; fails with ``what`` after ``timeout``."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(every)
    return time.monotonic() - began


def ready(client: httpx.Client) -> bool:
    """``/readyz``: True 200, False 503 (anything else fails)."""
    answer = client.get("/readyz")
    assert answer.status_code in (200, 503), answer.text
    return answer.status_code == 200


def assert_unavailable(answer: httpx.Response) -> None:
    """A 503 in the API edge's error shape, with ``Retry-After``."""
    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) > 0
    body = answer.json()
    assert isinstance(body["error"], str) and isinstance(body["detail"], list), body
