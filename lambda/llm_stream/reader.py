"""One thread per stream reads the blocking boto3 stream and hands each item to the event loop as it arrives.

A worker-pool hop per token costs two cross-thread wake-ups (submit, then result) and lets the
reader sit idle while the loop sends; a dedicated reader costs one (``call_soon_threadsafe``) and
keeps reading ahead, which matters when many streams share a process (``make dev``, benchmarks).

The invariant this module holds for every route: the event loop never waits on the endpoint. Opening
the stream (DNS, connect, signing), reading it and closing it all happen in the reader's thread; the
loop only takes items from a queue and cancels with a flag and a socket shutdown, neither of which
blocks (``UpstreamStream.cancel``), so a silent endpoint cannot hold up any other request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import traceback
from collections.abc import Callable

import anyio

from .errors import ApiError, internal_error
from .stats import RequestStats
from .tokens import StreamError
from .upstream import StreamEnd, UpstreamStream

Item = str | StreamEnd | StreamError | ApiError
TOO_MANY_STREAMS_RETRY_AFTER_SECONDS = 1


class StreamReader:
    """Opens the upstream stream in its own thread, then queues every token, and finally END or the error."""

    def __init__(self, open_upstream: Callable[[], UpstreamStream], limiter: anyio.CapacityLimiter) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._limiter = limiter
        self._stream: UpstreamStream | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(open_upstream,), name="upstream-reader", daemon=True)

    @classmethod
    async def reserve(cls, open_upstream: Callable[[], UpstreamStream], limiter: anyio.CapacityLimiter,
                      wait_seconds: float) -> StreamReader:
        """A reader holding one of the ``max_concurrent_streams`` slots, after waiting at most ``wait_seconds``.

        Raises :class:`ApiError` 503 ``too_many_streams`` when no slot frees up in time.
        """
        reader = cls(open_upstream, limiter)
        try:
            limiter.acquire_on_behalf_of_nowait(reader)
        except anyio.WouldBlock:
            with anyio.move_on_after(wait_seconds):
                await limiter.acquire_on_behalf_of(reader)
                return reader
            raise ApiError(503, "too_many_streams", "every stream slot is busy; retry shortly",
                           {"Retry-After": str(TOO_MANY_STREAMS_RETRY_AFTER_SECONDS)}) from None
        return reader

    def start(self) -> None:
        """Open the stream and read it in the reader's own thread, which gives the slot back when it ends."""
        self._thread.start()

    def release_unstarted(self) -> None:
        """Give the slot back without calling the endpoint (the caller left, or its time ran out)."""
        self._limiter.release_on_behalf_of(self)

    async def next(self, deadline: float) -> Item | None:
        """The next item, or ``None`` when ``deadline`` (monotonic) passes first."""
        with anyio.move_on_after(max(deadline - time.monotonic(), 0)):
            return await self._queue.get()
        return None

    def cancel(self) -> None:
        """Stop reading; the reader thread then closes the upstream connection (safe from any thread, at any
        time, and returns at once)."""
        self._cancelled.set()
        if self._stream is not None:
            self._stream.cancel()

    def record_end(self, stats: RequestStats) -> None:
        """What the container said about the finished answer: why it ended, and its token counts."""
        if self._stream is not None:
            tokens = self._stream.tokens
            stats.finish_reason, stats.generated_tokens = tokens.finish_reason, tokens.generated_tokens
            stats.input_tokens = tokens.input_tokens

    def _put(self, item: Item) -> bool:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone: the server is shutting down
            return False
        return True

    def _run(self, open_upstream: Callable[[], UpstreamStream]) -> None:
        # Whatever happens here reaches the event loop as an item at once: the route must never be
        # left waiting for its deadline because this thread failed in a way nobody foresaw.
        complete = False
        try:
            try:
                stream = open_upstream()
            except ApiError as error:
                self._put(error)
                return
            except Exception:
                self._put(internal_error(detail=traceback.format_exc()))
                return
            self._stream = stream
            if self._cancelled.is_set():  # cancelled while the stream was opening
                stream.cancel()
            while True:
                item = stream.next_item()
                complete = isinstance(item, StreamEnd) and not stream.cancelled
                if not self._put(item) or not isinstance(item, str):
                    return
        except Exception:
            self._put(StreamError("internal_error", traceback.format_exc()))
        finally:
            if self._stream is not None and not complete:  # failed, cancelled or abandoned: hang up
                self._stream.close()  # here: closing waits for a read in progress to return
            with contextlib.suppress(RuntimeError):  # the event loop is gone, and its limiter with it
                self._loop.call_soon_threadsafe(self._limiter.release_on_behalf_of, self)
