"""HTTP by hand over a socket, for what no well-behaved client sends."""

from __future__ import annotations

import socket
import time


def exchange(url: str, *parts: bytes) -> bytes:
    """Send ``parts`` (each in one write) and read the whole answer, until the server closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for part in parts:
            sock.sendall(part)
            time.sleep(0.05)  # each part is its own read
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body
