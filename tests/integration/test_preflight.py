"""`make preflight` against an account over HTTP, with the real boto3 client.

STS, CloudFormation and SSM are moto's server (started by the tests); Lambda's account settings, layer
and concurrency reads and Service Quotas are a local fake whose answers are checked against botocore's
service model (moto serves neither: its Lambda has no GetAccountSettings or GetLayerVersionByArn, its
Service Quotas only VPC quotas). What the data looks like in a real account is confirmed only by a
first deployment (docs/deploying.md, First deployment).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from infra import preflight, web_adapter
from infra.cdk_context import deployment_settings
from tests import ROOT
from tests.helpers.cdk_app import templates
from tests.helpers.fake_aws_apis import FakeAwsApis, ShapeMismatch, check_output, quota, serve

pytestmark = pytest.mark.slow

REGION = "us-east-1"
LAYER_ARN = web_adapter.layer_arn("aws", REGION, web_adapter.LAYER_VERSIONS[REGION])
G5_2XLARGE = "ml.g5.2xlarge for endpoint usage"
FUNCTION_NAME = "llm-stream-streaming-Function76856677-AbCdEf012345"


@dataclass
class Account:
    fake: FakeAwsApis
    moto_url: str

    def create_stack(self, name: str, outputs: dict[str, str], resources: dict[str, Any] | None = None,
                     region: str = REGION) -> None:
        template = {"Resources": resources or {"Marker": {"Type": "AWS::SSM::Parameter", "Properties": {
            "Type": "String", "Value": "x", "Name": f"/test/{name}"}}},
                    "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
        cloudformation = boto3.client("cloudformation", region_name=region)
        cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(template))

    def bootstrap(self, version: int = 28, region: str = REGION) -> None:
        """The CDK bootstrap stack as far as the checks read it: its status, output and version parameter."""
        self.create_stack(preflight.BOOTSTRAP_STACK, {"BootstrapVersion": str(version)}, region=region, resources={
            "CdkBootstrapVersion": {"Type": "AWS::SSM::Parameter", "Properties": {
                "Type": "String", "Name": preflight.BOOTSTRAP_VERSION_PARAMETER, "Value": str(version)}}})


@pytest.fixture
def account(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Account]:
    """A healthy account: bootstrapped, the layer published, 1000 concurrency, a g5.2xlarge quota of 2
    (on the second page of applied quotas)."""
    httpx.post(f"{moto_server}/moto-api/reset")
    fake = FakeAwsApis()
    fake.add_layer(LAYER_ARN)
    fake.applied_quotas = [quota("ml.g5.xlarge for endpoint usage", "L-1216C47A", 1),
                           quota("ml.g5.12xlarge for endpoint usage", "L-65C4BD00", 0),
                           quota(G5_2XLARGE, "L-9614C779", 2)]
    with serve(fake):
        for key, value in aws_environment(moto_server, fake.url).items():
            monkeypatch.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
            monkeypatch.delenv(key, raising=False)
        state = Account(fake, moto_server)
        state.bootstrap()
        yield state


def aws_environment(moto_url: str, fake_url: str) -> dict[str, str]:
    return {"AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_STS": moto_url, "AWS_ENDPOINT_URL_CLOUDFORMATION": moto_url,
            "AWS_ENDPOINT_URL_SSM": moto_url, "AWS_ENDPOINT_URL_LAMBDA": fake_url,
            "AWS_ENDPOINT_URL_SERVICE_QUOTAS": fake_url}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, str], str]:
    """Exit status, each check's printed line (and its remedy line, if any) by check name, stderr."""
    status = preflight.main(list(argv))
    captured = capsys.readouterr()
    lines: dict[str, str] = {}
    last = ""
    for line in captured.out.splitlines():
        words = line.split()
        if len(words) > 2 and words[0] in ("ok", "FAIL") and words[1] in preflight.CHECK_NAMES:
            last = words[1]
            lines[last] = line
        elif last and line.strip().startswith("->"):
            lines[last] += "\n" + line
    return status, lines, captured.err


