"""A reverse proxy for fault tests: it forwards HTTP to a labserver and, where a rule says so, answers
the way proxies and load balancers do when something between the client and the store goes wrong.

    proxy = FaultProxy(server.url, max_body=1 << 20)          # nginx's default client_max_body_size
    proxy.add("POST", "log-batch", "html", status=502, times=2)  # a bad gateway page, twice
    proxy.add("POST", "log-batch", "applied", status=500, every=3)  # forwarded, then answered 500

Kinds: "status" (an empty answer with that status), "html" (an HTML error page, as nginx writes them),
"applied" (the request reaches the server, which applies it; the client gets `status` instead of the
server's answer) and "drop" (the connection is closed without an answer). A body over `max_body` gets
nginx's 413 page and never reaches the server. Runs in a thread of the test process; `stats` counts
what went through.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
}
_REASONS = {
    404: "Not Found",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def nginx_page(status: int) -> bytes:
    title = f"{status} {_REASONS.get(status, 'Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        f"<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


@dataclass
class Rule:
    method: str
    path: re.Pattern
    kind: str
    status: int = 502
    times: int | None = None  # answer this many matching requests so, then let them through
    every: int = 1  # only every n-th matching request
    seen: int = 0
    hits: int = 0

    def fires(self, method: str, path: str) -> bool:
        if method != self.method or not self.path.search(path):
            return False
        self.seen += 1
        if (self.times is not None and self.hits >= self.times) or self.seen % self.every:
            return False
        self.hits += 1
        return True


@dataclass
class Stats:
    requests: Counter = field(default_factory=Counter)  # "METHOD path" -> count, as forwarded or faulted
    faults: Counter = field(default_factory=Counter)  # kind -> count
    largest_body: int = 0  # the largest body forwarded to the server


class FaultProxy:
    def __init__(self, upstream: str, max_body: int | None = None):
        target = urlparse(upstream)
        self.upstream = (target.hostname, target.port)
        self.max_body = max_body
        self.rules: list[Rule] = []
        self.stats = Stats()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(
        self, method: str, path_pattern: str, kind: str, status: int = 502, times: int | None = None, every: int = 1
    ) -> Rule:
        rule = Rule(method, re.compile(path_pattern), kind, status, times, every)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _fault_for(self, method: str, path: str) -> Rule | None:
        with self._lock:
            self.stats.requests[f"{method} {path.split('?')[0]}"] += 1
            fired = next((rule for rule in self.rules if rule.fires(method, path)), None)
            if fired is not None:
                self.stats.faults[fired.kind] += 1
            return fired


def _handler(proxy: FaultProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a client's session uses it

        def log_message(self, *args) -> None:  # quiet: pytest shows the test's own output
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self, body: bytes) -> tuple[int, bytes, list[tuple[str, str]]]:
            connection = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                headers = {key: value for key, value in self.headers.items() if key.lower() not in _HOP_BY_HOP}
                headers["Host"] = f"{proxy.upstream[0]}:{proxy.upstream[1]}"
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                kept = [(key, value) for key, value in response.getheaders() if key.lower() not in _HOP_BY_HOP]
                with proxy._lock:
                    proxy.stats.largest_body = max(proxy.stats.largest_body, len(body))
                return response.status, data, kept
            finally:
                connection.close()

        def _handle(self) -> None:
            body = self._body()
            if proxy.max_body is not None and len(body) > proxy.max_body:
                with proxy._lock:
                    proxy.stats.faults["413"] += 1
                self._answer(413, nginx_page(413), [("Content-Type", "text/html")])
                return
            rule = proxy._fault_for(self.command, self.path)
            if rule is None:
                self._answer(*self._forward(body))
            elif rule.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif rule.kind == "applied":
                self._forward(body)
                self._answer(rule.status, nginx_page(rule.status), [("Content-Type", "text/html")])
            elif rule.kind == "html":
                self._answer(rule.status, nginx_page(rule.status), [("Content-Type", "text/html")])
            else:
                self._answer(rule.status, b"", [])

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    return Handler
