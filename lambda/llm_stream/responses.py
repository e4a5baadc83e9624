"""The streaming response: each token is sent the moment the endpoint produces it.

The blocking boto3 stream is read in its own thread (``reader.py``); the event
loop sends each item as it is queued, watches for the client going away (then closes the upstream
connection, so the endpoint stops generating), and ends the stream with an
``error`` event when the time budget runs out rather than letting Lambda cut it.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .answer_shapes import finish_answer
from .answer_text import AnswerText
from .reader import StreamReader
from .stats import RequestStats
from .tokens import StreamError
from .upstream import StreamEnd
from .upstream_errors import stream_message


class Encoder(Protocol):
    media_type: str

    def token(self, text: str) -> bytes: ...
    def done(self, stats: RequestStats) -> bytes: ...
    def error(self, error_type: str, message: str, request_id: str) -> bytes: ...


def _utf8(text: str) -> bytes:
    # A container may send a lone surrogate (a JSON escape); it must not stop the stream.
    return text.encode("utf-8", "replace")


def _sse(event: str, data: dict[str, object]) -> bytes:
    return _utf8(f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n")


class SseEncoder:
    """``text/event-stream``: ``token`` events, then one ``done`` or ``error`` event."""

    media_type = "text/event-stream; charset=utf-8"

    def token(self, text: str) -> bytes:
        return _sse("token", {"text": text})

    def done(self, stats: RequestStats) -> bytes:
        return _sse("done", {
            "finish_reason": stats.finish_reason,
            "generated_tokens": stats.generated_tokens if stats.generated_tokens is not None else stats.tokens,
            "ttft_ms": stats.ttft_ms(),
            "duration_ms": stats.duration_ms(),
        })

    def error(self, error_type: str, message: str, request_id: str) -> bytes:
        return _sse("error", {"type": error_type, "message": message, "request_id": request_id})


#: Starts the error line of a plain-text stream; never part of the content (see PlainEncoder).
ERROR_MARK = "\x1e"


class PlainEncoder:
    """``text/plain``: the raw text; a failure ends it with a line ``\\x1e[error: <type>] <message> ...``.

    The line starts with U+001E (record separator), which the content never holds (it is replaced by
    U+FFFD), so an answer cannot forge the error line, whatever the model writes.
    """

    media_type = "text/plain; charset=utf-8"

    def token(self, text: str) -> bytes:
        return _utf8(text.replace(ERROR_MARK, "\ufffd"))

    def done(self, stats: RequestStats) -> bytes:
        return b"\n"

    def error(self, error_type: str, message: str, request_id: str) -> bytes:
        # The message may quote the container (its validation text): it cannot open a line or forge the mark.
        return _utf8(f"\n{ERROR_MARK}[error: {_one_line(error_type)}] {_one_line(message)} (request {request_id})\n")


def _one_line(text: str) -> str:
    return text.translate(_NOT_IN_ERROR_LINE)


_NOT_IN_ERROR_LINE = {ord(ERROR_MARK): "\ufffd", ord("\n"): " ", ord("\r"): " ", 0x85: " ", 0x2028: " ", 0x2029: " "}


class TokenStreamResponse(Response):
    def __init__(
        self,
        reader: StreamReader,
        first_token: str | None,
        encoder: Encoder,
        stats: RequestStats,
        deadline: float,
        answer: AnswerText | None = None,
    ) -> None:
        # No body attribute: the length is unknown, so no Content-Length header (chunked encoding).
        self.status_code = 200
        self.media_type = encoder.media_type
        self.background = None
        self.init_headers({"x-accel-buffering": "no"})
        self.reader = reader
        self.first_token = first_token
        self.encoder = encoder
        self.stats = stats
        self.deadline = deadline
        self.answer = answer or AnswerText()
        self._finished = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch_disconnect, receive, self.stats, tasks.cancel_scope, lambda: self._finished)
                try:
                    await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                    await self._pump(send)
                except OSError:  # the client went away while we were sending
                    self.stats.client_disconnected = True
                tasks.cancel_scope.cancel()
        finally:
            # The one place a stream is given up: client gone, budget spent or upstream failed.
            if self.stats.client_disconnected or self.stats.error_type:
                self.reader.cancel()

    async def _send_body(self, send: Send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    async def _pump(self, send: Send) -> None:
        try:
            await self._pump_tokens(send)
        except (OSError, anyio.get_cancelled_exc_class()):
            raise
        except Exception:  # a bug must still end the stream with a clear error, not a cut connection
            self.stats.traceback = traceback.format_exc()
            await self._fail(send, StreamError("internal_error", "the function failed while streaming"))
        self._finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump_tokens(self, send: Send) -> None:
        if self.first_token is not None:
            await self._send_token(send, self.first_token)
        while True:
            item = await self.reader.next(self.deadline)
            if item is None:
                await self._fail(send, StreamError("time_budget_exceeded", "the time budget ran out"),
                                 "the answer took longer than this deployment's time budget; it was cut short")
                break
            if isinstance(item, StreamEnd):
                self.reader.record_end(self.stats)
                await self._send_text(send, await finish_answer(self.answer, self.stats.finish_reason))
                if self.answer.failure is not None:  # not the shape asked for (answer_shapes.py)
                    await self._fail(send, self.answer.failure, self.answer.failure.message)
                else:
                    await self._send_body(send, self.encoder.done(self.stats))
                break
            if isinstance(item, StreamError):
                await self._fail(send, item)
                break
            await self._send_token(send, item)  # type: ignore[arg-type]

    async def _send_token(self, send: Send, text: str) -> None:
        if self.stats.first_token_at is None:
            self.stats.first_token_at = time.monotonic()
        self.stats.tokens += 1
        await self._send_text(send, self.answer.feed(text))

    async def _send_text(self, send: Send, text: str) -> None:
        if text:  # nothing when the token is held back (it may start a stop sequence or a newline symbol)
            await self._send_body(send, self.encoder.token(text))

    async def _fail(self, send: Send, error: StreamError, message: str | None = None) -> None:
        """End the stream with an error event: a safe message for the caller, the detail for the log."""
        await self._send_text(send, self.answer.finish(None))
        self.stats.error_type, self.stats.error_detail = error.error_type, str(error)
        await self._send_body(send, self.encoder.error(error.error_type, message or stream_message(error),
                                                       self.stats.request_id))


T = TypeVar("T")


async def unless_caller_leaves(receive: Receive, stats: RequestStats, awaitable: Awaitable[T]) -> T | None:
    """What ``awaitable`` gives, or ``None`` as soon as the caller goes away (``stats.client_disconnected``);
    what it raises is raised once the watch has stopped."""
    outcome: list[T] = []
    failure: list[BaseException] = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch_disconnect, receive, stats, tasks.cancel_scope)
        try:
            outcome.append(await awaitable)
        except Exception as exc:  # raised below, not wrapped in the task group's ExceptionGroup
            failure.append(exc)
        tasks.cancel_scope.cancel()
    if failure:
        raise failure[0]
    return outcome[0] if outcome else None


async def watch_disconnect(receive: Receive, stats: RequestStats, scope: anyio.CancelScope,
                           finished: Callable[[], bool] = lambda: False) -> None:
    """Cancel ``scope`` when the caller goes away. The server reports the end of a completed exchange as a
    disconnect too: ``finished`` says whether the answer was already complete."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if finished():
                return
            stats.client_disconnected = True
            scope.cancel()
            return