def test_a_healthy_account_passes_every_check(account: Account, capsys) -> None:
    status, lines, err = run(capsys)
    assert status == 0, (lines, err)
    assert list(lines) == list(preflight.CHECK_NAMES)
    assert all(line.split()[0] == "ok" for line in lines.values())
    assert f"{LAYER_ARN} resolves" in lines["web-adapter-layer"]
    assert "'ml.g5.2xlarge for endpoint usage' is 2 (max_instances 1" in lines["sagemaker-quota"]
    assert "reserving 10 leaves 990 unreserved" in lines["lambda-concurrency"]
    assert "bootstrap version 28" in lines["bootstrap"]
    assert "resolves to manylinux2014_aarch64 wheels for python3.14" in lines["function-bundle"]
    # The quota was on the second page: the paginator followed NextToken; the defaults were not needed.
    assert account.fake.calls.count("ListServiceQuotas") == 2
    assert "ListAWSDefaultServiceQuotas" not in account.fake.calls


def test_make_preflight_reads_the_same_context_as_cdk_and_exits_non_zero_on_a_failure(account: Account) -> None:
    result = subprocess.run(["make", "--no-print-directory", "preflight",
                             "CDK_ARGS=-c max_instances=3 --require-approval never", "SKIP_CHECKS=function-bundle"],
                            capture_output=True, text=True, cwd=ROOT, env={**os.environ}, timeout=120)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "FAIL  sagemaker-quota" in result.stdout
    assert "max_instances 3" in result.stdout.splitlines()[0]
    assert "ok    function-bundle     skipped (--skip)" in result.stdout
    assert "1 of 6 checks failed (sagemaker-quota); nothing was deployed" in result.stderr


def test_a_quota_below_max_instances_fails_with_the_request_to_make(account: Account, capsys) -> None:
    status, lines, _ = run(capsys, "-c", "min_instances=1", "-c", "max_instances=3")
    assert status == 1
    assert lines["sagemaker-quota"].startswith("  FAIL")
    assert "'ml.g5.2xlarge for endpoint usage' is 2; the endpoint may run 3 (max_instances)" in lines["sagemaker-quota"]
    assert ("aws service-quotas request-service-quota-increase --service-code sagemaker --quota-code L-9614C779 "
            "--desired-value 3 --region us-east-1") in lines["sagemaker-quota"]
    assert all(line.split()[0] == "ok" for name, line in lines.items() if name != "sagemaker-quota")


def test_several_models_are_checked_against_max_instances_and_every_model_s_region(account: Account, capsys) -> None:
    """Falcon up to two copies, Mistral one: three one-GPU instances at most; the endpoint may run max_instances
    (room for an update's new copies), which the quota must allow."""
    models = ('[{"id": "huggingface-llm-falcon-7b-instruct-bf16", "max_copies": 2}, '
              '"huggingface-llm-mistral-7b-instruct"]')
    status, lines, _ = run(capsys, "-c", f"models={models}", "-c", "max_instances=4")
    assert status == 1
    assert ("'ml.g5.2xlarge for endpoint usage' is 2; the endpoint may run 4 (max_instances, 2 models' copies "
            "fill 3 at most)" in lines["sagemaker-quota"])
    assert "--desired-value 4 " in lines["sagemaker-quota"]
    # Each model's image must be in the region, the one Falcon and the Mistral's.
    assert ("huggingface-llm-falcon-7b-instruct-bf16's, huggingface-llm-mistral-7b-instruct's image"
            in lines["region"])
    account.fake.applied_quotas = [quota(G5_2XLARGE, "L-9614C779", 4)]
    status, lines, _ = run(capsys, "-c", f"models={models}", "-c", "max_instances=4")
    assert status == 0, lines
    assert "'ml.g5.2xlarge for endpoint usage' is 4 (max_instances 4, 2 models' copies fill 3" in lines[
        "sagemaker-quota"]


def test_an_unadjusted_quota_is_read_from_the_aws_defaults(account: Account, capsys) -> None:
    account.fake.applied_quotas = []
    account.fake.default_quotas = [quota(G5_2XLARGE, "L-9614C779", 0)]
    status, lines, _ = run(capsys)
    assert status == 1
    assert "'ml.g5.2xlarge for endpoint usage' is 0" in lines["sagemaker-quota"]
    assert account.fake.calls[-2:] == ["ListServiceQuotas", "ListAWSDefaultServiceQuotas"]


