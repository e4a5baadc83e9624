"""The spec-to-catalog mapping, on the recorded JumpStart spec data (no SDK, no network)."""

from __future__ import annotations

import copy
import json

import pytest

from infra.catalog import RegionImage, is_nvme_instance, load_catalog
from infra.refresh_catalog import DEFAULT_SPECS, PINNED_SPECS
from infra.refresh_catalog import main as refresh_main
from infra.spec_mapping import BLOG_MODELS, SpecError, catalog_from_specs, model_from_spec

SPECS = json.loads(DEFAULT_SPECS.read_text())
PINNED = json.loads(PINNED_SPECS.read_text())


def spec(model_id: str) -> dict:
    return copy.deepcopy(SPECS["models"][model_id])


def test_default_model_maps_to_the_seed_facts() -> None:
    model = model_from_spec(spec("huggingface-llm-falcon-7b-instruct-bf16"))
    assert model.spec_version == "4.6.16"
    assert model.default_instance_type == "ml.g5.2xlarge"
    assert model.instance_types == ("ml.g5.2xlarge", "ml.g5.4xlarge", "ml.g5.8xlarge", "ml.g5.16xlarge")
    assert model.artifacts.key == ("huggingface-llm/huggingface-llm-falcon-7b-instruct-bf16/artifacts/"
                                   "inference-prepack/v2.0.0/")
    assert not model.artifacts.is_archive
    assert model.container_family == "tgi"
    assert model.image.regions["us-east-1"] == RegionImage(
        account="763104351884", repository="huggingface-pytorch-tgi-inference",
        tag="2.4.0-tgi2.4.0-gpu-py311-cu124-ubuntu22.04")
    assert model.image.regions["cn-north-1"].account == "727897471807"
    assert {(image.repository, image.tag) for image in model.image.regions.values()} == {
        ("huggingface-pytorch-tgi-inference", "2.4.0-tgi2.4.0-gpu-py311-cu124-ubuntu22.04")}
    assert model.container_version == "2.4.0"
    assert model.chat_format == "falcon-instruct"
    assert (model.max_input_tokens, model.max_total_tokens) == (1024, 2048)
    assert model.network_isolation


def test_environment_keeps_only_what_the_container_needs() -> None:
    model = model_from_spec(spec("huggingface-llm-falcon-7b-instruct-bf16"))
    assert set(model.environment) == {"SAGEMAKER_PROGRAM", "ENDPOINT_SERVER_TIMEOUT", "MODEL_CACHE_ROOT",
                                      "SAGEMAKER_ENV", "HF_MODEL_ID", "SM_NUM_GPUS", "MAX_INPUT_LENGTH",
                                      "MAX_TOTAL_TOKENS", "SAGEMAKER_MODEL_SERVER_WORKERS"}
    assert all(isinstance(value, str) for value in model.environment.values())
    assert model.environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"  # an integer in the spec


def test_instance_overrides_only_for_supported_instances() -> None:
    model = model_from_spec(spec("huggingface-llm-falcon-40b-bf16"))
    assert model.environment["SM_NUM_GPUS"] == "4"
    assert model.environment_for("ml.g5.48xlarge")["SM_NUM_GPUS"] == "8"
    assert model.environment_for("ml.g5.12xlarge")["MAX_BATCH_TOTAL_TOKENS"] == "2048"
    assert "ml.g4dn.12xlarge" not in model.instance_environment  # not a supported instance type
    assert model.container_version == "1.4.0"
    assert model.chat_format is None  # a base model


def test_archive_artifact_and_prepacked_preference() -> None:
    model = model_from_spec(spec("huggingface-llm-falcon-180b-bf16"))
    assert model.artifacts.is_archive
    assert model.artifacts.key == ("huggingface-infer/prepack/v1.2.0/"
                                   "infer-prepack-huggingface-llm-falcon-180b-bf16.tar.gz")
    raw = spec("huggingface-llm-falcon-180b-bf16")
    del raw["prepackedArtifactKey"]
    assert model_from_spec(raw).artifacts.key == raw["artifactKey"]


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda s: s.pop("instanceAliases"), "no container image aliases"),
    (lambda s: s["instanceAliases"][0]["aliases"].clear(), "no gpu_ecr_uri_1 image alias for regions af-south-1"),
    (lambda s: s["environment"].pop("MAX_TOTAL_TOKENS"), "lacks MAX_TOTAL_TOKENS"),
    (lambda s: s["instanceAliases"][1]["aliases"].update(gpu_ecr_uri_1="1.dkr.ecr.x.amazonaws.com/other:1"),
     r"not all of one known container family \(huggingface-pytorch-tgi-inference \(tgi\), djl-inference \(lmi\)\): "
     r"\['huggingface-pytorch-tgi-inference', 'other'\]"),
    (lambda s: s["instanceAliases"][1]["aliases"].update(gpu_ecr_uri_1="no-repository"),
     "image 'no-repository' is not <registry>/<repository>:<tag>"),
])
def test_specs_missing_what_a_deployment_needs_are_refused(mutate, message: str) -> None:
    raw = spec("huggingface-llm-falcon-7b-instruct-bf16")
    mutate(raw)
    with pytest.raises(SpecError, match=message):
        model_from_spec(raw)


