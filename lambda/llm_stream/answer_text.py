"""What a reader sees of the model's text, as it streams.

TGI includes the stop sequence that ended an answer in the answer (LMI's lmi-dist may too: its token
texts are the detokenizer's); OpenAI's contract (and any chat, whose format adds a stop such as
``"\\nUser:"``) wants it left out. Text that could be the start of a stop sequence is held back until
the next token shows whether it is one; at the end, when the finish reason may mean a stop (the
container family says which reasons do), a stop the answer ends with is dropped. Then a chat format's
newline symbol (rinna's ``<NL>``) becomes a newline, also when tokens split it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .chat_formats import NewlineRestorer

if TYPE_CHECKING:
    from .answer_shapes import ToolCall
    from .tokens import StreamError


class AnswerText:
    #: Set by :meth:`finish` where the answer has a required shape (``answer_shapes.py``): why it does not
    #: fit, or the tool calls it makes.
    failure: StreamError | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    def __init__(self, stops: Sequence[str] = (), newline_symbol: str = "\n",
                 stop_finish_reasons: frozenset[str] = frozenset(), scored: bool = False) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._stop_finish_reasons = stop_finish_reasons
        self._held = ""
        self._newlines = NewlineRestorer(newline_symbol)
        #: With ``scored`` (the caller asked for log probabilities), the tokens fed and not yet taken.
        self._scores: list[str] | None = [] if scored else None

    def take_scores(self) -> list[str]:
        """The tokens fed since the last call (each a ``tokens.ScoredText`` where the container scored it): what
        the text shown since then is made of. Empty unless the answer is ``scored``."""
        taken = self._scores or []
        if self._scores is not None:
            self._scores = []
        return taken

    def feed(self, text: str) -> str:
        """What of ``text`` (and what was held back) can be shown now."""
        if self._scores is not None:
            self._scores.append(text)
        if not self._stops:
            return self._newlines.feed(text)
        pending = self._held + text
        keep = _longest_stop_prefix_at_end(pending, self._stops)
        self._held = pending[len(pending) - keep:] if keep else ""
        return self._newlines.feed(pending[: len(pending) - keep])

    def finish(self, finish_reason: str | None) -> str:
        """The rest, without the stop sequence when one ended the answer (``finish_reason`` may say so)."""
        held, self._held = self._held, ""
        if finish_reason in self._stop_finish_reasons:
            for stop in self._stops:
                if held.endswith(stop):
                    held = held[: -len(stop)]
                    self._drop_scores(len(stop))
                    break
        return self._newlines.feed(held) + self._newlines.flush()


    def _drop_scores(self, characters: int) -> None:
        """Forget the last tokens, those that spelled the stop sequence left out of the answer."""
        dropped = 0
        while self._scores and dropped < characters:
            dropped += len(self._scores.pop())


def _longest_stop_prefix_at_end(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that some stop sequence starts with (a whole stop included)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop), len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest
