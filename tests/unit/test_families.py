"""Container families: one module each, what each pinned container can do, and the places that read them."""

from __future__ import annotations

import copy
import json

import pytest

from infra.catalog import CONTAINER_FAMILIES, PROJECT_ENVIRONMENT, load_catalog
from infra.refresh_catalog import DEFAULT_SPECS
from infra.spec_mapping import SpecError, model_from_spec
from llm_stream.families import CAPABILITIES, REGISTERED, CapabilityRule, ContainerFamily, all_families, family
from llm_stream.settings import Settings
from sagemaker_emulator.server import CONTAINERS

SPECS = json.loads(DEFAULT_SPECS.read_text())


def supported(model_id: str) -> set[str]:
    return {name for name, capability in load_catalog().get(model_id).capabilities.items() if capability["supported"]}


def test_each_pinned_container_records_what_it_can_do_with_the_source_of_each() -> None:
    catalog = load_catalog()
    for model in catalog.models.values():
        assert set(model.capabilities) == set(CAPABILITIES), model.model_id
        assert all(capability["source"] for capability in model.capabilities.values())
    # TGI 2.4.0: grammar (1.4.1+), tools (1.4.3+), prompt counts in the stream's details.
    assert supported("huggingface-llm-falcon-7b-instruct-bf16") == set(CAPABILITIES)
    # TGI 1.4.0: before grammar and tools, and its stream details have no input_length.
    assert supported("huggingface-llm-falcon-7b-bf16") == {"logprobs", "top_logprobs"}
    # DJL/LMI 0.28 (lmi-dist): no guided decoding, the chosen token's log probability only.
    assert supported("huggingface-llm-mistral-7b-instruct") == {"logprobs"}
    assert {model.container_version for model in catalog.models.values()} == {"1.4.0", "2.4.0", "0.28.0"}


def test_a_container_version_nobody_checked_stops_the_catalog_refresh() -> None:
    raw = copy.deepcopy(SPECS["models"]["huggingface-llm-falcon-7b-instruct-bf16"])
    text = json.dumps(raw).replace("tgi2.4.0", "tgi2.5.0")
    with pytest.raises(SpecError, match=r"version 2\.5\.0 has no checked capabilities \(checked: 1\.4\.0, 2\.4\.0\)"):
        model_from_spec(json.loads(text))


def test_capability_rules_compare_versions_as_numbers() -> None:
    tgi = family("tgi")
    assert tgi.version("2.1.1-tgi1.4.0-gpu-py310-cu121-ubuntu20.04") == "1.4.0"
    ruled = ContainerFamily(**{**tgi.__dict__, "checked_versions": frozenset({"1.10.0", "1.4.1"})})
    assert ruled.capabilities("x-tgi1.10.0-gpu")["tools"]["supported"]  # 1.10 > 1.4.3, though "1.10" < "1.4"
    assert not ruled.capabilities("x-tgi1.4.1-gpu")["tools"]["supported"]
    assert ruled.capabilities("x-tgi1.4.1-gpu")["grammar"]["supported"]


def test_a_family_must_rule_on_every_capability() -> None:
    tgi = family("tgi")
    with pytest.raises(ValueError, match="one rule for each of grammar, tools"):
        ContainerFamily(**{**tgi.__dict__, "capability_rules": (CapabilityRule("grammar", None, "x"),)})


def test_the_registry_names_each_family_and_refuses_others() -> None:
    assert [known.name for known in all_families()] == list(REGISTERED)
    with pytest.raises(KeyError, match="unknown container family 'vllm'; registered: tgi, lmi"):
        family("vllm")
    with pytest.raises(ValueError, match="CONTAINER_FAMILY='vllm' is not valid: expected one of tgi, lmi"):
        Settings(endpoint_name="e", container_family="vllm")


def test_what_reads_the_families_is_derived_from_them() -> None:
    assert CONTAINER_FAMILIES == {"huggingface-pytorch-tgi-inference": "tgi", "djl-inference": "lmi"}
    assert set(PROJECT_ENVIRONMENT) == {"OPTION_MAX_MODEL_LEN"}
    assert family("lmi").window_environment(4096) == {"OPTION_MAX_MODEL_LEN": "4096"}
    assert family("tgi").window_environment(4096) == {}


def test_every_family_has_an_emulated_container() -> None:
    """The emulator stands for AWS and imports nothing of the function: its containers are registered on their
    own, and a family without one could not be run locally."""
    assert set(CONTAINERS) == set(REGISTERED)


def test_the_emulator_refuses_a_container_it_does_not_emulate() -> None:
    from sagemaker_emulator import EmulatorConfig

    with pytest.raises(ValueError, match="container 'vllm': expected one of tgi, lmi"):
        EmulatorConfig(container="vllm")
