"""Quality gates on the real synthesized output: cdk-nag, cfn-lint, checkov, and the real bundle."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import aws_iam as iam

from infra.catalog import load_catalog
from tests import ROOT
from tests.helpers.cdk_app import build_app

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "public-url-cors-autoscaling": {"auth": "none", "cors_origins": ["https://app.example.com"], "max_instances": 3},
    "falcon-180b-archive": {"model": "huggingface-llm-falcon-180b-bf16"},
    "api-keys": {"auth": "api_key", "cors_origins": ["https://app.example.com"]},
    "falcon-40b-g5-12xlarge": {"model": "huggingface-llm-falcon-40b-instruct-bf16", "instance_type": "ml.g5.12xlarge"},
    "mistral-7b-instruct-lmi": {"model": "huggingface-llm-mistral-7b-instruct"},
    "scale-to-zero": {"scale_to_zero": True, "max_instances": 2},
    "two-models-one-at-zero": {"models": [{"id": "huggingface-llm-falcon-7b-instruct-bf16", "max_copies": 2},
                                          {"id": "huggingface-llm-mistral-7b-instruct", "scale_to_zero": True}],
                               "max_instances": 3, "auth": "api_key"},
    "three-models-g5-12xlarge": {
        "models": "huggingface-llm-falcon-40b-instruct-bf16,huggingface-llm-mistral-7b-instruct,"
                  "huggingface-llm-mistral-7b",
        "instance_type": "ml.g5.12xlarge", "max_instances": 2},
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def synthesized(request, tmp_path_factory) -> Path:
    """A cloud assembly on disk, cdk-nag included (synth raises if a finding is not acknowledged)."""
    outdir = tmp_path_factory.mktemp(request.param)
    app, _, _ = build_app(outdir=str(outdir), **VARIANTS[request.param])
    app.synth()
    return outdir


def test_cdk_nag_passes_and_reports_nothing_unacknowledged(synthesized: Path) -> None:
    report = json.loads((synthesized / "validation-report.json").read_text())
    assert all(r["conclusion"] == "success" for r in report.get("pluginReports", [])), report


def test_cdk_nag_is_really_checking() -> None:
    app, endpoint, _ = build_app()
    endpoint.role.add_to_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    with pytest.raises(Exception, match="AwsSolutions-IAM5"):
        app.synth()


def test_every_acknowledgment_has_a_specific_reason() -> None:
    from infra.nag import endpoint_findings, streaming_findings
    from infra.settings import DeploymentSettings
    from tests.helpers.cdk_app import cdk_context

    findings = endpoint_findings(DeploymentSettings.from_context(cdk_context().get))
    assert findings
    for rule in findings:
        assert rule.startswith("AwsSolutions-IAM5[Resource::"), rule
    keyed = streaming_findings(DeploymentSettings.from_context(cdk_context(auth="api_key").get))
    assert list(keyed) == ["AwsSolutions-SMG4", "AwsSolutions-SNS2"]
    assert streaming_findings(DeploymentSettings.from_context(cdk_context().get)) == {}
    three_models = cdk_context(**VARIANTS["three-models-g5-12xlarge"])
    several = endpoint_findings(DeploymentSettings.from_context(three_models.get))
    assert len(several) == len(findings) + 2  # each model's artifacts, by name
    reasons = [*findings.values(), *keyed.values()]
    assert all(len(reason) > 60 for reason in reasons), reasons
    assert len(set(reasons)) == len(reasons), "reasons are copy-pasted"
    assert len(set(several.values())) == len(several), "reasons are copy-pasted"


def test_cfn_lint_finds_nothing(synthesized: Path) -> None:
    templates = sorted(synthesized.glob("*.template.json"))
    assert len(templates) == 2
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "cfn-lint"), *map(str, templates)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_catalog_model_s_endpoint_template_is_cfn_lint_clean(tmp_path: Path) -> None:
    """The ten models differ in the endpoint stack (image mapping, environment, artifacts, instance type)."""
    templates = []
    for model_id in sorted(load_catalog().models):
        app, endpoint, _ = build_app(outdir=str(tmp_path / model_id), model=model_id)
        app.synth()
        templates.append(tmp_path / model_id / endpoint.template_file)
    assert len(templates) == 10
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "cfn-lint"), *map(str, templates)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_passes_with_every_skip_justified(synthesized: Path) -> None:
    assert CHECKOV.exists(), "checkov is missing: `make test` installs it into .venv-checkov/"
    result = subprocess.run(
        [str(CHECKOV), "--framework", "cloudformation", "--skip-download", "--quiet", "-o", "json",
         "-d", str(synthesized)], capture_output=True, text=True, timeout=600)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    for report in reports:
        summary = report["summary"]
        assert summary["failed"] == 0, report["results"].get("failed_checks")
        assert summary["parsing_errors"] == 0
        assert summary["passed"] > 20
        for skipped in report["results"].get("skipped_checks", []):
            assert len(skipped["check_result"].get("suppress_comment", "")) > 40, skipped["check_id"]


def test_real_local_bundling_builds_an_arm64_python_bundle(tmp_path: Path) -> None:
    """No Docker: pip fetches wheels for the runtime's Python and arm64; only what the function imports."""
    app, _, streaming = build_app(bundle=True, outdir=str(tmp_path))
    assembly = app.synth()
    template = assembly.get_stack_by_name(streaming.stack_name).template
    (function,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    asset = tmp_path / f"asset.{function['Properties']['Code']['S3Key'].removesuffix('.zip')}"
    assert (asset / "llm_stream" / "app.py").exists()
    assert (asset / "llm_stream" / "tokens.py").exists()
    assert (asset / "llm_stream" / "static" / "index.html").exists()  # the browser page
    run_sh = asset / "run.sh"
    assert run_sh.stat().st_mode & stat.S_IXUSR
    assert b"\r\n" not in run_sh.read_bytes()
    assert (asset / "starlette").is_dir()
    assert (asset / "pydantic").is_dir()
    assert (asset / "uvicorn").is_dir()
    (core,) = (asset / "pydantic_core").glob("_pydantic_core.*.so")
    assert core.name == "_pydantic_core.cpython-314-aarch64-linux-gnu.so"
    for absent in ("boto3", "botocore", "sagemaker", "fastapi", "__pycache__"):
        assert not (asset / absent).exists(), f"{absent} must not be in the bundle"
    assert not list(asset.rglob("__pycache__"))
