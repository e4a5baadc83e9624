"""Token log probabilities on the OpenAI-compatible routes, with the `openai` SDK against the real function in
front of the emulator (TGI's `logprob` and `top_tokens`, LMI's `log_prob`)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from infra.catalog import load_catalog
from sagemaker_emulator import EmulatorConfig, EmulatorServer

MODEL = "huggingface-llm-falcon-7b-instruct-bf16"
HI: Any = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def client(function) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{function.url}/v1", api_key="unused", max_retries=0)


def test_a_streamed_chat_answer_carries_each_token_s_log_probability_and_its_alternatives(client,
                                                                                          emulator) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=6, stream=True, logprobs=True,
                                            top_logprobs=3)
    with_text = [chunk.choices[0] for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert len(with_text) == 6
    for choice in with_text:
        assert choice.logprobs is not None
        (entry,) = choice.logprobs.content or []
        assert entry.token == choice.delta.content
        assert entry.logprob < 0
        assert len(entry.top_logprobs) == 3
        assert bytes(entry.bytes or []) == entry.token.encode()
    assert emulator.requests[0].json()["parameters"]["top_n_tokens"] == 3


def test_a_whole_answer_s_log_probabilities_spell_its_text_without_the_stop_that_ended_it(client) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=30, logprobs=True, stop=" short")
    choice = answer.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.logprobs is not None
    content = choice.logprobs.content or []
    assert "".join(entry.token for entry in content) == choice.message.content == "Here is a"
    assert all(entry.top_logprobs == [] for entry in content)


def test_streamed_log_probabilities_leave_out_a_stop_held_back_and_dropped(client) -> None:
    chunks = [chunk.choices[0] for chunk in client.chat.completions.create(
        model=MODEL, messages=HI, max_tokens=30, logprobs=True, stop=" short", stream=True) if chunk.choices]
    content = "".join(choice.delta.content or "" for choice in chunks)
    tokens = [entry.token for choice in chunks if choice.logprobs for entry in choice.logprobs.content or []]
    assert content == "Here is a"
    assert "".join(tokens) == content


def test_top_logprobs_0_without_logprobs_is_the_neutral_value_clients_send(client) -> None:
    answer = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2, top_logprobs=0)
    assert answer.choices[0].logprobs is None


def test_completions_list_tokens_their_log_probabilities_and_offsets(client, emulator) -> None:
    answer = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4, logprobs=2)
    scores = answer.choices[0].logprobs
    assert scores is not None
    assert "".join(scores.tokens or []) == answer.choices[0].text
    assert scores.text_offset == [0, 4, 7, 9]
    assert all(len(top) == 2 for top in scores.top_logprobs or [])
    assert emulator.requests[0].json()["parameters"]["top_n_tokens"] == 2


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"logprobs": True, "top_logprobs": 6}, "top_logprobs"),
    ({"top_logprobs": 2}, "top_logprobs"),
])
def test_what_the_container_cannot_give_is_refused_by_name(client, emulator, kwargs, param) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=HI, **kwargs)
    assert raised.value.param == param
    assert emulator.requests == []


def test_lmi_gives_the_chosen_token_s_log_probability_only(start_function) -> None:
    mistral = load_catalog().get("huggingface-llm-mistral-7b-instruct")
    config = EmulatorConfig(ttft_ms=0, token_ms=0, container="lmi", max_total_tokens=mistral.max_total_tokens)
    with EmulatorServer(config) as emulator:
        from infra.function_settings import model_settings

        function = start_function(emulator, **model_settings(mistral))
        client = openai.OpenAI(base_url=f"{function.url}/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(model=mistral.model_id, messages=HI, max_tokens=4, logprobs=True)
        content = (answer.choices[0].logprobs.content or []) if answer.choices[0].logprobs else []
        assert [entry.token for entry in content]
        assert all(entry.logprob < 0 for entry in content)
        assert "top_n_tokens" not in emulator.requests[0].json()["parameters"]
        with pytest.raises(openai.BadRequestError) as raised:
            client.chat.completions.create(model=mistral.model_id, messages=HI, logprobs=True, top_logprobs=2)
        assert raised.value.param == "top_logprobs"
        assert "chosen token's log probability only" in raised.value.message


def test_the_responses_api_includes_log_probabilities_streamed_and_whole(client, emulator) -> None:
    include: Any = ["message.output_text.logprobs"]
    whole = client.responses.create(model=MODEL, input="Hi", max_output_tokens=5, include=include, top_logprobs=2)
    (part,) = whole.output[0].content
    assert "".join(entry.token for entry in part.logprobs or []) == whole.output_text
    assert all(len(entry.top_logprobs) == 2 for entry in part.logprobs or [])
    assert emulator.requests[0].json()["parameters"]["top_n_tokens"] == 2
    events = list(client.responses.create(model=MODEL, input="Hi", max_output_tokens=5, include=include,
                                          stream=True))
    deltas = [event for event in events if event.type == "response.output_text.delta"]
    assert [entry.token for event in deltas for entry in event.logprobs] == [event.delta for event in deltas]
    done = next(event for event in events if event.type == "response.output_text.done")
    assert len(done.logprobs or []) == len(deltas)


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"include": ["file_search_call.results"]}, "include"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"include": ["message.output_text.logprobs"], "top_logprobs": 9}, "top_logprobs"),
])
def test_what_the_responses_api_cannot_include_is_refused_by_name(client, emulator, kwargs, param) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=MODEL, input="Hi", **kwargs)
    assert raised.value.param == param
    assert emulator.requests == []
