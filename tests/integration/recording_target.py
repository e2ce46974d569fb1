"""An HTTP target on 127.0.0.1 that accepts every order and keeps its JSON body (for who-sent-what tests)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class RecordingServer(ThreadingHTTPServer):
    """Accepts every order and keeps its JSON body."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), AcceptAndRecord)
        self.bodies: list[dict] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class AcceptAndRecord(BaseHTTPRequestHandler):
    server: RecordingServer

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
        reply = b'{"status":"ACCEPTED"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(name="recording_target")
def recording_target_fixture():
    server = RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def content(order: dict) -> tuple:
    """An order without its id (the pods' ids share a prefix of their own)."""
    return tuple(sorted((k, v) for k, v in order.items() if k != "orderId"))
