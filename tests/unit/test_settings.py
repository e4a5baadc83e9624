"""One settings contract: what the stack writes, what the function reads, and what the docs say."""

from __future__ import annotations

import itertools
import re
from dataclasses import fields
from typing import Any

import pytest

from infra.settings import CONTEXT_KEYS, DeploymentSettings, check_context_keys
from infra.settings import SettingsError as InfraSettingsError
from llm_stream.settings import Settings, SettingsError, env_name
from tests import ROOT
from tests.helpers.cdk_app import app_environment, cdk_context, templates

DEPLOYING = (ROOT / "docs" / "deploying.md").read_text()


def docs_table(heading: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table after ``heading``, as dicts keyed by the header cells."""
    lines = DEPLOYING.split(f"\n{heading}\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines[start:]))
    header, _rule, *rows = ([cell.strip() for cell in line.strip().strip("|").split("|")] for line in table)
    return [dict(zip(header, row, strict=True)) for row in rows]


def code(cell: str) -> str:
    """The first `code` span of a table cell."""
    match = re.search(r"`([^`]*)`", cell)
    assert match, cell
    return match[1]


@pytest.mark.parametrize("overrides", [{}, {"model": "huggingface-llm-falcon-40b-bf16", "log_prompts": "true",
                                            "function_timeout_seconds": 600, "name_prefix": "team-b"}])
def test_the_function_reads_back_exactly_what_the_deployment_settings_say(overrides: dict[str, Any]) -> None:
    _, streaming = templates(**overrides)
    deployment = DeploymentSettings.from_context(cdk_context(**overrides).get)
    assert Settings.from_env(app_environment(streaming)) == deployment.for_function(deployment.endpoint_name)


def test_the_docs_document_every_function_variable_with_its_deployed_and_local_value() -> None:
    rows = {code(row["variable"]): row for row in docs_table("## What the function receives")}
    assert sorted(rows) == sorted(env_name(setting.name) for setting in fields(Settings))
    _, streaming = templates()
    deployed = app_environment(streaming)
    local = Settings(endpoint_name="local").to_environment()
    opt_in = {env_name(setting.name) for setting in fields(Settings) if setting.metadata.get("opt_in")}
    for name, row in rows.items():
        if name in opt_in:  # written only where its feature is used: in neither default
            assert name not in deployed, name
            assert name not in local, name
            assert row["default deployment"] == row["local default"] == "(not set)", name
            continue
        assert code(row["default deployment"]) == deployed[name], name
        if name == "SAGEMAKER_ENDPOINT_NAME":
            assert "(required)" in row["local default"]
            continue
        assert code(row["local default"]) == local[name], name


def test_the_docs_document_every_context_key() -> None:
    documented = {key for row in docs_table("## Settings (`cdk.json` context, or `-c key=value`)")
                  for key in re.findall(r"`([a-z_]+)`", row["key"])}
    assert documented == set(CONTEXT_KEYS)


def test_settings_round_trip_through_the_environment() -> None:
    settings = Settings(endpoint_name="e", time_budget_seconds=12.5, log_prompts=True, chat_format="none",
                        max_concurrent_streams=3, metrics_namespace="Other")
    assert Settings.from_env(settings.to_environment()) == settings


def test_unset_and_empty_variables_keep_the_defaults() -> None:
    assert Settings.from_env({"SAGEMAKER_ENDPOINT_NAME": "e", "MAX_NEW_TOKENS": ""}) == Settings(endpoint_name="e")


@pytest.mark.parametrize(("environment", "message"), [
    ({}, "SAGEMAKER_ENDPOINT_NAME is not set"),
    ({"SAGEMAKER_ENDPOINT_NAME": " "}, "SAGEMAKER_ENDPOINT_NAME=' ' is not valid: expected a non-empty name"),
    ({"MAX_NEW_TOKENS": "0"}, "MAX_NEW_TOKENS=0 is not valid: expected an integer >= 1"),
    ({"MAX_NEW_TOKENS": "many"}, "MAX_NEW_TOKENS='many' is not valid: invalid literal for int()"),
    ({"TIME_BUDGET_SECONDS": "-1"}, "TIME_BUDGET_SECONDS=-1.0 is not valid: expected a finite number > 0"),
    ({"LOG_PROMPTS": "maybe"}, "LOG_PROMPTS='maybe' is not valid: expected one of true/false/1/0/yes/no/on/off"),
    ({"MAX_NEW_TOKENS": "2048"}, "MAX_NEW_TOKENS=2048 is not valid: expected less than MODEL_MAX_TOTAL_TOKENS (2048)"),
    ({"DEFAULT_MAX_NEW_TOKENS": "1025"},
     "DEFAULT_MAX_NEW_TOKENS=1025 is not valid: expected at most MAX_NEW_TOKENS (1024)"),
])
def test_bad_variables_are_refused_by_name(environment: dict[str, str], message: str) -> None:
    base = {} if "SAGEMAKER_ENDPOINT_NAME" in environment or not environment else {"SAGEMAKER_ENDPOINT_NAME": "e"}
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**base, **environment})
    assert message in str(raised.value)


def test_a_deployment_the_function_would_refuse_fails_at_synth() -> None:
    """The stack builds the function's settings, so the function's own rules run before anything deploys."""
    settings = DeploymentSettings.from_context(cdk_context().get)
    with pytest.raises(SettingsError, match="SAGEMAKER_ENDPOINT_NAME=''"):
        settings.for_function("")


def test_an_unknown_context_key_is_refused_naming_the_nearest_known_one() -> None:
    with pytest.raises(InfraSettingsError, match=r"unknown context key 'modle' \(did you mean 'model'\?\); allowed: "
                                                r"model, instance_type"):
        check_context_keys(["model", "modle"])
    with pytest.raises(InfraSettingsError, match="unknown context keys 'foo', 'zzz'"):
        check_context_keys(["foo", "zzz"])


def test_the_cdks_own_context_keys_are_left_alone() -> None:
    check_context_keys([*CONTEXT_KEYS, "@aws-cdk/core:checkSecretUsage", "@aws-cdk-containers/ecs:x",
                        "aws:cdk:enable-path-metadata", "aws:cdk:bundling-stacks",
                        "availability-zones:account=123456789012:region=us-east-1", "acknowledged-issue-numbers",
                        "cli-telemetry"])


def test_synth_refuses_an_unknown_context_key(tmp_path) -> None:
    from aws_cdk import App

    from infra.app_builder import build

    with pytest.raises(InfraSettingsError, match="modle"):
        build(App(context={**cdk_context(), "modle": "huggingface-llm-mistral-7b-instruct"}, outdir=str(tmp_path)))


def test_a_container_can_only_what_its_family_can_whatever_the_list_says() -> None:
    lmi = Settings(endpoint_name="e", container_family="lmi")  # the default list: the default TGI model's
    assert lmi.can("logprobs")
    assert not lmi.can("grammar")
    assert not lmi.can("top_logprobs")
    with pytest.raises(SettingsError, match="CONTAINER_CAPABILITIES='grammar,telepathy' is not valid: expected "
                                            "names among grammar, tools"):
        Settings(endpoint_name="e", container_capabilities=("grammar", "telepathy"))
