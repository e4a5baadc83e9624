"""The token iterator's contract, on hand-written streams in every format."""

from __future__ import annotations

import contextlib
import json
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_stream.tokens import StreamError, TokenIterator
from tests.helpers.streams import (
    TGI_EXPECTED,
    TGI_TEXTS,
    as_parts,
    chat_chunk,
    collect_until_error,
    fixed_size_parts,
    lmi_stream,
    messages_stream,
    sse_line,
    tgi_final,
    tgi_stream,
    tgi_token,
)


def tokens(data: bytes, cuts: Sequence[int] = ()) -> list[str]:
    return list(TokenIterator(as_parts(data, cuts)))


# -- formats -------------------------------------------------------------------


def test_tgi_sse_yields_texts_and_exposes_details() -> None:
    iterator = TokenIterator(as_parts(tgi_stream()))
    assert list(iterator) == TGI_EXPECTED
    assert iterator.format == "tgi"
    assert iterator.finish_reason == "eos_token"
    assert iterator.generated_tokens == len(TGI_TEXTS) + 1
    assert iterator.tokens_yielded == len(TGI_EXPECTED)


def test_seed_loop_prints_clean_text(capsys: pytest.CaptureFixture[str]) -> None:
    for token in TokenIterator(fixed_size_parts(tgi_stream(), 7)):
        print(token, end="")
    assert capsys.readouterr().out == "建立网站可以是一个 simple process🚀!"


def test_data_prefix_with_one_space_crlf_comments_and_blank_lines() -> None:
    body = tgi_stream(space=True).replace(b"\n", b"\r\n")
    body = b":\r\n\r\n" + body[:40] + b"" + body[40:]
    keep_alive_inside = body.replace(b"\r\n\r\ndata: ", b"\r\n\r\n:keep-alive\r\n\r\ndata: ", 2)
    assert tokens(keep_alive_inside, range(0, len(keep_alive_inside), 5)) == TGI_EXPECTED


def test_data_space_strips_only_one_space() -> None:
    body = sse_line(tgi_token(1, "  two spaces"), space=True) + sse_line(tgi_final(2, "</s>", "x"), space=True)
    assert tokens(body) == ["  two spaces"]


def test_special_tokens_are_skipped_even_unflagged_on_the_final_event() -> None:
    body = (
        sse_line(tgi_token(1, "Hi"))
        + sse_line(tgi_token(2, "<|im_start|>", special=True))
        + sse_line(tgi_final(3, "<|endoftext|>", "Hi", special=False))
    )
    assert tokens(body) == ["Hi"]


def test_eos_text_inside_the_answer_is_kept_when_not_final() -> None:
    body = sse_line(tgi_token(1, "</s>")) + sse_line(tgi_final(2, "</s>", "</s>", special=True))
    assert tokens(body) == ["</s>"]


def test_final_event_without_details_leaves_finish_reason_unset() -> None:
    iterator = TokenIterator(as_parts(tgi_stream(details=False)))
    assert list(iterator) == TGI_EXPECTED
    assert iterator.finish_reason is None
    assert iterator.generated_tokens is None


def test_messages_api_chunks() -> None:
    body = sse_line(chat_chunk(None)) + messages_stream()
    iterator = TokenIterator(as_parts(body, range(3, len(body), 11)))
    assert list(iterator) == TGI_EXPECTED
    assert iterator.format == "messages"
    assert iterator.finish_reason == "stop"


def test_messages_usage_gives_generated_tokens() -> None:
    usage = {"object": "chat.completion.chunk", "choices": [], "usage": {"completion_tokens": 9, "prompt_tokens": 3}}
    body = messages_stream().replace(b"data:[DONE]", sse_line(usage) + b"data:[DONE]")
    iterator = TokenIterator(as_parts(body))
    list(iterator)
    assert iterator.generated_tokens == 9


@pytest.mark.parametrize("trailing_newline", [False, True])
def test_lmi_json_lines(trailing_newline: bool) -> None:
    iterator = TokenIterator(as_parts(lmi_stream(trailing_newline=trailing_newline), range(1, 400, 13)))
    assert list(iterator) == TGI_EXPECTED
    assert iterator.format == "lmi"
    assert iterator.finish_reason == "eos_token"
    assert iterator.generated_tokens == len(TGI_TEXTS) + 1


def test_legacy_outputs_lines_end_with_the_stream() -> None:
    body = b'{"outputs": ["Hello"]}\n{"outputs": [", world", ""]}\n{"outputs": ["!"]}'
    iterator = TokenIterator(as_parts(body, [5, 30]))
    assert list(iterator) == ["Hello", ", world", "!"]
    assert iterator.format == "legacy"


def test_other_event_kinds_and_empty_parts_are_ignored() -> None:
    events: list[dict[str, Any]] = [{"PayloadPart": {"Bytes": b""}}, {"SomethingNew": {}},
                                    *as_parts(tgi_stream(), [10, 20])]
    assert list(TokenIterator(events)) == TGI_EXPECTED


# -- byte boundaries -----------------------------------------------------------


@pytest.mark.parametrize("make_stream", [tgi_stream, messages_stream, lmi_stream], ids=["tgi", "messages", "lmi"])
def test_every_two_way_split_gives_the_same_tokens(make_stream) -> None:
    body = make_stream()
    assert b"\xf0\x9f\x9a\x80" in body  # the emoji, so some splits fall inside a 4-byte character
    for cut in range(1, len(body)):
        assert tokens(body, [cut]) == TGI_EXPECTED, f"split at byte {cut}"


def test_one_byte_parts() -> None:
    assert list(TokenIterator(fixed_size_parts(tgi_stream(), 1))) == TGI_EXPECTED


def test_whole_stream_in_one_part() -> None:
    assert tokens(tgi_stream() * 1) == TGI_EXPECTED


# Parsing is cheap (about 1 ms a case): these run a multiple of the profile's count (tests/conftest.py).
@settings(max_examples=8 * settings().max_examples)
@given(data=st.data(), fmt=st.sampled_from(["tgi", "messages", "lmi"]))
def test_random_chunkings_give_the_same_tokens(data: st.DataObject, fmt: str) -> None:
    renderers: dict[str, Callable[[], bytes]] = {"tgi": tgi_stream, "messages": messages_stream, "lmi": lmi_stream}
    body = renderers[fmt]()
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=len(body) - 1), max_size=40))
    assert tokens(body, cuts) == TGI_EXPECTED


@given(texts=st.lists(st.text(min_size=1, max_size=8).filter(lambda t: t not in {"</s>", "<|endoftext|>"}),
                      max_size=20),
       cuts=st.lists(st.integers(min_value=1, max_value=2000), max_size=30))
def test_arbitrary_token_texts_survive_any_chunking(texts: list[str], cuts: list[int]) -> None:
    assert tokens(tgi_stream(texts), cuts) == texts


# -- errors --------------------------------------------------------------------


def test_tgi_in_band_error_after_tokens() -> None:
    body = sse_line(tgi_token(1, "A")) + sse_line({"error": "CUDA out of memory", "error_type": "generation"})
    seen, error = collect_until_error(TokenIterator(as_parts(body, [9])))
    assert seen == ["A"]
    assert error.error_type == "generation"
    assert "CUDA out of memory" in str(error)


def test_tgi_validation_error_keeps_its_type() -> None:
    body = sse_line({"error": "Input validation error: `temperature` must be strictly positive",
                     "error_type": "validation"})
    seen, error = collect_until_error(TokenIterator(as_parts(body)))
    assert seen == []
    assert error.error_type == "validation"
    assert "temperature" in error.message


def test_messages_error_object() -> None:
    body = sse_line(chat_chunk("A")) + sse_line({"error": {"message": "Overloaded", "http_status_code": 429}})
    seen, error = collect_until_error(TokenIterator(as_parts(body)))
    assert seen == ["A"]
    assert error.error_type == "overloaded"
    assert error.message == "Overloaded"


def test_lmi_finish_reason_error() -> None:
    failing = {"token": {"id": 3, "text": "", "log_prob": 0.0}, "generated_text": "A",
               "details": {"finish_reason": "error", "generated_tokens": 1}}
    body = (json.dumps({"token": {"id": 1, "text": "A", "log_prob": -1}}) + "\n" + json.dumps(failing)).encode()
    seen, error = collect_until_error(TokenIterator(as_parts(body)))
    assert seen == ["A"]
    assert error.error_type == "generation"


def test_malformed_line_quotes_its_start() -> None:
    body = sse_line(tgi_token(1, "A")) + b"data:{not json at all" + b"x" * 500 + b"\n\n"
    seen, error = collect_until_error(TokenIterator(as_parts(body)))
    assert seen == ["A"]
    assert error.error_type == "malformed"
    assert "{not json at all" in error.message
    assert len(error.message) < 200


def test_invalid_utf8_line_is_malformed() -> None:
    _seen, error = collect_until_error(TokenIterator(as_parts(b"data:\xff\xfe\n\n")))
    assert error.error_type == "malformed"


def test_non_object_json_is_malformed() -> None:
    # What a container sends when the request lacked "stream": true.
    _seen, error = collect_until_error(TokenIterator(as_parts(b'[{"generated_text": "all at once"}]')))
    assert error.error_type == "malformed"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(tgi_stream()[: tgi_stream().rindex(b"data:")], id="tgi-without-final-event"),
        pytest.param(messages_stream(done=False), id="messages-without-done"),
        pytest.param(lmi_stream().rsplit(b"\n", 1)[0] + b"\n", id="lmi-without-final-line"),
        pytest.param(b":\n\n", id="only-keep-alive"),
    ],
)
def test_truncated_streams_are_incomplete(body: bytes) -> None:
    iterator = TokenIterator(as_parts(body, [17]))
    seen, error = collect_until_error(iterator)
    assert error.error_type == "incomplete"
    assert "".join(seen) in "".join(TGI_EXPECTED)


def test_final_event_cut_mid_line_is_malformed_not_silent() -> None:
    body = tgi_stream()[:-20]
    seen, error = collect_until_error(TokenIterator(as_parts(body)))
    assert seen == TGI_EXPECTED
    assert error.error_type == "malformed"


def test_stream_exceptions_become_stream_errors_after_earlier_tokens() -> None:
    from botocore.exceptions import EventStreamError

    def failing_stream() -> Iterator[dict]:
        yield from as_parts(sse_line(tgi_token(1, "A")) + sse_line(tgi_token(2, "B"))[:10])
        raise EventStreamError({"Error": {"Code": "ModelStreamError", "Message": "Model stream broken"}},
                               "InvokeEndpointWithResponseStream")

    seen, error = collect_until_error(TokenIterator(failing_stream()))
    assert seen == ["A"]
    assert error.error_type == "ModelStreamError"
    assert error.message == "Model stream broken"


def test_unrelated_exceptions_propagate_unchanged() -> None:
    def broken() -> Iterator[dict]:
        yield from as_parts(sse_line(tgi_token(1, "A")))
        raise KeyError("bug")

    iterator = TokenIterator(broken())
    assert next(iterator) == "A"
    with pytest.raises(KeyError):
        next(iterator)


def test_iterator_stays_exhausted_after_an_error() -> None:
    iterator = TokenIterator(as_parts(b"data:{oops\n\n" + sse_line(tgi_token(1, "A"))))
    with pytest.raises(StreamError):
        next(iterator)
    with pytest.raises(StopIteration):
        next(iterator)


def test_close_closes_the_underlying_stream() -> None:
    class Body:
        closed = False

        def __iter__(self) -> Iterator[dict]:
            return as_parts(tgi_stream(), [30])

        def close(self) -> None:
            self.closed = True

    body = Body()
    with TokenIterator(body) as iterator:
        assert next(iterator) == TGI_EXPECTED[0]
    assert body.closed
    assert list(iterator) == []


@pytest.mark.parametrize("event", [
    {"token": 5}, {"token": {"text": 5}, "generated_text": None}, {"token": {"text": ["a"]}, "generated_text": "x"},
    {"choices": [5]}, {"choices": 7}, {"choices": [{"delta": "text"}]}, {"outputs": 5},
    {"token": {"text": "a"}, "generated_text": "a", "details": [1]},
])
def test_events_of_unexpected_shape_are_malformed(event: dict) -> None:
    # A shape that carries nothing usable is ignored like an unknown event, and must still end the stream.
    _seen, error = collect_until_error(TokenIterator(as_parts(sse_line(event))))
    assert error.error_type in ("malformed", "incomplete")


@settings(max_examples=4 * settings().max_examples)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=1, max_value=300), max_size=10))
def test_arbitrary_bytes_end_in_tokens_or_a_stream_error(data: bytes, cuts: list[int]) -> None:
    with contextlib.suppress(StreamError):
        list(TokenIterator(as_parts(data, cuts)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["token", "text", "special", "generated_text", "details", "finish_reason", "error",
                         "error_type", "choices", "delta", "content", "usage", "outputs", "generated_tokens"]),
        children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=2 * settings().max_examples)
@given(st.lists(json_values, min_size=1, max_size=4), st.booleans())
def test_arbitrary_json_events_end_in_tokens_or_a_stream_error(events: list, sse: bool) -> None:
    lines = [(b"data:" if sse else b"") + json.dumps(e).encode() + b"\n" for e in events]
    outcome: list[str] | StreamError
    try:
        outcome = list(TokenIterator(as_parts(b"".join(lines), [7, 19])))
    except StreamError as error:
        outcome = error
    if isinstance(outcome, StreamError):
        assert outcome.error_type
    else:
        assert all(isinstance(text, str) and text for text in outcome)


# -- resources -----------------------------------------------------------------


def _peak_bytes(event_count: int) -> int:
    def parts() -> Iterator[dict]:
        for index in range(1, event_count + 1):
            yield {"PayloadPart": {"Bytes": sse_line(tgi_token(index, " word"))}}
        yield {"PayloadPart": {"Bytes": sse_line(tgi_final(event_count + 1, "</s>", "..."))}}

    tracemalloc.start()
    try:
        for _ in TokenIterator(parts()):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_stream_length() -> None:
    short, long = _peak_bytes(1_000), _peak_bytes(20_000)
    assert long < short * 2 + 64_000, (short, long)
