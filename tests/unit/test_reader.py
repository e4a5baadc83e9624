"""The stream reader: it hangs up on the endpoint whenever an answer does not end normally, and only then."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest

from llm_stream.reader import StreamReader
from llm_stream.tokens import StreamError
from llm_stream.upstream import StreamEnd, UpstreamStream
from tests.helpers.streams import sse_line, tgi_final, tgi_token


class RecordingBody:
    """Stands where botocore's EventStream does: iterates ``PayloadPart`` events and records ``close``."""

    def __init__(self, lines: list[bytes]) -> None:
        self._events: Iterator[dict[str, dict[str, bytes]]] = iter({"PayloadPart": {"Bytes": line}} for line in lines)
        self.closed = False

    def __iter__(self) -> RecordingBody:
        return self

    def __next__(self) -> dict[str, dict[str, bytes]]:
        return next(self._events)

    def close(self) -> None:
        self.closed = True


def read_all(body: RecordingBody) -> list[object]:
    async def run() -> list[object]:
        limiter = anyio.CapacityLimiter(1)
        reader = await StreamReader.reserve(lambda: UpstreamStream(body), limiter, 1)  # type: ignore[arg-type]
        reader.start()
        items: list[object] = []
        while True:
            item = await reader.next(time.monotonic() + 5)
            items.append(item)
            if not isinstance(item, str):
                break
        with anyio.fail_after(5):  # the slot comes back when the reader thread has ended
            async with limiter:
                pass
        return items

    return anyio.run(run)


def test_a_complete_answer_leaves_the_connection_open_for_reuse() -> None:
    body = RecordingBody([sse_line(tgi_token(1, "Hi")), sse_line(tgi_final(2, "</s>", "Hi"))])
    items = read_all(body)
    assert items[0] == "Hi"
    assert isinstance(items[-1], StreamEnd)
    assert not body.closed


@pytest.mark.parametrize("failure", [b"data:{not json}\n\n",
                                     b'data:{"error": "CUDA OOM", "error_type": "generation"}\n\n'])
def test_an_answer_that_fails_hangs_up_on_the_endpoint(failure: bytes) -> None:
    body = RecordingBody([sse_line(tgi_token(1, "Hi")), failure, sse_line(tgi_token(2, " there"))])
    items = read_all(body)
    assert isinstance(items[-1], StreamError)
    assert body.closed