def test_an_instance_type_without_any_quota_in_the_region_fails(account: Account, capsys) -> None:
    account.fake.applied_quotas = account.fake.default_quotas = [quota("ml.g5.xlarge for endpoint usage", "L-1", 4)]
    status, lines, _ = run(capsys)
    assert status == 1
    assert "Service Quotas lists no quota 'ml.g5.2xlarge for endpoint usage' in us-east-1" in lines["sagemaker-quota"]
    assert "-c instance_type=... (allowed: ml.g5.2xlarge" in lines["sagemaker-quota"]


@pytest.mark.parametrize(("limit", "unreserved", "expected", "desired"), [
    # A new account's limit of 50: Lambda's floor is the whole limit, so no reservation fits at all.
    (50, 50, "reserving 10 would leave 40, and Lambda keeps at least 50", 110),
    (1000, 105, "reserving 10 would leave 95, and Lambda keeps at least 100", 1005),
])
def test_a_reservation_the_account_cannot_give_fails_before_anything_deploys(
        account: Account, capsys, limit: int, unreserved: int, expected: str, desired: int) -> None:
    account.fake.concurrency_limit, account.fake.unreserved = limit, unreserved
    status, lines, _ = run(capsys)
    assert status == 1
    assert expected in lines["lambda-concurrency"]
    assert f"--service-code lambda --quota-code L-B99A9384 --desired-value {desired} " in lines["lambda-concurrency"]
    assert "-c reserved_concurrency=0 (no reservation" in lines["lambda-concurrency"]
    most = unreserved - 100
    assert (f"-c reserved_concurrency={most} or lower" if most >= 1 else "nothing above 0 fits") in \
        lines["lambda-concurrency"]


def test_no_reservation_needs_no_concurrency_headroom(account: Account, capsys) -> None:
    account.fake.concurrency_limit = account.fake.unreserved = 10  # a new account's quota
    status, lines, _ = run(capsys, "-c", "reserved_concurrency=0")
    assert status == 0
    assert "no reservation asked for" in lines["lambda-concurrency"]
    assert "GetAccountSettings" not in account.fake.calls


def test_a_redeploy_counts_the_reservation_its_function_already_holds(account: Account, capsys) -> None:
    account.create_stack("llm-stream-streaming", {"FunctionName": FUNCTION_NAME})
    account.fake.reservations = {FUNCTION_NAME: 10}
    account.fake.unreserved = 100  # 110 - the function's own 10
    status, lines, _ = run(capsys)
    assert status == 0, lines
    assert "reserving 10 leaves 100 unreserved" in lines["lambda-concurrency"]
    assert "GetFunctionConcurrency" in account.fake.calls


def test_a_missing_bootstrap_stack_names_the_command_that_creates_it(account: Account, capsys) -> None:
    boto3.client("cloudformation").delete_stack(StackName=preflight.BOOTSTRAP_STACK)
    status, lines, _ = run(capsys)
    assert status == 1
    assert "the CDK bootstrap stack CDKToolkit in aws://123456789012/us-east-1 is" in lines["bootstrap"]
    assert "make bootstrap (cdk bootstrap aws://123456789012/us-east-1)" in lines["bootstrap"]


def test_an_old_bootstrap_version_is_refused_as_the_templates_refuse_it(account: Account, capsys) -> None:
    boto3.client("ssm").put_parameter(Name=preflight.BOOTSTRAP_VERSION_PARAMETER, Value="5", Overwrite=True,
                                      Type="String")
    status, lines, _ = run(capsys)
    assert status == 1
    assert "bootstrap version 5; the templates need 6 or newer" in lines["bootstrap"]


def test_the_minimum_bootstrap_version_is_the_one_the_templates_check() -> None:
    for template in templates():
        rule = template.to_json()["Rules"]["CheckBootstrapVersion"]["Assertions"][0]["Assert"]
        refused = rule["Fn::Not"][0]["Fn::Contains"][0]
        assert [int(version) for version in refused] == list(range(1, preflight.MIN_BOOTSTRAP_VERSION))


