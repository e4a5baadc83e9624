"""Real event-stream frames through botocore's real parser and into the token iterator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from llm_stream.tokens import TokenIterator
from sagemaker_emulator import eventstream
from tests.helpers.streams import (
    TGI_EXPECTED,
    TGI_TEXTS,
    collect_until_error,
    lmi_error_line,
    lmi_pre_inference_error,
    lmi_stream,
    sse_line,
    tgi_stream,
    tgi_token,
)

OPERATION_EVENT = "before-send.sagemaker-runtime.InvokeEndpointWithResponseStream"


class _RawStream:
    """What botocore reads a streaming body from: urllib3's response ``stream()``."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def stream(self, *args: object, **kwargs: object) -> Iterator[bytes]:
        yield from self._chunks

    def close(self) -> None:
        pass


def invoke_with_frames(frames: list[bytes], http_chunk: int = 64, content_type: str = "text/event-stream") -> Any:
    """Call the real client; the HTTP layer answers with these frames cut into ``http_chunk``-byte reads."""
    wire = b"".join(frames)
    chunks = [wire[i : i + http_chunk] for i in range(0, len(wire), http_chunk)]
    client = boto3.client(
        "sagemaker-runtime", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )

    def answer(request, **kwargs):
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/vnd.amazon.eventstream"
        headers["X-Amzn-SageMaker-Content-Type"] = content_type
        return AWSResponse(request.url, 200, headers, _RawStream(chunks))

    client.meta.events.register(OPERATION_EVENT, answer)
    return client.invoke_endpoint_with_response_stream(EndpointName="e", Body=b"{}", ContentType="application/json")


def test_encoded_frames_decode_with_botocore() -> None:
    frame = eventstream.payload_part("网站🚀".encode())
    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    (message,) = list(buffer)
    headers = message.to_response_dict()["headers"]
    assert headers[":event-type"] == "PayloadPart"
    assert headers[":message-type"] == "event"
    assert message.payload == "网站🚀".encode()


def test_corrupted_frame_fails_botocore_checksum() -> None:
    frame = bytearray(eventstream.payload_part(b"hello"))
    frame[-6] ^= 0xFF
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


@pytest.mark.parametrize("part_size", [1, 3, 17, 4096])
@pytest.mark.parametrize("http_chunk", [1, 64])
def test_tokens_through_botocore(part_size: int, http_chunk: int) -> None:
    body = tgi_stream()
    frames = [eventstream.payload_part(body[i : i + part_size]) for i in range(0, len(body), part_size)]
    response = invoke_with_frames(frames, http_chunk)
    assert response["ContentType"] == "text/event-stream"
    iterator = TokenIterator(response["Body"])
    assert list(iterator) == TGI_EXPECTED
    assert iterator.finish_reason == "eos_token"


@pytest.mark.parametrize(
    ("exception_type", "error_code"), [("ModelStreamError", "StreamBroken"), ("InternalStreamFailure", None)]
)
def test_exception_frames_raise_stream_errors_after_earlier_tokens(exception_type: str, error_code: str | None) -> None:
    frames = [
        eventstream.payload_part(sse_line(tgi_token(1, "你"))),
        eventstream.payload_part(sse_line(tgi_token(2, "好"))[:9]),
        eventstream.exception_event(exception_type, "it broke", error_code),
    ]
    seen, error = collect_until_error(TokenIterator(invoke_with_frames(frames)["Body"]))
    assert seen == ["你"]
    assert error.error_type == exception_type
    assert error.message == "it broke"


# -- the LMI container's JSON lines (DJL Serving 0.28) ------------------------------


def lmi_frames(body: bytes, part_size: int) -> list[bytes]:
    return [eventstream.payload_part(body[i : i + part_size]) for i in range(0, len(body), part_size)]


