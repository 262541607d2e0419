"""A scriptable HTTP server on loopback for the Vault client's tests: it records every
request (method, path, headers, body) and answers through a function of the test's, which
may forward the request to a real server (a proxy in front of OpenBao) and answer
something else, as a load balancer or a broken network would.

    with LoopbackHTTP(lambda req: Reply(307, {"Location": other.url + req.path})) as server:
        server.url        # http://127.0.0.1:PORT
        server.requests   # [Request(...), ...]
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"
    #: Close the connection without any answer (after the request was read, or forwarded).
    drop: bool = False


Answer = Callable[[Request], Reply]


def forward(upstream: str, request: Request) -> Reply:
    """Send ``request`` to ``upstream`` (a base URL) and return its reply."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host", "connection"}}
    outgoing = urllib.request.Request(
        upstream + request.path,
        data=request.body or None,
        headers=headers,
        method=request.method,
    )
    try:
        with urllib.request.urlopen(outgoing, timeout=10) as response:
            return Reply(response.status, {}, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {}, exc.read())


class LoopbackHTTP:
    def __init__(self, answer: Answer, host: str = "127.0.0.1") -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LoopbackHTTP:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command, self.path, dict(self.headers.items()), self.rfile.read(length)
                )
                with server._lock:
                    server.requests.append(request)
                reply = server.answer(request)
                if reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet (and no token in any log)

        return Handler
