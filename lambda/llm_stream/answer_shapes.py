"""Answers with a required shape: JSON for a schema (``output_formats.py``), a tool call (``tool_calls.py``).

The container constrains what it generates (TGI's ``grammar``), but a constraint it could not compile is
dropped with only a line in its own log ("grammar won't be enforced"), and ``max_tokens`` may cut an answer
before its JSON closes. So every shaped answer is settled once it ends: what the model wrote is read as the
shape requires, and an answer that does not fit ends the request with an error (a status before the first
byte, a terminal error event after it), never as a success. A shape that is read whole (a tool call) holds
the text back from the caller until it is settled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio

from .answer_text import AnswerText
from .tokens import StreamError

#: The longest a finished answer's check may take (a schema's `pattern` may backtrack on an answer the
#: container did not constrain); past it the answer ends with an error.
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class ToolCall:
    """A function call an answer makes (one per answer, as TGI makes them)."""

    id: str
    name: str
    #: The arguments as a JSON object's text, as OpenAI's API sends them.
    arguments: str


@dataclass(frozen=True)
class Settled:
    """What a shape made of a finished answer."""

    #: What the caller is shown at the end (for a shape that holds its text back: all of it).
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    failure: StreamError | None = None


class AnswerShape(Protocol):
    #: Whether the text is held back until the answer is settled (a tool call is only known once whole).
    holds_text: bool

    def settle(self, text: str, finish_reason: str | None) -> Settled: ...


class ShapedAnswer(AnswerText):
    """:class:`AnswerText` whose whole text is settled by its shape when the answer ends (:func:`finish_answer`)."""

    def __init__(self, shape: AnswerShape, stops: Sequence[str] = (), newline_symbol: str = "\n",
                 stop_finish_reasons: frozenset[str] = frozenset(), scored: bool = False) -> None:
        super().__init__(stops, newline_symbol, stop_finish_reasons, scored)
        self._shape = shape
        self._seen: list[str] = []
        self._settled = False

    def feed(self, text: str) -> str:
        shown = super().feed(text)
        self._seen.append(shown)
        return "" if self._shape.holds_text else shown

    def finish(self, finish_reason: str | None) -> str:
        """The rest of an answer that failed on its way: nothing is settled, nothing held back is shown."""
        self._settled = True
        rest = super().finish(finish_reason)
        return "" if self._shape.holds_text else rest

    async def settle(self, finish_reason: str | None) -> str:
        """The rest of a complete answer, once its shape has settled it (in a worker thread: a schema's check
        may take long, and the event loop serves every other stream meanwhile)."""
        if self._settled:
            return ""
        self._settled = True
        rest = super().finish(finish_reason)
        self._seen.append(rest)
        settled = Settled(failure=StreamError("invalid_json_output", "the answer could not be checked against its "
                                              f"format within {SETTLE_SECONDS:g} s"))
        with anyio.move_on_after(SETTLE_SECONDS):
            settled = await anyio.to_thread.run_sync(self._settle, "".join(self._seen), finish_reason,
                                                     abandon_on_cancel=True)
        self.failure, self.tool_calls = settled.failure, settled.tool_calls
        return settled.text if self._shape.holds_text else rest

    def _settle(self, text: str, finish_reason: str | None) -> Settled:
        try:
            return self._shape.settle(text, finish_reason)
        except Exception as exc:  # a bug must still end the request with a clear error, and a short log line
            return Settled(failure=StreamError("internal_error", f"checking the answer failed: {type(exc).__name__}"))


async def finish_answer(answer: AnswerText, finish_reason: str | None) -> str:
    """The rest of a complete answer: :meth:`AnswerText.finish`, or a shaped answer settled."""
    if isinstance(answer, ShapedAnswer):
        return await answer.settle(finish_reason)
    return answer.finish(finish_reason)
