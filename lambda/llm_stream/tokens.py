"""Turn a SageMaker response stream into the text of each generated token.

``invoke_endpoint_with_response_stream`` returns ``PayloadPart`` events whose
byte boundaries are arbitrary: half an event, several events, or a split UTF-8
character. :class:`TokenIterator` reassembles lines, detects the container's
format on each line and yields token texts in order:

* TGI server-sent events: ``data:{"token": {...}, "generated_text": ..., "details": ...}``
  (``data:`` with or without one space; ``:`` comment / keep-alive lines and
  blank lines skipped; CRLF tolerated). Each ``data:`` line is one event.
* TGI Messages API chunks: ``data:{"choices": [{"delta": {"content": ...}}]}``
  ending with ``data:[DONE]``.
* DJL/LMI JSON lines (no ``data:``): ``{"token": {...}}`` per line, the last one
  with ``generated_text``; the last line may lack a trailing newline. A failure
  before generation is one ``{"code": 424, "error": "..."}`` line (the message may
  be empty); one during generation is a last line whose ``finish_reason`` is
  ``error`` (DJL Serving 0.28 ``rolling_batch.stop_on_any_exception``). vLLM ends a
  prompt longer than the model's window at once with ``finish_reason: "length"``
  and a placeholder token (id -1, no text, no log_prob; its scheduler marks the
  request ignored): that is the caller's request, so it raises a ``validation`` error.
* Legacy LMI ``{"outputs": ["..."]}`` lines (no final event: the end of the
  stream is the end of the answer).

The module is pure: it reads an iterable, never the network. It imports
botocore and urllib3 only to recognise the exceptions a live stream raises, and only
when one is raised (not on the function's way to ready: ``preload.py``).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import Any, Final, Literal

StreamFormat = Literal["tgi", "messages", "lmi", "legacy"]

#: Texts of end-of-sequence tokens that some containers do not flag as special.
#: They are dropped only on the final event, where TGI puts the EOS token.
UNFLAGGED_EOS_TEXTS: Final = frozenset({"<|endoftext|>", "</s>", "<|im_end|>", "<|eot_id|>", "<|end|>"})

_NO_MESSAGE: Final = "the model container reported an error"
#: The in-band error types TGI's router sends (``ErrorResponse.error_type``) and LMI's; the container's
#: word becomes the caller's ``type`` and a metric dimension, so any other becomes ``generation``.
IN_BAND_ERROR_TYPES: Final = frozenset({"generation", "validation", "overloaded", "incomplete_generation",
                                         "template_error", "tool_error"})
#: The exceptions SageMaker's event stream carries (InvokeEndpointWithResponseStream's API reference).
STREAM_EXCEPTIONS: Final = frozenset({"ModelStreamError", "InternalStreamFailure"})
_MESSAGES_STATUS_TO_TYPE: Final = {422: "validation", 424: "generation", 429: "overloaded"}
_MALFORMED_QUOTE_CHARS: Final = 80
# json.loads adds encoding detection and a whitespace regex per call; raw_decode skips both, and
# parsing is most of the iterator's time.
_decode_json: Final = json.JSONDecoder().raw_decode
_SSE_FIELDS_IGNORED: Final = (b"event:", b"id:", b"retry:")


class StreamError(Exception):
    """The stream failed; ``error_type`` says how.

    ``error_type`` is the container's own type for in-band errors (TGI's
    ``generation``, ``overloaded``, ``validation``, ...), the event-stream
    exception code (``ModelStreamError``, ``InternalStreamFailure``),
    ``incomplete`` when the stream ended before the format's final event,
    ``malformed`` for a line that is not valid JSON or UTF-8,
    ``connection_lost`` / ``read_timeout`` for a broken or silent connection.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    def __str__(self) -> str:
        return f"{self.error_type}: {self.message}"


class ScoredText(str):
    """A token's text with the container's log probabilities (read only when a caller asked for them): its own,
    and the most likely alternatives as ``(text, logprob)`` (TGI's ``top_tokens``)."""

    logprob: float | None
    top: tuple[tuple[str, float], ...]

    def __new__(cls, text: str, logprob: float | None, top: tuple[tuple[str, float], ...] = ()) -> ScoredText:
        scored = super().__new__(cls, text)
        scored.logprob, scored.top = logprob, top
        return scored


class TokenIterator(Iterator[str]):
    """Iterate the token texts of a SageMaker response stream.

    ``stream`` is ``response["Body"]`` (a botocore ``EventStream``) or any
    iterable of ``{"PayloadPart": {"Bytes": b"..."}}`` mappings; other event
    kinds are ignored. Special tokens and empty texts are skipped.

    After normal exhaustion these attributes hold what the container sent
    (``None`` when it sent nothing):

    * ``finish_reason``: TGI ``length|eos_token|stop_sequence``, Messages
      ``stop|length``, LMI's own value.
    * ``generated_tokens``: the container's count of generated tokens (TGI and
      LMI ``details.generated_tokens``, Messages ``usage.completion_tokens``).
    * ``input_tokens``: the container's count of prompt tokens (TGI ``details.input_length``,
      Messages ``usage.prompt_tokens``).
    * ``format``: the detected :data:`StreamFormat`.

    ``tokens_yielded`` counts the texts yielded so far.

    Failures raise :class:`StreamError` after every token that preceded them.
    Memory is bounded by the longest event plus one part; time is linear in
    the number of bytes however they are split.
    """

    def __init__(self, stream: Iterable[Mapping[str, Any]], scored: bool = False) -> None:
        self._stream = stream
        #: Whether each token comes with its log probabilities (:class:`ScoredText`; TGI and LMI events only).
        self._scored = scored
        self._complete = False
        self.format: StreamFormat | None = None
        self.finish_reason: str | None = None
        self.generated_tokens: int | None = None
        self.input_tokens: int | None = None
        self.tokens_yielded = 0
        self._texts = self._generate(iter(stream))

    def __iter__(self) -> TokenIterator:
        return self

    def __next__(self) -> str:
        return next(self._texts)

    def close(self) -> None:
        """Close the underlying stream (stops the download when it is botocore's); iteration ends."""
        self._texts.close()
        close = getattr(self._stream, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> TokenIterator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading ---------------------------------------------------------

    def _generate(self, parts: Iterator[Mapping[str, Any]]) -> Generator[str, None, None]:
        # A generator keeps the hot path cheap, and raising from it ends iteration
        # for good, after every token that preceded the failure was yielded.
        partial: list[bytes] = []  # pieces of the line not yet ended by a newline
        while True:
            try:
                event = next(parts)
            except StopIteration:
                break
            except Exception as exc:
                raised = _upstream_failure(exc)
                if raised is None:
                    raise
                raise raised from exc
            payload = event.get("PayloadPart")
            chunk = payload.get("Bytes") if payload else None
            if not chunk:
                continue
            if b"\n" not in chunk:
                partial.append(chunk)
                continue
            if partial:
                partial.append(chunk)
                chunk = b"".join(partial)
                partial = []
            lines = chunk.split(b"\n")
            tail = lines.pop()
            if tail:
                partial.append(tail)
            for line in lines:
                if not line:  # the blank line that ends each SSE event
                    continue
                for text in self._texts_of_line(line):
                    self.tokens_yielded += 1
                    yield text
        if partial:
            for text in self._texts_of_line(b"".join(partial)):
                self.tokens_yielded += 1
                yield text
        if self.format is None:
            raise StreamError("incomplete", "the stream ended before any event arrived")
        if not self._complete and self.format != "legacy":
            raise StreamError("incomplete", f"the {self.format} stream ended before its final event")

    # -- parsing ---------------------------------------------------------

    def _texts_of_line(self, line: bytes) -> tuple[str, ...] | list[str]:
        if line.startswith(b"data:"):  # the common case first
            data = line[6:] if line.startswith(b"data: ") else line[5:]
            if data.startswith(b"[") and data.strip() == b"[DONE]":
                self._set_format("messages")
                self._complete = True
                return ()
            return self._texts_of_event(_parse_json(data), sse=True)
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line or line.startswith((b":", *_SSE_FIELDS_IGNORED)):
            return ()
        return self._texts_of_event(_parse_json(line), sse=False)

    def _texts_of_event(self, event: object, *, sse: bool) -> tuple[str, ...] | list[str]:
        if not isinstance(event, dict):
            raise StreamError("malformed", f"expected a JSON object, got: {_quote(json.dumps(event))}")
        try:
            token = event.get("token")
            if token is not None:
                self._set_format("tgi" if sse else "lmi")
                return self._texts_of_token_event(event, token)
            if "error" in event:
                raise _in_band_error(event)
            if "choices" in event:
                self._set_format("messages")
                return self._texts_of_chat_chunk(event)
            if "outputs" in event:
                self._set_format("legacy")
                return [text for text in event["outputs"] if isinstance(text, str) and text]
            return ()
        except (AttributeError, TypeError):  # a field of an unexpected JSON type
            raise StreamError("malformed", f"unexpected event shape: {_quote(json.dumps(event))}") from None

    def _set_format(self, detected: StreamFormat) -> None:
        if self.format is None:
            self.format = detected

    def _texts_of_token_event(self, event: dict[str, Any], token: dict[str, Any]) -> tuple[str, ...]:
        texts = self._token_texts(event, token)
        if self._scored and texts:
            return (_scored(texts[0], event, token),)
        return texts

    def _token_texts(self, event: dict[str, Any], token: dict[str, Any]) -> tuple[str, ...]:
        text = token.get("text")
        if event.get("generated_text") is None:
            if text and not (token.get("special") or token.get("special_token")) and isinstance(text, str):
                return (text,)
            return ()
        details = event.get("details") or {}
        finish_reason, generated_tokens = details.get("finish_reason"), details.get("generated_tokens")
        if finish_reason == "error":
            raise StreamError("generation", str(details.get("error") or _NO_MESSAGE))
        if finish_reason == "length" and self.format == "lmi" and not self.tokens_yielded and _ignored(token):
            raise StreamError("validation", "the prompt does not fit the model's context window (input and answer "
                              "together); shorten it")
        self._complete = True
        if isinstance(finish_reason, str):
            self.finish_reason = finish_reason
        if isinstance(generated_tokens, int):
            self.generated_tokens = generated_tokens
        if isinstance(details.get("input_length"), int):
            self.input_tokens = details["input_length"]
        special = token.get("special") or token.get("special_token") or text in UNFLAGGED_EOS_TEXTS
        return (text,) if text and isinstance(text, str) and not special else ()

    def _texts_of_chat_chunk(self, chunk: dict[str, Any]) -> list[str]:
        texts = []
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str) and content:
                texts.append(content)
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
        usage = chunk.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            self.generated_tokens = usage["completion_tokens"]
        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
            self.input_tokens = usage["prompt_tokens"]
        return texts


def _scored(text: str, event: dict[str, Any], token: dict[str, Any]) -> ScoredText:
    """The token's text with its log probability (TGI ``logprob``, LMI ``log_prob``) and TGI's ``top_tokens``."""
    logprob = token.get("logprob", token.get("log_prob"))
    top = tuple((alternative["text"], float(alternative["logprob"])) for alternative in event.get("top_tokens") or ()
                if isinstance(alternative, dict) and isinstance(alternative.get("text"), str)
                and isinstance(alternative.get("logprob"), int | float))
    return ScoredText(text, float(logprob) if isinstance(logprob, int | float) else None, top)


def _ignored(token: dict[str, Any]) -> bool:
    """The token LMI sends for a request vLLM ignored: a placeholder, not a generated token (``Token(-1, "")``,
    ``lmi_dist_rolling_batch.inference``), unlike a real token whose text is empty (a partial character)."""
    return token.get("id") == -1 and not token.get("text") and token.get("log_prob") is None


def _parse_json(data: bytes) -> object:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise StreamError("malformed", f"line is not valid UTF-8: {_quote(data)}") from None
    try:
        value, end = _decode_json(text)
    except ValueError:
        raise StreamError("malformed", f"line is not valid JSON: {_quote(text)}") from None
    if end != len(text) and not text[end:].isspace():
        raise StreamError("malformed", f"line is not valid JSON: {_quote(text)}")
    return value


def _quote(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    shown = text[:_MALFORMED_QUOTE_CHARS]
    suffix = "..." if len(text) > _MALFORMED_QUOTE_CHARS else ""
    return f"{shown!r}{suffix}"


def _in_band_error(event: dict[str, Any]) -> StreamError:
    error = event["error"]
    if isinstance(error, dict):  # Messages API: {"error": {"message": ..., "http_status_code": ...}}
        status = error.get("http_status_code")
        error_type = error.get("type") or (_MESSAGES_STATUS_TO_TYPE.get(status, "generation")
                                           if isinstance(status, int) else "generation")
        return _known_type(error_type, str(error.get("message") or error))
    return _known_type(event.get("error_type") or "generation", str(error) or _NO_MESSAGE)


def _known_type(error_type: object, message: str) -> StreamError:
    """The container's error with a type of :data:`IN_BAND_ERROR_TYPES`; another one is kept in the message."""
    if isinstance(error_type, str) and error_type in IN_BAND_ERROR_TYPES:
        return StreamError(error_type, message)
    return StreamError("generation", f"{message} (error_type {_quote(str(error_type))})")


def _upstream_failure(exc: Exception) -> StreamError | None:
    """Map what botocore/urllib3 raise while a stream is read; ``None`` for anything else."""
    from botocore.exceptions import EventStreamError
    from botocore.exceptions import ReadTimeoutError as BotocoreReadTimeoutError
    from urllib3.exceptions import ProtocolError, ReadTimeoutError

    # botocore's EventStream reads the raw urllib3 response, so urllib3's own errors surface.
    if isinstance(exc, EventStreamError):
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code") or ""), str(error.get("Message") or exc)
        if code in STREAM_EXCEPTIONS:
            return StreamError(code, message)
        return StreamError("stream_error", f"{message} (code {_quote(code)})")
    if isinstance(exc, ReadTimeoutError | BotocoreReadTimeoutError):
        return StreamError("read_timeout", f"the endpoint stopped sending: {exc}")
    if isinstance(exc, ProtocolError | ConnectionError):
        return StreamError("connection_lost", f"the connection to the endpoint broke: {exc}")
    return None
