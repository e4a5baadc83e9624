"""Incremental server-sent events parser (the subset the function sends: event, data, comments)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str


def parse_events(lines: Iterable[str]) -> Iterator[ServerSentEvent]:
    """Events from decoded lines (without their line endings), dispatched on each blank line."""
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(event, "\n".join(data))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data:
        yield ServerSentEvent(event, "\n".join(data))
