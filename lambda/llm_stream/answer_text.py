"""What a reader sees of the model's text, as it streams.

TGI includes the stop sequence that ended an answer in the answer; OpenAI's contract (and any chat,
whose format adds a stop such as ``"\\nUser:"``) wants it left out. Text that could be the start of a
stop sequence is held back until the next token shows whether it is one; at the end, a stop that
ended the answer is dropped. Then a chat format's newline symbol (rinna's ``<NL>``) becomes a newline,
also when tokens split it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .chat_formats import NewlineRestorer


class AnswerText:
    def __init__(self, stops: Sequence[str] = (), newline_symbol: str = "\n") -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._held = ""
        self._newlines = NewlineRestorer(newline_symbol)

    def feed(self, text: str) -> str:
        """What of ``text`` (and what was held back) can be shown now."""
        if not self._stops:
            return self._newlines.feed(text)
        pending = self._held + text
        keep = _longest_stop_prefix_at_end(pending, self._stops)
        self._held = pending[len(pending) - keep:] if keep else ""
        return self._newlines.feed(pending[: len(pending) - keep])

    def finish(self, stopped_by_sequence: bool) -> str:
        """The rest, without the stop sequence when one ended the answer."""
        held, self._held = self._held, ""
        if stopped_by_sequence:
            for stop in self._stops:
                if held.endswith(stop):
                    held = held[: -len(stop)]
                    break
        return self._newlines.feed(held) + self._newlines.flush()


def _longest_stop_prefix_at_end(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that some stop sequence starts with (a whole stop included)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop), len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest
