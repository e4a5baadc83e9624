"""An HTTP proxy in front of an AWS API server that can hold back chosen answers: the request reaches the server
and takes effect at once, its answer arrives late (a slow or lost response, as a client sees one)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@contextmanager
def slow_proxy(target: str, hold: Callable[[dict[str, str], bytes], float]) -> Iterator[str]:
    """A proxy to ``target`` on loopback, its URL; ``hold(headers, body)`` says how many seconds to hold back the
    answer to that request (0: none)."""
    forward = httpx.Client(base_url=target, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
            answer = forward.post(self.path, content=body, headers=headers)
            delay = hold(headers, body)
            if delay:
                time.sleep(delay)
            try:
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)
            except OSError:  # the client gave up waiting
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        forward.close()
