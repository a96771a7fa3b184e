"""A small HTTP proxy that injects object-store faults in front of the GCS emulator.

Every request is forwarded to the emulator and its answer relayed, except that, per direction (reads are
GETs, writes are uploads), the first of every `every` requests is answered with a fault instead, cycling
through HTTP 429, HTTP 503 and a connection dropped without an answer (a write's body is read first, as
a server failing mid-request would), until that direction's `budget` of faults is spent; after that
it only forwards. It runs in a daemon thread on 127.0.0.1 and stops when its context exits.

Usage::

    plan = {"read": FaultPlan(every=3, budget=6), "write": FaultPlan(every=2, budget=3)}
    with FaultProxy(gcs.endpoint, plan) as proxy, route_gcs_through(proxy.endpoint):
        ...  # gs:// I/O made now (and in Ray workers it pickles into) goes through the proxy
    proxy.injected  # Counter of (direction, kind)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import urlsplit

FAULT_KINDS = ("429", "503", "drop")
# Hop-by-hop headers: each side of the proxy sets its own.
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class FaultPlan:
    every: int  # fault the 1st, (1 + every)th, ... request of the direction
    budget: int  # faults at most


class FaultProxy:
    def __init__(self, upstream: str, plan: dict[str, FaultPlan]):
        self.upstream = urlsplit(upstream)
        self.plan = plan
        self.seen: Counter[str] = Counter()  # requests per direction: read, write, other
        self.injected: Counter[tuple[str, str]] = Counter()  # (direction, kind) -> faults
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fault_for(self, direction: str) -> str | None:
        """Which fault (if any) this request gets: decided under a lock, so the plan is deterministic
        in the order requests arrive."""
        with self._lock:
            self.seen[direction] += 1
            plan = self.plan.get(direction)
            done = sum(n for (d, _), n in self.injected.items() if d == direction)
            if plan is None or done >= plan.budget or (self.seen[direction] - 1) % plan.every:
                return None
            kind = FAULT_KINDS[done % len(FAULT_KINDS)]
            self.injected[(direction, kind)] += 1
            return kind

    def __enter__(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upload = self.command in ("POST", "PUT") and "/upload/" in self.path
                direction = "read" if self.command == "GET" else "write" if upload else "other"
                kind = proxy.fault_for(direction)
                if kind == "drop":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if kind is not None:
                    payload = json.dumps({"error": {"code": int(kind), "message": f"injected {kind}"}}).encode()
                    self._answer(int(kind), [("Content-Type", "application/json")], payload)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    kept = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_HEADERS]
                    self._answer(response.status, kept, payload)
                finally:
                    upstream.close()

            def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def route_gcs_through(endpoint: str) -> Iterator[None]:
    """gs:// filesystems made in this process while the context is open use `endpoint`. The setting is
    part of each filesystem's arguments, so the filesystems pickled into Ray workers use it too."""
    import fsspec.config
    from gcsfs.core import GCSFileSystem

    saved = fsspec.config.conf.get("gs")
    fsspec.config.conf["gs"] = {**(saved or {}), "endpoint_url": endpoint}
    GCSFileSystem.clear_instance_cache()
    try:
        yield
    finally:
        if saved is None:
            fsspec.config.conf.pop("gs", None)
        else:
            fsspec.config.conf["gs"] = saved
        GCSFileSystem.clear_instance_cache()
