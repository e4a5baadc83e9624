"""Golden request bodies: what the endpoint receives, per container family, for each way in.

The same caller request becomes TGI's parameters for a TGI model and LMI's for an LMI model
(``llm_stream/families/`` cites each container's source); nothing of one family leaks into the other.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.catalog import load_catalog
from infra.function_settings import model_settings
from llm_stream.errors import ApiError
from llm_stream.openai_payloads import parse_chat, parse_completion
from llm_stream.payloads import UpstreamRequest, parse_body
from llm_stream.settings import Settings

FALCON_INSTRUCT = "huggingface-llm-falcon-7b-instruct-bf16"
MISTRAL_INSTRUCT = "huggingface-llm-mistral-7b-instruct"


def settings_for(model_id: str) -> Settings:
    """The function's settings as a deployment of this catalog model writes them."""
    return Settings(endpoint_name="e", **model_settings(load_catalog().get(model_id)))


def sent(parse: Any, body: dict[str, Any], model_id: str) -> dict[str, Any]:
    upstream = parse(json.dumps(body).encode(), settings_for(model_id))
    request: UpstreamRequest = getattr(upstream, "upstream", upstream)
    assert json.loads(request.encoded) == request.body
    return request.body


CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 40, "temperature": 0.7, "top_p": 0.9, "stop": ["END"], "seed": 7}


@pytest.mark.parametrize(("model_id", "expected"), [
    (FALCON_INSTRUCT, {"inputs": "Be brief.\nUser: Hi\nAssistant:", "stream": True, "parameters": {
        "max_new_tokens": 40, "details": True, "do_sample": True, "return_full_text": False, "temperature": 0.7,
        "top_p": 0.9, "stop": ["END", "\nUser:"], "seed": 7}}),
    (MISTRAL_INSTRUCT, {"inputs": "[INST] Be brief.\n\nHi [/INST]", "stream": True, "parameters": {
        "max_new_tokens": 40, "details": True, "do_sample": True, "temperature": 0.7, "top_p": 0.9,
        "stop_sequences": ["END"], "seed": 7}}),
])
def test_a_conversation_on_post_root(model_id: str, expected: dict[str, Any]) -> None:
    assert sent(parse_body, CHAT, model_id) == expected


@pytest.mark.parametrize(("model_id", "expected"), [
    (FALCON_INSTRUCT, {"inputs": "User: Hi\nAssistant:", "stream": True, "parameters": {
        "max_new_tokens": 256, "details": True, "do_sample": False, "return_full_text": False,
        "stop": ["\nUser:"]}}),
    # LMI decodes greedily without do_sample; its default return_full_text is already false.
    (MISTRAL_INSTRUCT, {"inputs": "[INST] Hi [/INST]", "stream": True, "parameters": {
        "max_new_tokens": 256, "details": True, "do_sample": False}}),
])
def test_openai_chat_at_temperature_zero(model_id: str, expected: dict[str, Any]) -> None:
    body = {"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "temperature": 0}
    assert sent(parse_chat, body, model_id) == expected


@pytest.mark.parametrize(("model_id", "stops"), [("huggingface-llm-falcon-7b-bf16", {"stop": ["\n\n"]}),
                                                  ("huggingface-llm-mistral-7b", {"stop_sequences": ["\n\n"]})])
def test_openai_completion_on_a_base_model(model_id: str, stops: dict[str, Any]) -> None:
    body = {"model": model_id, "prompt": "Once upon", "max_tokens": 5, "stop": "\n\n"}
    family_default = {"return_full_text": False} if "stop" in stops else {}
    assert sent(parse_completion, body, model_id) == {"inputs": "Once upon", "stream": True, "parameters": {
        "max_new_tokens": 5, "details": True, "do_sample": True, **family_default, **stops}}


def test_lmi_parameters_pass_through_on_the_container_s_own_payload() -> None:
    parameters = {"do_sample": True, "temperature": 0.2, "top_k": 40, "top_p": 1, "repetition_penalty": 1.1,
                  "presence_penalty": 0.5, "stop_sequences": ["\n"], "max_new_tokens": 9}
    assert sent(parse_body, {"inputs": "Hi", "parameters": parameters}, MISTRAL_INSTRUCT) == {
        "inputs": "Hi", "stream": True, "parameters": {**parameters, "details": True}}


@pytest.mark.parametrize(("parameters", "problem"), [
    ({"stop": ["\n"]}, "`parameters.stop` is not a known field; allowed here: max_new_tokens, do_sample"),
    ({"truncate": 100}, "`parameters.truncate` is not a known field"),
    ({"watermark": True}, "`parameters.watermark` is not a known field"),
    ({"repetition_penalty": 2.5}, "`parameters.repetition_penalty`: Input should be less than or equal to 2"),
    ({"top_k": 0}, "`parameters.top_k`: Value error, must be -1 (no top-k) or at least 1"),
    ({"top_k": -2}, "`parameters.top_k`: Input should be greater than or equal to -1"),
])
def test_tgi_only_or_out_of_range_parameters_are_refused_for_lmi(parameters: dict[str, Any], problem: str) -> None:
    with pytest.raises(ApiError) as raised:
        sent(parse_body, {"inputs": "Hi", "parameters": parameters}, MISTRAL_INSTRUCT)
    assert raised.value.status == 422
    assert problem in raised.value.message


def test_lmi_top_k_minus_one_means_no_top_k_as_vllm_reads_it() -> None:
    """vLLM 0.4.2 (LMI 0.28's): ``top_k`` -1 disables top-k; 0 is refused (sampling_params.py ``_verify_args``)."""
    body = sent(parse_body, {"inputs": "Hi", "parameters": {"top_k": -1, "do_sample": True}}, MISTRAL_INSTRUCT)
    assert body["parameters"]["top_k"] == -1


def test_lmi_parameter_names_are_refused_for_tgi() -> None:
    with pytest.raises(ApiError, match=r"`parameters\.stop_sequences` is not a known field"):
        sent(parse_body, {"inputs": "Hi", "parameters": {"stop_sequences": ["\n"]}}, FALCON_INSTRUCT)
