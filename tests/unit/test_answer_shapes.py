"""Settling a shaped answer: off the event loop, within its time, and whatever the check does, a clear end."""

from __future__ import annotations

import asyncio
import json
import time

from llm_stream.answer_shapes import Settled, ShapedAnswer, finish_answer
from llm_stream.schema_rules import first_problem


class Breaking:
    holds_text = False

    def settle(self, text: str, finish_reason: str | None) -> Settled:
        raise KeyError("a bug in a shape")


class Slow:
    holds_text = True

    def settle(self, text: str, finish_reason: str | None) -> Settled:
        time.sleep(3)
        return Settled(text)


def test_a_check_that_fails_ends_the_answer_with_an_internal_error_not_an_exception() -> None:
    answer = ShapedAnswer(Breaking())
    assert answer.feed('{"a": 1}') == '{"a": 1}'
    assert asyncio.run(finish_answer(answer, "eos_token")) == ""
    assert answer.failure is not None
    assert (answer.failure.error_type, answer.failure.message) == ("internal_error",
                                                                   "checking the answer failed: KeyError")


def test_a_check_past_its_time_ends_the_answer_and_the_event_loop_was_free_meanwhile() -> None:
    answer = ShapedAnswer(Slow())
    answer.feed("held")

    async def settle_while_ticking() -> tuple[str, int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.05)
                ticks += 1

        ticker = asyncio.create_task(tick())
        rest = await finish_answer(answer, "eos_token")
        ticker.cancel()
        return rest, ticks

    started = time.monotonic()
    rest, ticks = asyncio.run(settle_while_ticking())
    assert time.monotonic() - started < 2.9  # SETTLE_SECONDS (2 s), not the check's 3 s
    assert ticks >= 20  # the loop kept running while the worker thread checked
    assert rest == ""  # nothing held back is shown
    assert answer.failure is not None
    assert "within 2 s" in answer.failure.message


def test_a_pattern_is_left_to_the_grammar_so_no_backtracking_runs_on_an_answer() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "string", "pattern": "^(a+)+$"},
                                               "n": {"type": "integer"}}}
    started = time.monotonic()
    problem = first_problem(schema, json.loads('{"x": "' + "a" * 60 + '!", "n": "private words"}'))
    assert time.monotonic() - started < 1  # 2**60 steps if the pattern were matched
    assert problem == '`type` "integer" fails (schema at properties.n)'  # the schema's words, not the answer's