def test_without_pinned_versions_the_catalog_says_why_some_are_missing() -> None:
    catalog = catalog_from_specs(SPECS)
    assert set(catalog.models) | set(catalog.unavailable) == set(BLOG_MODELS)
    assert set(catalog.unavailable) == {"huggingface-llm-mistral-7b", "huggingface-llm-mistral-7b-instruct",
                                        "huggingface-llm-bilingual-rinna-4b-instruction-ppo-bf16"}
    assert "no container image aliases" in catalog.unavailable["huggingface-llm-mistral-7b"]


def test_the_pinned_complete_versions_cover_all_ten_blog_models() -> None:
    catalog = catalog_from_specs(SPECS, PINNED)
    assert sorted(catalog.models) == sorted(BLOG_MODELS)
    assert catalog.unavailable == {}
    versions = {model_id: (model.spec_version, model.container_family) for model_id, model in catalog.models.items()}
    assert versions["huggingface-llm-mistral-7b"] == ("2.9.0", "lmi")
    assert versions["huggingface-llm-mistral-7b-instruct"] == ("3.5.0", "lmi")
    assert versions["huggingface-llm-bilingual-rinna-4b-instruction-ppo-bf16"] == ("2.2.1", "tgi")
    assert {family for _, family in versions.values()} == {"tgi", "lmi"}
    mistral = catalog.models["huggingface-llm-mistral-7b-instruct"]
    assert mistral.pin_note is not None
    assert "(3.12.0) cannot be deployed: its spec carries no container image aliases" in mistral.pin_note
    assert catalog.models["huggingface-llm-falcon-7b-instruct-bf16"].pin_note is None  # its newest spec deploys


def test_an_lmi_model_carries_its_per_region_images_and_its_unverified_token_limits() -> None:
    model = catalog_from_specs(SPECS, PINNED).models["huggingface-llm-mistral-7b-instruct"]
    lmi = RegionImage(account="763104351884", repository="djl-inference", tag="0.28.0-lmi10.0.0-cu124")
    assert model.image.regions["us-east-1"] == lmi
    assert model.image.main == RegionImage(account="", repository="djl-inference", tag="0.28.0-lmi10.0.0-cu124")
    older = {region for region, image in model.image.regions.items() if image.tag != lmi.tag}
    assert older == {"ap-northeast-3", "ap-southeast-3"}  # the recorded data maps both to DJL DeepSpeed 0.27
    assert model.image.regions["ap-northeast-3"] == RegionImage(
        account="364406365360", repository="djl-inference", tag="0.27.0-deepspeed0.12.6-cu121")
    assert len(model.image.regions) == 24
    assert (model.max_input_tokens, model.max_total_tokens) == (3072, 4096)
    assert "HF_MODEL_ID" not in model.environment  # nothing TGI-specific
    assert model.environment_for("ml.p4d.24xlarge")["OPTION_TENSOR_PARALLEL_DEGREE"] == "1"  # LMI's own knob
    # The window the function assumes is told to the container (DJL reads OPTION_<KEY> as option.<key>).
    assert model.environment_for("ml.g5.12xlarge") == {**model.environment, "OPTION_MAX_MODEL_LEN": "4096"}
    assert model.chat_format == "mistral-instruct"


def test_an_lmi_spec_needs_token_limits_recorded_for_it() -> None:
    raw = copy.deepcopy(PINNED["models"]["huggingface-llm-mistral-7b"])
    raw["modelId"] = "some-other-lmi-model"
    with pytest.raises(SpecError, match=r"some-other-lmi-model runs on lmi, whose specs carry no token limits: "
                                        r"give them in spec_mapping\.TOKEN_LIMITS_NOT_IN_SPECS"):
        model_from_spec(raw)


def test_pinned_catalog_is_what_the_specs_give(capsys) -> None:
    assert refresh_main(["--check"]) == 0, capsys.readouterr().err
    assert load_catalog().to_json() == catalog_from_specs(SPECS, PINNED).to_json()


def test_refresh_writes_the_catalog(tmp_path) -> None:
    output = tmp_path / "catalog.json"
    assert refresh_main(["--output", str(output)]) == 0
    assert json.loads(output.read_text())["models"].keys() == load_catalog().models.keys()
    output.write_text("{}")
    assert refresh_main(["--output", str(output), "--check"]) == 1


@pytest.mark.parametrize(("instance_type", "nvme"), [("ml.g5.2xlarge", True), ("ml.p4de.24xlarge", True),
                                                     ("ml.m5.large", False), ("ml.c5.xlarge", False)])
def test_nvme_instances(instance_type: str, nvme: bool) -> None:
    assert is_nvme_instance(instance_type) is nvme


def test_every_catalog_instance_type_has_local_nvme() -> None:
    for model in load_catalog().models.values():
        assert all(is_nvme_instance(t) for t in model.instance_types), model.model_id
