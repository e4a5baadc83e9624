"""Real event-stream frames through botocore's real parser and into the token iterator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from llm_stream.tokens import TokenIterator
from sagemaker_emulator import eventstream
from tests.streams import TGI_EXPECTED, collect_until_error, sse_line, tgi_stream, tgi_token

OPERATION_EVENT = "before-send.sagemaker-runtime.InvokeEndpointWithResponseStream"


class _RawStream:
    """What botocore reads a streaming body from: urllib3's response ``stream()``."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def stream(self, *args: object, **kwargs: object) -> Iterator[bytes]:
        yield from self._chunks

    def close(self) -> None:
        pass


def invoke_with_frames(frames: list[bytes], http_chunk: int = 64) -> Any:
    """Call the real client; the HTTP layer answers with these frames cut into ``http_chunk``-byte reads."""
    wire = b"".join(frames)
    chunks = [wire[i : i + http_chunk] for i in range(0, len(wire), http_chunk)]
    client = boto3.client(
        "sagemaker-runtime", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )

    def answer(request, **kwargs):
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/vnd.amazon.eventstream"
        headers["X-Amzn-SageMaker-Content-Type"] = "text/event-stream"
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
