"""Refreshing the catalog from live JumpStart specs: the format conversion and the fetch, over real HTTP."""

from __future__ import annotations

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.live_specs import bucket_url, fetch_recorded_specs, recorded_from_live, spec_keys_newest_first
from infra.refresh_catalog import main as refresh_main
from infra.spec_mapping import model_from_spec

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


def test_versions_are_ordered_by_number_not_by_text() -> None:
    manifest = [
        {"model_id": "a", "version": "4.6.9", "spec_key": "a-4.6.9.json"},
        {"model_id": "a", "version": "4.6.16", "spec_key": "a-4.6.16.json"},
        {"model_id": "a", "version": "4.10.0", "spec_key": "a-4.10.0.json"},
        {"model_id": "b", "version": "1.0.0", "spec_key": "b.json"},
    ]
    assert spec_keys_newest_first(manifest, ["a", "c"]) == {"a": ["a-4.10.0.json", "a-4.6.16.json", "a-4.6.9.json"]}


def test_bucket_urls() -> None:
    assert bucket_url("us-east-1") == "https://jumpstart-cache-prod-us-east-1.s3.us-east-1.amazonaws.com"
    assert bucket_url("cn-north-1").endswith(".amazonaws.com.cn")


@pytest.fixture
def bucket(tmp_path: Path):
    """A stand-in for the public JumpStart bucket: plain files over real HTTP."""
    (tmp_path / "community_models" / "specs").mkdir(parents=True)
    key = "community_models/specs/falcon-7b-instruct-4.6.16.json"
    (tmp_path / key).write_text(json.dumps(LIVE_SPEC))
    # A newer version whose spec names its image only by framework (no regional aliases): not deployable
    # from the spec alone, so the refresh walks past it to 4.6.16.
    newer = {**LIVE_SPEC, "version": "4.7.0", "hosting_instance_type_variants": {}}
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    (tmp_path / "models_manifest.json").write_text(json.dumps([
        {"model_id": LIVE_SPEC["model_id"], "version": "4.6.16", "min_version": "2.0.0", "spec_key": key},
        {"model_id": LIVE_SPEC["model_id"], "version": "4.7.0", "min_version": "2.0.0", "spec_key": "newer.json"},
        {"model_id": LIVE_SPEC["model_id"], "version": "4.1.0", "min_version": "2.0.0", "spec_key": "old.json"},
        {"model_id": "huggingface-llm-other", "version": "1.0.0", "spec_key": "missing.json"},
    ]))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_over_http(bucket: str) -> None:
    specs = fetch_recorded_specs(["huggingface-llm-falcon-7b-instruct-bf16", "absent"], base_url=bucket)
    assert list(specs["models"]) == ["huggingface-llm-falcon-7b-instruct-bf16"]
    assert specs["models"]["huggingface-llm-falcon-7b-instruct-bf16"]["version"] == "4.6.16"
    assert specs["skipped"] == {"huggingface-llm-falcon-7b-instruct-bf16": [
        "4.7.0: its spec carries no container image aliases (instanceAliases), so the image cannot be resolved "
        "without a live lookup"]}
    assert specs["_source"].startswith(f"live JumpStart specs from {bucket}/models_manifest.json")


def test_refresh_live_writes_specs_and_catalog(bucket: str, tmp_path: Path, capsys) -> None:
    specs, catalog = tmp_path / "specs.json", tmp_path / "catalog.json"
    assert refresh_main(["--live", "--base-url", bucket, "--specs", str(specs), "--output", str(catalog)]) == 0
    written = json.loads(catalog.read_text())
    # The bucket holds one model; the pinned complete versions still stand in for the three whose newest
    # recorded specs cannot be deployed.
    assert sorted(written["models"]) == ["huggingface-llm-bilingual-rinna-4b-instruction-ppo-bf16",
                                         "huggingface-llm-falcon-7b-instruct-bf16", "huggingface-llm-mistral-7b",
                                         "huggingface-llm-mistral-7b-instruct"]
    falcon = written["models"]["huggingface-llm-falcon-7b-instruct-bf16"]
    assert falcon["spec_version"] == "4.6.16"
    assert falcon["pin_note"].startswith("4.6.16, the newest live version with complete hosting data; newer "
                                         "versions skipped: 4.7.0: its spec carries no container image aliases")
    assert "newer versions skipped: 4.7.0" in capsys.readouterr().out
    assert written["unavailable"]["huggingface-llm-falcon-40b-bf16"] == "absent from the live spec data"
    assert refresh_main(["--specs", str(specs), "--output", str(catalog), "--check"]) == 0
