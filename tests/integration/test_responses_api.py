"""``POST /v1/responses`` (OpenAI's Responses API, stateless), driven by the official `openai` Python SDK's own
``responses.create`` and stream helper against the real function in front of the emulator."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from sagemaker_emulator import Fault
from tests.helpers.logs import LogRecords

MODEL = "huggingface-llm-falcon-7b-instruct-bf16"
#: The emulator's answer to this prompt ends (eos) well before 200 tokens.
QUESTION = "How do I build a website?"


@pytest.fixture
def client(function) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{function.url}/v1", api_key="unused", max_retries=0)


def test_a_whole_response_has_its_message_its_usage_and_the_conversation_rendered(client, emulator) -> None:
    answer = client.responses.create(model=MODEL, instructions="Be brief.", max_output_tokens=200, input=[
        {"role": "user", "content": "Hi"},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Hello!", "annotations": []}]},
        {"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}])
    assert answer.object == "response"
    assert answer.status == "completed"
    assert answer.incomplete_details is None
    assert answer.output_text
    (message,) = answer.output
    assert message.type == "message"
    assert message.role == "assistant"
    assert answer.usage is not None
    assert answer.usage.input_tokens > 0  # the container counted the prompt
    assert answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens
    assert answer.store is False
    sent = emulator.requests[-1].json()
    assert sent["inputs"] == f"Be brief.\nUser: Hi\nAssistant: Hello!\nUser: {QUESTION}\nAssistant:"
    assert sent["parameters"]["max_new_tokens"] == 200


def test_the_stream_helper_gets_every_event_in_order_and_the_final_response(client) -> None:
    with client.responses.stream(model=MODEL, input=QUESTION, max_output_tokens=200) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    deltas = [event for event in events if event.type == "response.output_text.delta"]
    assert len(deltas) == len(kinds) - 8
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert {(event.item_id, event.output_index, event.content_index) for event in deltas} == {
        (final.output[0].id, 0, 0)}
    assert "".join(event.delta for event in deltas) == final.output_text
    assert final.status == "completed"


def test_a_response_cut_at_max_output_tokens_is_incomplete_streamed_and_not(client) -> None:
    whole = client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=3)
    assert whole.status == "incomplete"
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert whole.usage is not None
    assert whole.usage.output_tokens == 3
    events = list(client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=3, stream=True))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_a_failure_after_the_first_token_ends_with_an_error_event_then_response_failed(
        client, emulator, request_logs: LogRecords) -> None:
    emulator.inject(Fault(kind="model_stream_error", after_tokens=3))
    events = list(client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=50, stream=True))
    assert [event.type for event in events[-2:]] == ["error", "response.failed"]
    assert events[-2].code == "ModelStreamError"
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.code == "ModelStreamError"
    line = request_logs.wait_for(1)[-1]
    assert line["path"] == "/v1/responses"
    assert line["error_type"] == "ModelStreamError"
    assert line["tokens"] == 3


@pytest.mark.parametrize(("extra", "param"), [
    ({"previous_response_id": "resp_123"}, "previous_response_id"),
    ({"background": True}, "background"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}}},
     "text.format.schema.properties"),
    ({"text": {"format": {"type": "text"}, "verbosity": "high"}}, "text.verbosity"),
    ({"input": [{"role": "user", "content": "Hi"}, {"type": "reasoning", "summary": []}]}, "input[1].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     "input[0].content[0]"),
    ({"max_output_tokens": 5000}, "max_output_tokens"),
    ({"temperature": 3}, "temperature"),
])
def test_what_it_cannot_honour_is_refused_by_name_before_the_endpoint(client, emulator, extra: dict[str, Any],
                                                                      param: str) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(**{"model": MODEL, "input": "Hi", **extra})
    assert raised.value.param == param
    assert emulator.requests == []


def test_an_unknown_model_is_a_not_found_naming_the_deployed_one(client, emulator) -> None:
    with pytest.raises(openai.NotFoundError, match=MODEL):
        client.responses.create(model="gpt-4o", input="Hi")
    assert emulator.requests == []