@pytest.mark.parametrize("part_size", [1, 7, 4096])
def test_lmi_tokens_through_botocore(part_size: int) -> None:
    response = invoke_with_frames(lmi_frames(lmi_stream(), part_size), content_type="application/jsonlines")
    assert response["ContentType"] == "application/jsonlines"
    iterator = TokenIterator(response["Body"])
    assert list(iterator) == TGI_EXPECTED  # empty texts and the final EOS line's special token are not text
    assert (iterator.format, iterator.finish_reason, iterator.generated_tokens) == ("lmi", "eos_token",
                                                                                    len(TGI_TEXTS) + 1)


@pytest.mark.parametrize(("message", "shown"), [("Input is not valid JSON", "Input is not valid JSON"),
                                                 ("", "the model container reported an error")])
def test_lmi_failure_before_generation_is_a_generation_error(message: str, shown: str) -> None:
    response = invoke_with_frames(lmi_frames(lmi_pre_inference_error(message), 5))
    tokens, error = collect_until_error(TokenIterator(response["Body"]))
    assert tokens == []
    assert (error.error_type, error.message) == ("generation", shown)


def test_lmi_failure_during_generation_ends_after_the_tokens_before_it() -> None:
    body = b"".join(json.dumps({"token": {"id": i, "text": t, "log_prob": -0.2}}).encode() + b"\n"
                    for i, t in enumerate(["Hel", "lo"])) + lmi_error_line("Hello", 3)
    tokens, error = collect_until_error(TokenIterator(invoke_with_frames(lmi_frames(body, 11))["Body"]))
    assert tokens == ["Hel", "lo"]
    assert (error.error_type, error.message) == ("generation", "the model container reported an error")


def test_lmi_prompt_beyond_the_window_is_the_callers_error() -> None:
    # vLLM ends a prompt longer than max_model_len at once: one placeholder token, finish "length".
    body = json.dumps({"token": {"id": -1, "text": "", "log_prob": None}, "generated_text": "",
                       "details": {"finish_reason": "length", "generated_tokens": 1, "inputs": "..."}}).encode()
    tokens, error = collect_until_error(TokenIterator(invoke_with_frames(lmi_frames(body, 9))["Body"]))
    assert tokens == []
    assert error.error_type == "validation"
    assert "context window" in error.message


def test_an_answer_cut_by_its_length_limit_is_not_mistaken_for_a_long_prompt() -> None:
    body = (json.dumps({"token": {"id": 5, "text": "Hi", "log_prob": -0.2}}).encode() + b"\n"
            + json.dumps({"token": {"id": 6, "text": "", "log_prob": -0.2}, "generated_text": "Hi",
                          "details": {"finish_reason": "length", "generated_tokens": 2, "inputs": "x"}}).encode())
    iterator = TokenIterator(invoke_with_frames(lmi_frames(body, 9))["Body"])
    assert list(iterator) == ["Hi"]
    assert iterator.finish_reason == "length"


def test_a_one_token_answer_whose_token_is_half_a_character_is_not_mistaken_for_a_long_prompt() -> None:
    # max_new_tokens 1, and the token is a byte-fallback piece the detokenizer cannot show yet: empty text.
    body = json.dumps({"token": {"id": 243, "text": "", "log_prob": -0.4}, "generated_text": "",
                       "details": {"finish_reason": "length", "generated_tokens": 1, "inputs": "x"}}).encode()
    iterator = TokenIterator(invoke_with_frames(lmi_frames(body, 9))["Body"])
    assert list(iterator) == []
    assert iterator.finish_reason == "length"


def test_lmi_0_27_deepspeed_lines_in_the_two_regions_that_serve_it() -> None:
    # DJL 0.27's DeepSpeed image (ap-northeast-3, ap-southeast-3): token ids in lists, empty fields left out.
    lines = [{"token": {"id": [9], "text": "Hi"}}, {"token": {"id": [10], "text": " there"},
                                                    "generated_text": "Hi there"}]
    body = b"\n".join(json.dumps(line).encode() for line in lines)
    iterator = TokenIterator(invoke_with_frames(lmi_frames(body, 4))["Body"])
    assert list(iterator) == ["Hi", " there"]
    assert (iterator.format, iterator.finish_reason) == ("lmi", None)
