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

from .answer_text import AnswerText
from .tokens import StreamError


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    #: The arguments as a JSON object's text, as OpenAI's API sends them.
    arguments: str


@dataclass(frozen=True)
class Settled:
    #: What the caller is shown at the end (for a shape that holds its text back: all of it).
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    failure: StreamError | None = None


class AnswerShape(Protocol):
    #: Whether the text is held back until the answer is settled (a tool call is only known once whole).
    holds_text: bool

    def settle(self, text: str, finish_reason: str | None) -> Settled: ...


class ShapedAnswer(AnswerText):
    """:class:`AnswerText` whose whole text is settled by its shape when the answer ends."""

    def __init__(self, shape: AnswerShape, stops: Sequence[str] = (), newline_symbol: str = "\n",
                 stop_finish_reasons: frozenset[str] = frozenset(), scored: bool = False) -> None:
        super().__init__(stops, newline_symbol, stop_finish_reasons, scored)
        self._shape = shape
        self._seen: list[str] = []
        self._settled: Settled | None = None

    def feed(self, text: str) -> str:
        shown = super().feed(text)
        self._seen.append(shown)
        return "" if self._shape.holds_text else shown

    def finish(self, finish_reason: str | None) -> str:
        if self._settled is not None:  # settled already: a failure after the end has nothing more to show
            return ""
        rest = super().finish(finish_reason)
        self._seen.append(rest)
        self._settled = self._shape.settle("".join(self._seen), finish_reason)
        self.failure, self.tool_calls = self._settled.failure, self._settled.tool_calls
        return self._settled.text if self._shape.holds_text else rest
