"""A real HTTP server on loopback that plays a CAPTCHA verifier (Turnstile, hCaptcha, reCAPTCHA
all speak the same siteverify protocol). A test sets its mode and reads what it was sent."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from service.localredis import free_port

# Modes: pass | fail | bad_secret | error (HTTP 500) | garbage (not JSON) | hang (answers late)
MODES = ("pass", "fail", "bad_secret", "error", "garbage", "hang")


class Verifier:
    def __init__(self, hang_seconds: float = 3.0) -> None:
        self.port = free_port()
        self.mode = "pass"
        self.hang_seconds = hang_seconds
        self.requests: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/siteverify"

    def start(self) -> Verifier:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        verifier = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                with verifier._lock:
                    verifier.requests.append(form)
                mode = verifier.mode
                if mode == "hang":
                    time.sleep(verifier.hang_seconds)
                if mode == "error":
                    self._answer(500, b"oops")
                elif mode == "garbage":
                    self._answer(200, b"<html>not json</html>")
                else:
                    body = {
                        "pass": {"success": True, "hostname": "www.example.org"},
                        "hang": {"success": True},
                        "fail": {"success": False, "error-codes": ["invalid-input-response"]},
                        "bad_secret": {"success": False, "error-codes": ["invalid-input-secret"]},
                    }[mode]
                    self._answer(200, json.dumps(body).encode())

            def _answer(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (the hang mode's purpose)

        return Handler
