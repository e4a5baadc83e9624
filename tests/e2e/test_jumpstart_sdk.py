"""JumpStart's own resolution (the `sagemaker` SDK v2 in .venv-sagemaker) against the catalog and the template.

The SDK reads a JumpStart bucket served by moto's S3 (AWS_ENDPOINT_URL_S3) exactly as it reads the public
one: the manifest, then each version's spec. The specs there are the recorded ones in JumpStart's live
format (``live_from_recorded``), so these tests prove the plumbing, from the SDK's resolution to the
template's container and back to the pins; whether the recorded data matches JumpStart's today only a live
refresh (`make refresh-catalog-live`, with network) can say.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from infra.catalog import PROJECT_ENVIRONMENT, load_catalog
from infra.jumpstart_sdk import SdkError, catalog_container, resolve, url_suffix
from infra.refresh_catalog import DEFAULT_SPECS, PINNED_SPECS
from infra.refresh_catalog import main as refresh_main
from tests.helpers.cdk_app import templates
from tests.helpers.jumpstart_bucket import MANIFEST, live_from_recorded, manifest_entry

pytestmark = pytest.mark.clients

REGIONS = ("us-east-1", "eu-west-1")
FALCON = "huggingface-llm-falcon-7b-instruct-bf16"
MISTRAL = "huggingface-llm-mistral-7b-instruct"


def recorded_pins() -> dict[str, dict[str, Any]]:
    """The recorded spec of each catalog model at its pinned version."""
    catalog = load_catalog()
    recorded = {**json.loads(PINNED_SPECS.read_text())["models"]}
    for model_id, spec in json.loads(DEFAULT_SPECS.read_text())["models"].items():
        recorded.setdefault(model_id, spec)
        if spec["version"] == catalog.models[model_id].spec_version:
            recorded[model_id] = spec
    return {model_id: recorded[model_id] for model_id in catalog.models}


class JumpStartBucket:
    """JumpStart's bucket in each region, in moto's S3: publicly readable, as JumpStart's are (the SDK's
    requests are unsigned)."""

    def __init__(self, moto_url: str) -> None:
        self.s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url)
        self.specs: list[tuple[dict[str, Any], str]] = []

    def add(self, spec: dict[str, Any], min_sdk_version: str = "2.189.0") -> None:
        self.specs.append((spec, min_sdk_version))

    def publish(self) -> None:
        for region in REGIONS:
            bucket = f"jumpstart-cache-prod-{region}"
            self.s3.create_bucket(Bucket=bucket, **({} if region == "us-east-1" else {
                "CreateBucketConfiguration": {"LocationConstraint": region}}))
            manifest = [manifest_entry(spec, min_sdk) for spec, min_sdk in self.specs]
            self.s3.put_object(Bucket=bucket, Key=MANIFEST, Body=json.dumps(manifest).encode(), ACL="public-read")
            for spec, entry in zip((spec for spec, _ in self.specs), manifest, strict=True):
                self.s3.put_object(Bucket=bucket, Key=entry["spec_key"], Body=json.dumps(spec).encode(),
                                   ACL="public-read")


@pytest.fixture
def bucket(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> JumpStartBucket:
    """Every pinned version, published; tests add versions before ``publish()``."""
    httpx.post(f"{moto_server}/moto-api/reset")
    for key, value in {"AWS_ENDPOINT_URL_S3": moto_server, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    jumpstart = JumpStartBucket(moto_server)
    for spec in recorded_pins().values():
        jumpstart.add(live_from_recorded(spec))
    return jumpstart


@pytest.fixture
def spec_files(tmp_path: Path) -> dict[str, Path]:
    """Copies of the recorded specs and the catalog, for the refresh to read and (with --update) write."""
    paths = {"specs": tmp_path / "specs.json", "pinned": tmp_path / "pinned.json", "output": tmp_path / "catalog.json"}
    shutil.copy(DEFAULT_SPECS, paths["specs"])
    shutil.copy(PINNED_SPECS, paths["pinned"])
    assert refresh_main(arguments(paths)) == 0
    return paths


def arguments(paths: dict[str, Path], *extra: str) -> list[str]:
    return [*extra, *(argument for name, path in paths.items() for argument in (f"--{name}", str(path)))]


def newer_falcon(version: str, **changes: Any) -> dict[str, Any]:
    spec = live_from_recorded(recorded_pins()[FALCON])
    return {**copy.deepcopy(spec), "version": version, **changes}


# -- the template's container is the SDK's ---------------------------------------------------------------


def resolve_in_region(node: Any, region: str, mappings: dict[str, Any]) -> Any:
    """A template value with its mapping look-ups and pseudo parameters resolved for ``region``."""
    if isinstance(node, dict) and len(node) == 1:
        (function, value), = node.items()
        if function == "Fn::Join":
            return value[0].join(str(resolve_in_region(part, region, mappings)) for part in value[1])
        if function == "Fn::FindInMap":
            name, first, second = (resolve_in_region(part, region, mappings) for part in value)
            return mappings[name][first][second]
        if function == "Ref" and value.startswith("AWS::"):
            return {"AWS::Region": region, "AWS::URLSuffix": url_suffix(region), "AWS::Partition": "aws"}[value]
    if isinstance(node, dict):
        return {key: resolve_in_region(value, region, mappings) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve_in_region(value, region, mappings) for value in node]
    return node


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("model_id", [FALCON, MISTRAL])
def test_the_template_s_container_is_what_the_sdk_s_prepare_container_def_builds(
        bucket: JumpStartBucket, model_id: str, region: str) -> None:
    bucket.publish()
    model = load_catalog().models[model_id]
    answer = resolve(region, [{"model_id": model_id, "pinned": model.spec_version,
                               "instance_type": model.default_instance_type}])
    sdk = answer["models"][model_id]["pinned"]
    assert sdk["ok"], sdk
    endpoint, _ = templates(model=model_id)
    template = endpoint.to_json()
    (resource,) = [resource for resource in template["Resources"].values()
                   if resource["Type"] == "AWS::SageMaker::Model"]
    container = resolve_in_region(resource["Properties"]["PrimaryContainer"], region, template["Mappings"])
    ours = {key: value for key, value in container.items() if key in ("Image", "Environment", "ModelDataSource",
                                                                       "ModelDataUrl")}
    # The project's own additions are the only difference: LMI's window (the function's caps follow it).
    assert set(ours["Environment"]) - set(sdk["container"]["Environment"]) == (
        {"OPTION_MAX_MODEL_LEN"} if model.container_family == "lmi" else set())
    ours["Environment"] = {name: value for name, value in ours["Environment"].items()
                           if name not in PROJECT_ENVIRONMENT}
    assert ours == sdk["container"]
    assert resource["Properties"]["EnableNetworkIsolation"] is sdk["network_isolation"]
    # What the refresh compares the SDK with is the template's container, not a copy of its logic.
    assert catalog_container(model, region, model.default_instance_type) == container | {
        "Environment": model.environment_for(model.default_instance_type)}


# -- make refresh-catalog-live: report, and move a pin only when asked -------------------------------------


def test_the_live_report_checks_every_pin_and_lists_newer_versions_without_changing_anything(
        bucket: JumpStartBucket, spec_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bucket.add(newer_falcon("4.6.17"))
    bucket.add(newer_falcon("4.6.18", inference_vulnerable=True, inference_vulnerabilities=["CVE-2026-0001"]))
    bucket.add(newer_falcon("9.0.0"), min_sdk_version="3.0.0")
    # Mistral's newest recorded spec names its image only by framework, as JumpStart's newer specs do.
    mistral_newest = live_from_recorded(json.loads(DEFAULT_SPECS.read_text())["models"][MISTRAL])
    bucket.add({**mistral_newest, "hosting_ecr_specs": {"framework": "djl-lmi", "framework_version": "0.28.0"}})
    bucket.publish()
    before = {name: path.read_bytes() for name, path in spec_files.items()}
    status = refresh_main(arguments(spec_files, "--live"))
    out = capsys.readouterr().out
    assert status == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("JumpStart's resolution by the sagemaker SDK 2.257.7 in us-east-1 (10 pinned models")
    catalog = load_catalog()
    for model_id, model in catalog.models.items():
        assert f"{model_id} {model.spec_version}: agrees with the SDK (image, model data, environment)" in lines
    falcon = lines.index(f"{FALCON} 4.6.16: agrees with the SDK (image, model data, environment)")
    assert lines[falcon + 1:falcon + 4] == [
        "    newer 9.0.0: not resolvable: needs sagemaker 3.0.0 or newer (this is 2.257.7)",
        "    newer 4.6.18: not resolvable: VulnerableJumpStartModelError: Version '4.6.18' of JumpStart model "
        f"'{FALCON}' has at least 1 vulnerable dependency in the inference script. We recommend that you specify a "
        "more recent model version or choose a different model. To access the latest models and model versions, be "
        "sure to upgrade to the latest version of the SageMaker Python SDK. List of vulnerabilities: CVE-2026-0001",
        "    newer 4.6.17: the SDK resolves it"]
    mistral = lines.index(f"{MISTRAL} 3.5.0: agrees with the SDK (image, model data, environment)")
    assert lines[mistral + 1].startswith(
        "    newer 3.12.0: not resolvable: ValueError: No inference ECR configuration found for JumpStart model ID "
        f"'{MISTRAL}' with {catalog.models[MISTRAL].default_instance_type} instance type in us-east-1.")
    assert lines[mistral + 1].endswith(
        "(its spec names the image only by framework, djl-lmi 0.28.0; the SDK's framework table gives "
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.28.0-lmi10.0.0-cu124, which JumpStartModel "
        "no longer uses, so no pin moves to it)")
    assert lines[-1] == ("every pin agrees with JumpStart's own resolution; nothing was changed (--update MODEL "
                         "moves a pin)")
    assert {name: path.read_bytes() for name, path in spec_files.items()} == before


def test_a_pin_whose_container_changed_upstream_fails_the_report(
        bucket: JumpStartBucket, spec_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bucket.specs = [(spec, min_sdk) for spec, min_sdk in bucket.specs if spec["model_id"] != FALCON]
    changed = newer_falcon("4.6.16")
    aliases = changed["hosting_instance_type_variants"]["regional_aliases"]
    aliases["us-east-1"] = {alias: uri.replace("-ubuntu22.04", "-ubuntu22.04-v2.2") for alias, uri in
                            aliases["us-east-1"].items()}
    bucket.add(changed)
    bucket.publish()
    assert refresh_main(arguments(spec_files, "--live")) == 1
    captured = capsys.readouterr()
    assert f"{FALCON} 4.6.16: DISAGREES" in captured.out
    assert ('    Image: catalog "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:2.4.0-'
            'tgi2.4.0-gpu-py311-cu124-ubuntu22.04", SDK "763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-'
            'pytorch-tgi-inference:2.4.0-tgi2.4.0-gpu-py311-cu124-ubuntu22.04-v2.2"') in captured.out
    assert f"1 pinned models disagree with JumpStart's own resolution: {FALCON}" in captured.err


def test_update_moves_one_pin_to_the_newest_version_the_sdk_resolves(
        bucket: JumpStartBucket, spec_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    newer = newer_falcon("4.6.17", hosting_prepacked_artifact_key=(
        "huggingface-llm/huggingface-llm-falcon-7b-instruct-bf16/artifacts/inference-prepack/v2.0.1/"))
    bucket.add(newer)
    bucket.add(newer_falcon("4.6.18", deprecated=True, deprecated_message="withdrawn"))
    bucket.publish()
    others = {model_id: model for model_id, model in json.loads(spec_files["output"].read_text())["models"].items()
              if model_id != FALCON}
    assert refresh_main(arguments(spec_files, "--live", "--update", FALCON)) == 0
    assert (f"{FALCON}: pin moved from 4.6.16 to 4.6.17 (the SDK's container and the catalog's agree in us-east-1); "
            "specs.json updated") in capsys.readouterr().out
    written = json.loads(spec_files["output"].read_text())["models"]
    assert written[FALCON]["spec_version"] == "4.6.17"
    assert written[FALCON]["artifacts"]["key"].endswith("/inference-prepack/v2.0.1/")
    assert {model_id: model for model_id, model in written.items() if model_id != FALCON} == others
    assert refresh_main(arguments(spec_files, "--check")) == 0


def test_without_the_sdk_s_environment_the_refresh_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(SdkError, match=r"\.venv-sagemaker/bin/python is missing: make refresh-catalog-live installs"):
        resolve("us-east-1", [], sdk_python=tmp_path / ".venv-sagemaker" / "bin" / "python")


def test_update_without_live_or_with_an_unknown_model_is_a_usage_error(
        spec_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in ((["--update", FALCON], "--update and --to need --live"),
                          (["--live", "--update", "gpt-5"], "--update 'gpt-5' is not in the catalog; allowed: ")):
        with pytest.raises(SystemExit) as exited:
            refresh_main(arguments(spec_files, *argv))
        assert exited.value.code == 2
        assert message in capsys.readouterr().err


def test_update_refuses_a_version_the_sdk_cannot_resolve_and_keeps_the_pin(
        bucket: JumpStartBucket, spec_files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    mistral_newest = live_from_recorded(json.loads(DEFAULT_SPECS.read_text())["models"][MISTRAL])
    bucket.add(mistral_newest)
    bucket.publish()
    before = {name: path.read_bytes() for name, path in spec_files.items()}
    assert refresh_main(arguments(spec_files, "--live", "--update", MISTRAL, "--to", "3.12.0")) == 1
    assert f"{MISTRAL} 3.12.0: the SDK cannot resolve it: ValueError: No inference ECR" in capsys.readouterr().err
    assert refresh_main(arguments(spec_files, "--live", "--update", MISTRAL)) == 0
    assert f"{MISTRAL}: no version newer than 3.5.0 that the SDK resolves; pin unchanged" in capsys.readouterr().out
    assert {name: path.read_bytes() for name, path in spec_files.items()} == before