def test_a_region_without_the_models_image_is_refused(account: Account, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AWS_REGION", "ap-southeast-3")
    status, lines, _ = run(capsys, "-c", "model=huggingface-llm-mistral-7b-instruct")
    assert status == 1
    assert "huggingface-llm-mistral-7b-instruct's container image is not published in ap-southeast-3" in \
        lines["region"]
    assert "deploy to one of: ap-northeast-1, ap-south-1, ap-southeast-1" in lines["region"]


def test_a_region_without_an_established_layer_needs_a_named_version_which_must_resolve(
        account: Account, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    account.bootstrap(region="eu-north-1")  # bootstrapping is per region
    status, lines, _ = run(capsys)
    assert status == 1
    assert "the Web Adapter layer's version of v1.0.1 in eu-north-1 is not established" in lines["region"]
    assert "-c web_adapter_layer_version=N" in lines["region"]

    status, lines, _ = run(capsys, "-c", "web_adapter_layer_version=30")
    assert status == 1
    assert lines["region"].split()[0] == "ok"
    named = web_adapter.layer_arn("aws", "eu-north-1", 30)
    assert f"{named} does not exist" in lines["web-adapter-layer"]

    account.fake.add_layer(named)
    status, lines, _ = run(capsys, "-c", "web_adapter_layer_version=30")
    assert status == 0, lines


def test_a_layer_for_another_architecture_is_refused(account: Account, capsys) -> None:
    account.fake.add_layer(LAYER_ARN, architectures=("x86_64",))
    status, lines, _ = run(capsys)
    assert status == 1
    assert "is for x86_64, not arm64" in lines["web-adapter-layer"]


def test_a_read_the_caller_may_not_make_names_the_permission_and_can_be_skipped(account: Account, capsys) -> None:
    account.fake.denied = {"ListServiceQuotas", "GetAccountSettings"}
    status, lines, err = run(capsys)
    assert status == 1
    assert "could not read the account: AccessDeniedException from ListServiceQuotas" in lines["sagemaker-quota"]
    assert "the caller needs servicequotas:ListServiceQuotas" in lines["sagemaker-quota"]
    assert "could not read the account: AccessDeniedException from GetAccountSettings" in lines["lambda-concurrency"]
    assert "2 of 6 checks failed (lambda-concurrency, sagemaker-quota)" in err

    status, lines, _ = run(capsys, "--skip", "sagemaker-quota", "--skip", "lambda-concurrency")
    assert status == 0
    assert "skipped (--skip)" in lines["sagemaker-quota"]


def test_no_credentials_stops_before_any_check(account: Account, capsys, monkeypatch, tmp_path: Path) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    status, lines, err = run(capsys)
    assert status == 1
    assert lines == {}
    assert "preflight: no usable AWS credentials" in err
    assert "aws sso login" in err


def test_bad_settings_are_refused_with_the_key_and_the_allowed_values(capsys) -> None:
    status, lines, err = run(capsys, "-c", "max_instances=0")
    assert status == 2
    assert lines == {}
    assert "context key 'max_instances': 0 is out of range; allowed: 1..20" in err


def test_a_bundle_pip_cannot_build_fails(account: Account, capsys, monkeypatch, tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("fastapi==0.0.0.1\n")  # no such release
    monkeypatch.setattr(preflight, "BUNDLE_SOURCE", tmp_path)
    status, lines, _ = run(capsys)
    assert status == 1
    assert "pip finds no manylinux2014_aarch64 wheels for python3.14" in lines["function-bundle"]


def test_preflight_reads_the_settings_cdk_synth_reads() -> None:
    settings = deployment_settings(["model=huggingface-llm-falcon-40b-instruct-bf16", "max_instances=2",
                                    "reserved_concurrency=0"])
    assert (settings.model.model_id, settings.max_instances, settings.reserved_concurrency) == (
        "huggingface-llm-falcon-40b-instruct-bf16", 2, 0)
    assert settings.instance_type == settings.model.default_instance_type
    assert deployment_settings().name_prefix == json.loads((ROOT / "cdk.json").read_text())["context"]["name_prefix"]


def test_the_fake_refuses_to_send_what_botocore_does_not_describe() -> None:
    check_output("lambda", "GetFunctionConcurrency", {"ReservedConcurrentExecutions": 3})
    with pytest.raises(ShapeMismatch, match="ReservedConcurrentExecutions"):
        check_output("lambda", "GetFunctionConcurrency", {"ReservedConcurrentExecutions": "3"})
    with pytest.raises(ShapeMismatch, match="Unknown parameter"):
        check_output("service-quotas", "ListServiceQuotas", {"Quotas": [], "Extra": 1})
