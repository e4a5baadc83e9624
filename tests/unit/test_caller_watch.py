"""``unless_caller_leaves``: what a route awaits, given up the moment its caller goes away."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from llm_stream.errors import ApiError
from llm_stream.responses import unless_caller_leaves
from llm_stream.stats import RequestStats


def run(awaitable: Callable[[], Awaitable[str]], leave_after: float | None = None) -> tuple[Any, RequestStats]:
    """Await ``awaitable`` for a caller who hangs up after ``leave_after`` seconds (never: ``None``)."""
    stats = RequestStats(request_id="r")

    async def main() -> Any:
        gone = anyio.Event()

        async def receive() -> dict[str, Any]:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def leave(delay: float) -> None:
            await anyio.sleep(delay)
            gone.set()

        outcome: list[Any] = []
        async with anyio.create_task_group() as tasks:
            if leave_after is not None:
                tasks.start_soon(leave, leave_after)
            try:
                outcome.append(await unless_caller_leaves(receive, stats, awaitable()))
            except ApiError as exc:  # kept out of this test's own task group
                outcome.append(exc)
            tasks.cancel_scope.cancel()
        return outcome[0]

    return anyio.run(main), stats


async def slow_answer() -> str:
    await anyio.sleep(10)
    return "too late"


async def quick_answer() -> str:
    await anyio.sleep(0)
    return "answer"


async def refusal() -> str:
    await anyio.sleep(0)
    raise ApiError(503, "too_many_streams", "every stream slot is busy")


def test_the_answer_when_the_caller_stays() -> None:
    result, stats = run(quick_answer)
    assert result == "answer"
    assert not stats.client_disconnected


def test_nothing_the_moment_the_caller_leaves() -> None:
    started = time.monotonic()
    result, stats = run(slow_answer, leave_after=0.05)
    assert result is None
    assert stats.client_disconnected
    assert time.monotonic() - started < 5  # not the 10 s the answer would have taken


def test_what_it_raises_is_raised_as_itself_not_as_a_group() -> None:
    result, _ = run(refusal)
    assert isinstance(result, ApiError)
    assert result.error_type == "too_many_streams"
