"""JumpStart's live spec format and the recorded one: both conversions (the SDK's resolution of them is in
tests/e2e/test_jumpstart_sdk.py)."""

from __future__ import annotations

import json

import pytest

from infra.live_specs import recorded_from_live
from infra.refresh_catalog import DEFAULT_SPECS, PINNED_SPECS
from infra.spec_mapping import model_from_spec
from tests.helpers.jumpstart_bucket import live_from_recorded, manifest_entry

IMAGE = "huggingface-pytorch-tgi-inference:2.4.0-tgi2.4.0-gpu-py311-cu124-ubuntu22.04"


def env_var(name: str, default: object, scope: str = "container") -> dict:
    return {"name": name, "type": "int" if isinstance(default, int) else "text", "default": default, "scope": scope,
            "required_for_model_class": True}


#: A live spec in JumpStart's own format (as the sagemaker SDK reads it), for Falcon 7B Instruct.
LIVE_SPEC = {
    "model_id": "huggingface-llm-falcon-7b-instruct-bf16",
    "version": "4.6.16",
    "hosting_ecr_specs": {"framework": "huggingface-llm", "framework_version": "2.4.0", "py_version": "py311"},
    "hosting_artifact_key": "huggingface-llm/huggingface-llm-falcon-7b-instruct-bf16/artifacts/inference/v2.0.0/",
    "hosting_prepacked_artifact_key":
        "huggingface-llm/huggingface-llm-falcon-7b-instruct-bf16/artifacts/inference-prepack/v2.0.0/",
    "inference_environment_variables": [
        env_var("SAGEMAKER_PROGRAM", "inference.py"), env_var("SAGEMAKER_SUBMIT_DIRECTORY", "/opt/ml/model/code"),
        env_var("ENDPOINT_SERVER_TIMEOUT", 3600), env_var("MODEL_CACHE_ROOT", "/opt/ml/model"),
        env_var("SAGEMAKER_ENV", "1"), env_var("HF_MODEL_ID", "/opt/ml/model"), env_var("SM_NUM_GPUS", "1"),
        env_var("MAX_INPUT_LENGTH", "1024"), env_var("MAX_TOTAL_TOKENS", "2048"),
        env_var("SAGEMAKER_MODEL_SERVER_WORKERS", 1), env_var("TRAINING_ONLY", "x", scope="algorithm"),
    ],
    "default_inference_instance_type": "ml.g5.2xlarge",
    "supported_inference_instance_types": ["ml.g5.2xlarge", "ml.g5.4xlarge", "ml.g5.12xlarge"],
    "deploy_kwargs": {"model_data_download_timeout": 1200, "container_startup_health_check_timeout": 1500},
    "inference_enable_network_isolation": True,
    "hosting_instance_type_variants": {
        "regional_aliases": {
            "us-east-1": {"gpu_ecr_uri_1": f"763104351884.dkr.ecr.us-east-1.amazonaws.com/{IMAGE}"},
            "af-south-1": {"gpu_ecr_uri_1": f"626614931356.dkr.ecr.af-south-1.amazonaws.com/{IMAGE}"},
        },
        "variants": {
            "g5": {"regional_properties": {"image_uri": "$gpu_ecr_uri_1"}},
            "p4d": {"regional_properties": {"image_uri": "$gpu_ecr_uri_1"}},
            "ml.g5.12xlarge": {"properties": {"environment_variables": {"SM_NUM_GPUS": "4"}}},
        },
    },
}


def test_live_spec_maps_to_a_catalog_entry() -> None:
    model = model_from_spec(recorded_from_live(LIVE_SPEC))
    assert (model.model_id, model.spec_version) == ("huggingface-llm-falcon-7b-instruct-bf16", "4.6.16")
    assert model.artifacts.key.endswith("/artifacts/inference-prepack/v2.0.0/")
    assert model.image.main.repository == "huggingface-pytorch-tgi-inference"
    assert {region: image.account for region, image in model.image.regions.items()} == {
        "af-south-1": "626614931356", "us-east-1": "763104351884"}
    assert model.environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    assert "SAGEMAKER_SUBMIT_DIRECTORY" not in model.environment
    assert "TRAINING_ONLY" not in model.environment
    assert model.environment_for("ml.g5.12xlarge")["SM_NUM_GPUS"] == "4"
    assert (model.download_timeout_seconds, model.startup_timeout_seconds) == (1200, 1500)


def test_same_model_from_either_source_differs_only_where_the_sources_do() -> None:
    from infra.refresh_catalog import DEFAULT_SPECS

    recorded = json.loads(DEFAULT_SPECS.read_text())["models"]["huggingface-llm-falcon-7b-instruct-bf16"]
    from_recorded, from_live = model_from_spec(recorded), model_from_spec(recorded_from_live(LIVE_SPEC))
    assert from_live.environment == from_recorded.environment
    assert from_live.image.main == from_recorded.image.main
    assert from_live.artifacts == from_recorded.artifacts


def recorded_specs() -> list[dict]:
    return [*json.loads(DEFAULT_SPECS.read_text())["models"].values(),
            *json.loads(PINNED_SPECS.read_text())["models"].values()]


@pytest.mark.parametrize("recorded", recorded_specs(), ids=lambda spec: f"{spec['modelId']}-{spec['version']}")
def test_a_recorded_spec_survives_the_round_trip_through_the_live_format(recorded: dict) -> None:
    """The fixtures served to the SDK say what the recorded specs say (network isolation, which the recorded
    data leaves out, is JumpStart's default for these models: on)."""
    live = live_from_recorded(recorded)
    assert recorded_from_live(live) == {**recorded, "networkIsolation": True}
    assert live["inference_enable_network_isolation"] is True


def test_a_manifest_entry_points_at_the_bucket_s_own_key() -> None:
    assert manifest_entry(LIVE_SPEC) == {
        "model_id": "huggingface-llm-falcon-7b-instruct-bf16", "version": "4.6.16", "min_version": "2.189.0",
        "spec_key": "community_models/huggingface-llm-falcon-7b-instruct-bf16/specs_v4.6.16.json"}
