"""A local HTTP server that answers in JSON, for the tests' stand-ins of GitHub's REST API and other web endpoints.

`JSONServer(answer)` listens on 127.0.0.1 (a free port; its base URL is `.url`) in a thread of its own and hands
each request to `answer(method, path, headers, body)`: the method, the path with its query, the request's headers
and its body as bytes. `answer` returns the status, the data to send as JSON and any more headers, or None to send
nothing (a server that hangs). `stop()` shuts it down.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, Any, Mapping[str, str]]
Answer = Callable[[str, str, Message, bytes], Reply | None]


class JSONServer:
    def __init__(self, answer: Answer) -> None:
        self.server = _Server(answer)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a hanging answer is not waited for

    def __init__(self, answer: Answer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer


class _Handler(BaseHTTPRequestHandler):
    def _serve(self) -> None:
        assert isinstance(self.server, _Server)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = self.server.answer(self.command, self.path, self.headers, body)
        if reply is None:
            return
        status, data, headers = reply
        payload = json.dumps(data).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass
