"""The HTTP endpoint of a long-running process: /metrics, /healthz (alive) and /readyz (ready)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["Probe", "serve_health"]


class Probe:
    """What the process says about itself; its main loop calls `beat` and `set_ready`.

    Alive means the main loop beat within `stale_after_s` (a hung loop stops beating while the
    HTTP thread would still answer); ready means it can do its job now.
    """

    def __init__(self, stale_after_s: float = 30.0) -> None:
        self.stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._beat = time.monotonic()
        self._not_ready: str | None = "starting"

    def beat(self) -> None:
        with self._lock:
            self._beat = time.monotonic()

    def set_ready(self, reason_not: str | None) -> None:
        """None: ready; otherwise the reason it is not (shown by /readyz)."""
        with self._lock:
            self._not_ready = reason_not

    def alive(self) -> tuple[bool, str]:
        with self._lock:
            silent_s = time.monotonic() - self._beat
        if silent_s > self.stale_after_s:
            return False, f"main loop silent for {silent_s:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        alive, why = self.alive()
        if not alive:
            return False, why
        with self._lock:
            return self._not_ready is None, self._not_ready or "ready"


def serve_health(port: int, address: str, probe: Probe) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /readyz on `address:port` from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._answer(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path in ("/healthz", "/readyz"):
                ok, why = probe.alive() if self.path == "/healthz" else probe.ready()
                self._answer(200 if ok else 503, f"{why}\n".encode(), "text/plain")
            else:
                self._answer(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass  # a scrape every few seconds is not news

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
