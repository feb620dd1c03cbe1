"""A lean HTTP/1.1 client for the benchmarks: one kept-alive connection per thread.

The benchmarks measure what TorchServe adds to a request, so the client should add as little as
a user's curl would. ``requests`` spends 1-2 ms of Python per call (on a 2-core machine that CPU
is taken from the server being measured); ``http.client`` on a kept-alive connection spends a
fraction of that.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    content_type: str
    content: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def raise_for_status(self) -> None:
        if not self.ok:
            raise RuntimeError(f"HTTP {self.status}: {self.content[:300]!r}")


class Client:
    """POSTs to one server; each thread keeps its own connection open between calls."""

    def __init__(self, base_url: str, timeout: float = 600.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def post(self, path: str, data: bytes, content_type: str = "image/jpeg",
             extra_headers: dict[str, str] | None = None) -> Reply:
        headers = {"Content-Type": content_type, **(extra_headers or {})}
        for attempt in (0, 1):
            conn = self._conn()
            try:
                conn.request("POST", path, body=data, headers=headers)
                r = conn.getresponse()
                body = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return Reply(r.status, r.getheader("Content-Type", ""), body)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # the server closed an idle kept-alive connection: reconnect once
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
