"""What every streaming route shares, whatever its API: the request's input checked and validated, one of
the stream slots, and the endpoint opened until its first token, within the request's deadline.

A route calls :meth:`Gateway.validated` and then :meth:`Gateway.open_upstream`; what it refuses it raises
as an :class:`~llm_stream.errors.ApiError`, which the app answers in one place (``error_responses.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio
from starlette.requests import Request

from .answer_text import AnswerText
from .errors import ApiError
from .http_input import check_origin, read_body
from .lifecycle import lambda_deadline, request_stats
from .model_routing import route, routed
from .preload import Preload
from .reader import StreamReader
from .responses import unless_caller_leaves
from .settings import Settings
from .stats import RequestStats
from .tokens import StreamError
from .upstream import StreamEnd, UpstreamStream, open_stream
from .upstream_errors import first_event_error
from .wake_up import WakeUpClock

if TYPE_CHECKING:
    from mypy_boto3_sagemaker_runtime import SageMakerRuntimeClient

    from .key_accounting import KeyAccounting
    from .payloads import UpstreamRequest

#: Seconds kept back from Lambda's own deadline to send the final ``error`` event.
DEADLINE_MARGIN_SECONDS = 2.0
_Parsed = TypeVar("_Parsed")


@dataclass(frozen=True)
class OpenedStream:
    reader: StreamReader
    first: str | None
    deadline: float
    request: UpstreamRequest

    def answer_text(self) -> AnswerText:
        """How the reader should see the model's text (stops trimmed, newlines restored)."""
        return self.request.answer_text()


class Gateway:
    def __init__(self, settings: Settings, client: SageMakerRuntimeClient | None = None,
                 accounting: KeyAccounting | None = None) -> None:
        self.settings = settings
        self.accounting = accounting
        self.preload = Preload(settings, client)
        #: Each model wakes on its own (its inference component's copies).
        self._wake_up = {model_id: WakeUpClock(settings.wake_up_seconds) for model_id in settings.model_ids}
        self._limiter: anyio.CapacityLimiter | None = None

    def start(self) -> None:
        """Called by the app's lifespan, on its event loop, once the server is otherwise ready: the stream
        slots, then the preload (what requests need but the way to ready does not)."""
        self._limiter = anyio.CapacityLimiter(self.settings.max_concurrent_streams)
        self.preload.start()

    async def validated(self, request: Request, parse: Callable[[bytes, Settings], _Parsed]) -> _Parsed:
        """Every route's input: origin, body within its limits, the model it names (``model_routing.py``), then
        validation once the models are loaded, with that model's settings (and the caps of the request's key,
        where it has its own)."""
        check_origin(request, self.settings)
        raw = await read_body(request, self.settings)
        await self.preload.ready()
        settings = route(request.scope, self.settings, raw)
        return parse(raw, settings if self.accounting is None else self.accounting.settings_for(request.scope,
                                                                                                 settings))

    async def open_upstream(self, request: Request, upstream_request: UpstreamRequest) -> OpenedStream:
        """Every streaming route's way to the endpoint: admitted under its key's limits, counted, within the
        deadline, first token awaited."""
        if self._limiter is None:
            raise RuntimeError("the gateway serves requests once the app's lifespan has started it")
        stats = request_stats(request.scope)
        stats.kind, stats.input_chars = upstream_request.kind, upstream_request.input_chars
        stats.max_new_tokens, stats.prompt = upstream_request.max_new_tokens, upstream_request.prompt
        deadline = _deadline(request, stats.started, self.settings)
        if self.accounting is not None:
            await self.accounting.admit(request.scope, upstream_request.input_chars, upstream_request.max_new_tokens)
        settings = routed(request.scope, self.settings)
        wake_up = self._wake_up[settings.model_id]

        def open_now() -> UpstreamStream:
            return open_stream(self.preload.client(), settings, upstream_request, stats.request_id, wake_up)

        reader, first = await _open_until_first_token(request, open_now, self.settings, deadline, self._limiter,
                                                      stats)
        if first is not None:
            stats.first_token_at = time.monotonic()
        return OpenedStream(reader, first, deadline, upstream_request)


async def _open_until_first_token(
    request: Request, open_now: Callable[[], UpstreamStream], settings: Settings, deadline: float,
    limiter: anyio.CapacityLimiter, stats: RequestStats,
) -> tuple[StreamReader, str | None]:
    """Take a stream slot, open the stream and wait for its first item, so failures before any byte get
    an HTTP status. A caller who leaves while waiting for the slot stops waiting at once, and neither they
    nor one whose time ran out reach the endpoint; one who leaves while the endpoint prepares the first
    token stops it at once."""
    reserving = StreamReader.reserve(open_now, limiter, settings.queue_wait_seconds)
    reader = await unless_caller_leaves(request.receive, stats, reserving)  # None: the caller left
    if reader is None or await request.is_disconnected() or time.monotonic() >= deadline:
        if reader is not None:
            reader.release_unstarted()
        raise ApiError(499, "client_gone", "the caller left, or its time ran out, before a stream slot was free")
    reader.start()
    first = await unless_caller_leaves(request.receive, stats, reader.next(deadline))
    if stats.client_disconnected:
        reader.cancel()
        raise ApiError(499, "client_gone", "the caller left before the first token")
    if isinstance(first, str):
        return reader, first
    if isinstance(first, StreamEnd):  # an empty answer: the response is just the done event
        return reader, None
    reader.cancel()
    if isinstance(first, ApiError):
        raise first
    if isinstance(first, StreamError):
        raise first_event_error(first)
    raise ApiError(504, "upstream_timeout", "the endpoint sent nothing within this deployment's time budget")


def _deadline(request: Request, started: float, settings: Settings) -> float:
    """Monotonic time by which the stream must end: the budget, or Lambda's deadline if sooner."""
    deadline = started + settings.time_budget_seconds
    lambda_deadline_at = lambda_deadline(request.scope)
    if lambda_deadline_at is not None:
        remaining = lambda_deadline_at - time.time() - DEADLINE_MARGIN_SECONDS
        deadline = min(deadline, time.monotonic() + max(remaining, 0))
    return deadline
