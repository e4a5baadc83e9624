"""HTTP by hand over a socket, for what no well-behaved client sends."""

from __future__ import annotations

import socket
import time


def exchange(url: str, *parts: bytes, until_close: bool = True) -> bytes:
    """Send ``parts`` (each in one write) and read the answer: until the server closes, or with
    ``until_close=False`` until one response with a ``Content-Length`` is complete (a kept-alive connection)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for part in parts:
            sock.sendall(part)
            time.sleep(0.05)  # each part is its own read
        answer = b""
        while (until_close or not _complete(answer)) and (chunk := sock.recv(65536)):
            answer += chunk
    return answer


def _complete(answer: bytes) -> bool:
    head, separator, body = answer.partition(b"\r\n\r\n")
    return bool(separator) and len(body) >= int(parse(head + separator)[1].get("content-length", "0"))


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body
