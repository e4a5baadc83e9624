"""Read-only checks of an AWS account and region before anything is deployed (``make preflight``).

    python -m infra.preflight [-c key=value ...] [--profile NAME] [--skip CHECK ...]

``make deploy`` runs it first: a deployment that would fail (a region without the model's image or the
Web Adapter layer, no CDK bootstrap, a GPU quota below what the endpoint may run, a concurrency reservation the
account cannot give, a bundle pip cannot build) fails here in seconds, before the endpoint stack starts
billing. The settings are the deployment's own (cdk.json's context plus the same ``-c`` pairs), the
credentials and region are the caller's (as the CDK CLI picks them). Each failed check says what to do;
exit status 1 when any fails, 2 for bad settings.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from . import web_adapter
from .app_builder import streaming_stack_name
from .bundling import lambda_platform, pip_install_arguments
from .cdk_context import deployment_settings
from .function_settings import LAMBDA_DIR
from .hosted_models import shared_instance_types
from .settings import DeploymentSettings, SettingsError

#: Lambda refuses a reservation that leaves fewer unreserved executions than this, or than the account's
#: whole limit where that is lower ("below its minimum value of [N]", N = 100, 50 or 10 as reported).
LAMBDA_MIN_UNRESERVED = 100
#: Service Quotas' code of Lambda's "Concurrent executions".
LAMBDA_CONCURRENCY_QUOTA_CODE = "L-B99A9384"
#: Where the CDK CLI deploys when no region is configured anywhere.
CDK_CLI_DEFAULT_REGION = "us-east-1"
BOOTSTRAP_STACK = "CDKToolkit"
#: What the synthesized templates' ``BootstrapVersion`` parameter reads (the default qualifier).
BOOTSTRAP_VERSION_PARAMETER = "/cdk-bootstrap/hnb659fds/version"
#: The templates' ``CheckBootstrapVersion`` rule refuses versions 1-5.
MIN_BOOTSTRAP_VERSION = 6
#: The function's source, whose requirements the bundle check resolves.
BUNDLE_SOURCE = LAMBDA_DIR
_USABLE_STACK_STATUSES = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")


class CheckFailed(Exception):
    def __init__(self, found: str, remedy: str) -> None:
        super().__init__(found)
        self.found = found
        self.remedy = remedy


@dataclass(frozen=True)
class Account:
    """The account and region the checks read, and a client factory on the caller's credentials."""

    session: boto3.Session
    region: str
    account_id: str
    partition: str

    def client(self, service: str) -> Any:
        return self.session.client(service, region_name=self.region)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Check:
    name: str
    #: The IAM actions it calls, named when the caller may not.
    permissions: tuple[str, ...]
    run: Callable[[DeploymentSettings, Account], str]


@dataclass(frozen=True)
class Outcome:
    check: str
    passed: bool
    found: str
    remedy: str = ""


# -- the checks: each returns what it found, or raises CheckFailed with what to do ---------------------


def check_region(settings: DeploymentSettings, account: Account) -> str:
    region = account.region
    supported = ", ".join(settings.supported_regions)
    for model in settings.models:
        if region not in model.serving_regions:
            raise CheckFailed(f"{model.model_id}'s container image is not published in {region}",
                              f"deploy to one of: {supported} (AWS_REGION or the profile's region)")
    version = web_adapter.layer_version(region, settings.web_adapter_layer_version)
    if version is None:
        raise CheckFailed(
            f"the Web Adapter layer's version of {web_adapter.RELEASE} in {region} is not established",
            f"deploy to one of: {supported}; or name a layer version published in {region} with "
            "-c web_adapter_layer_version=N (this check then resolves it)")
    images = "'s, ".join(model.model_id for model in settings.models)
    return f"{region}: {images}'s image and the Web Adapter layer (version {version}) are published there"


def check_bootstrap(_settings: DeploymentSettings, account: Account) -> str:
    target = f"aws://{account.account_id}/{account.region}"
    remedy = f"make bootstrap (cdk bootstrap {target})"
    stack = _stack(account, BOOTSTRAP_STACK)
    if stack is None or stack["StackStatus"] not in _USABLE_STACK_STATUSES:
        status = "missing" if stack is None else stack["StackStatus"]
        raise CheckFailed(f"the CDK bootstrap stack {BOOTSTRAP_STACK} in {target} is {status}", remedy)
    try:
        raw = account.client("ssm").get_parameter(Name=BOOTSTRAP_VERSION_PARAMETER)["Parameter"]["Value"]
    except ClientError as exc:
        if _error_code(exc) != "ParameterNotFound":
            raise
        raise CheckFailed(f"{BOOTSTRAP_VERSION_PARAMETER} is missing (bootstrapped with another qualifier?)",
                          remedy) from None
    version = int(raw) if raw.isdigit() else 0
    if version < MIN_BOOTSTRAP_VERSION:
        raise CheckFailed(f"bootstrap version {raw}; the templates need {MIN_BOOTSTRAP_VERSION} or newer",
                          f"{remedy} upgrades it")
    return f"{BOOTSTRAP_STACK} {stack['StackStatus']}, bootstrap version {version}"


def check_web_adapter_layer(settings: DeploymentSettings, account: Account) -> str:
    version = web_adapter.layer_version(account.region, settings.web_adapter_layer_version)
    if version is None:
        raise CheckFailed(f"no established layer version in {account.region} (see the region check)",
                          "-c web_adapter_layer_version=N names one")
    arn = web_adapter.layer_arn(account.partition, account.region, version)
    remedy = ("name a version published in this region with -c web_adapter_layer_version=N, or deploy to a "
              "region docs/deploying.md lists (The endpoint: Regions)")
    try:
        layer = account.client("lambda").get_layer_version_by_arn(Arn=arn)
    except ClientError as exc:
        code = _error_code(exc)
        if code == "ResourceNotFoundException":
            raise CheckFailed(f"{arn} does not exist", remedy) from None
        if code == "AccessDeniedException":  # Lambda's answer for another account's missing version too
            raise CheckFailed(f"{arn} does not exist, or the caller may not read it (AccessDeniedException)",
                              f"{remedy}; the caller needs lambda:GetLayerVersion") from None
        raise
    architectures = layer.get("CompatibleArchitectures") or []
    if architectures and "arm64" not in architectures:
        raise CheckFailed(f"{arn} is for {', '.join(architectures)}, not arm64",
                          "name the arm64 layer's version with -c web_adapter_layer_version=N")
    return f"{arn} resolves ({layer['Content']['CodeSize']} bytes)"


def check_lambda_concurrency(settings: DeploymentSettings, account: Account) -> str:
    wanted = settings.reserved_concurrency
    if wanted == 0:
        return "no reservation asked for (reserved_concurrency 0: nothing bounds the function's concurrency)"
    lambda_client = account.client("lambda")
    limits = lambda_client.get_account_settings()["AccountLimit"]
    limit, unreserved = limits["ConcurrentExecutions"], limits["UnreservedConcurrentExecutions"]
    floor = min(LAMBDA_MIN_UNRESERVED, limit)
    # Unreserved already excludes what this deployment's function holds; a redeploy gives that back first.
    held = _reservation_already_held(settings, account, lambda_client)
    left = unreserved + held - wanted
    if left < floor:
        most = unreserved + held - floor
        lower = f"-c reserved_concurrency={most} or lower" if most >= 1 else "nothing above 0 fits"
        raise CheckFailed(
            f"account concurrency {limit}, {unreserved} unreserved: reserving {wanted} would leave {left}, and "
            f"Lambda keeps at least {floor}",
            f"ask for more: aws service-quotas request-service-quota-increase --service-code lambda "
            f"--quota-code {LAMBDA_CONCURRENCY_QUOTA_CODE} --desired-value "
            f"{limit - left + LAMBDA_MIN_UNRESERVED} --region {account.region}; "
            f"or reserve less: {lower}; or -c reserved_concurrency=0 (no reservation: read the warning in "
            "docs/deploying.md)")
    return f"account concurrency {limit}: reserving {wanted} leaves {left} unreserved (at least {floor} needed)"


def check_sagemaker_quota(settings: DeploymentSettings, account: Account) -> str:
    name = f"{settings.instance_type} for endpoint usage"
    quota = _sagemaker_quota(account, name)
    allowed = ", ".join(shared_instance_types(list(settings.models)))
    if quota is None:
        raise CheckFailed(f"Service Quotas lists no quota {name!r} in {account.region}",
                          f"{settings.instance_type} may not be offered for endpoints here: choose another "
                          f"region or -c instance_type=... (allowed: {allowed})")
    value = int(quota["Value"])
    needed = settings.max_instances
    # With several models the endpoint may run max_instances; their copies fill fewer (the rest: room for an
    # update's new copies before the old go).
    filled = (f", {len(settings.models)} models' copies fill {settings.instances_needed} at most"
              if settings.hosted_models else "")
    if value < needed:
        raise CheckFailed(
            f"{name!r} is {value}; the endpoint may run {needed} (max_instances{filled})",
            f"ask for {needed} or more: aws service-quotas request-service-quota-increase --service-code "
            f"sagemaker --quota-code {quota['QuotaCode']} --desired-value {needed} --region {account.region} "
            f"(GPU quotas take hours to days); or -c instance_type=... with a quota (allowed: {allowed})")
    return (f"{name!r} is {value} (max_instances {needed}{filled}; other endpoints on {settings.instance_type} in "
            "this account share it)")


def check_function_bundle(_settings: DeploymentSettings, _account: Account) -> str:
    from .streaming_stack import ARCHITECTURE, RUNTIME

    python_version, platform = lambda_platform(RUNTIME, ARCHITECTURE)
    with tempfile.TemporaryDirectory() as target:
        arguments = [*pip_install_arguments(python_version, platform, Path(target), BUNDLE_SOURCE), "--dry-run"]
        result = subprocess.run(arguments, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise CheckFailed(
            f"pip finds no {platform} wheels for {RUNTIME.name} of lambda/requirements.txt: "
            f"{_last_line(result.stderr)}",
            "the bundle is built from wheels without Docker: pin versions that publish wheels for this runtime")
    return f"lambda/requirements.txt resolves to {platform} wheels for {RUNTIME.name}"


CHECKS = (
    Check("region", (), check_region),
    Check("bootstrap", ("cloudformation:DescribeStacks", "ssm:GetParameter"), check_bootstrap),
    Check("web-adapter-layer", ("lambda:GetLayerVersion",), check_web_adapter_layer),
    Check("lambda-concurrency", ("lambda:GetAccountSettings", "cloudformation:DescribeStacks",
                                 "lambda:GetFunctionConcurrency"), check_lambda_concurrency),
    Check("sagemaker-quota", ("servicequotas:ListServiceQuotas", "servicequotas:ListAWSDefaultServiceQuotas"),
          check_sagemaker_quota),
    Check("function-bundle", (), check_function_bundle),
)
CHECK_NAMES = tuple(check.name for check in CHECKS)


# -- reading the account ---------------------------------------------------------------------------------


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _stack(account: Account, name: str) -> dict[str, Any] | None:
    try:
        stacks: list[dict[str, Any]] = account.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if _error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            return None
        raise
    return stacks[0] if stacks else None


def _reservation_already_held(settings: DeploymentSettings, account: Account, lambda_client: Any) -> int:
    """What this deployment's function reserves now (0 before its first deployment)."""
    stack = _stack(account, streaming_stack_name(settings.name_prefix))
    outputs = {output["OutputKey"]: output["OutputValue"] for output in (stack or {}).get("Outputs", [])}
    if "FunctionName" not in outputs:
        return 0
    try:
        reserved = lambda_client.get_function_concurrency(FunctionName=outputs["FunctionName"])
    except ClientError as exc:
        if _error_code(exc) == "ResourceNotFoundException":
            return 0
        raise
    return int(reserved.get("ReservedConcurrentExecutions", 0))


def _sagemaker_quota(account: Account, name: str) -> dict[str, Any] | None:
    """The applied quota of that name, else its AWS default (Service Quotas lists only what it can)."""
    client = account.client("service-quotas")
    for operation in ("list_service_quotas", "list_aws_default_service_quotas"):
        for page in client.get_paginator(operation).paginate(ServiceCode="sagemaker"):
            for quota in page["Quotas"]:
                if quota["QuotaName"] == name:
                    return dict(quota)
    return None


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


# -- running them ----------------------------------------------------------------------------------------


def run_checks(settings: DeploymentSettings, account: Account, skip: frozenset[str] = frozenset()) -> Iterator[Outcome]:
    for check in CHECKS:
        if check.name in skip:
            yield Outcome(check.name, True, "skipped (--skip)")
            continue
        try:
            yield Outcome(check.name, True, check.run(settings, account))
        except CheckFailed as failure:
            yield Outcome(check.name, False, failure.found, failure.remedy)
        except ClientError as exc:
            operation = exc.operation_name
            yield Outcome(check.name, False, f"could not read the account: {_error_code(exc)} from {operation}",
                          f"the caller needs {', '.join(check.permissions)}; or --skip {check.name}")
        except BotoCoreError as exc:
            yield Outcome(check.name, False, f"could not reach AWS: {exc}", f"retry, or --skip {check.name}")


def cdk_cli_region(session: boto3.Session) -> str:
    """The region the CDK CLI deploys an environment-agnostic stack to: its order (``AWS_REGION`` first, which
    boto3 does not read; then the profile's; then us-east-1), so the checks read the region deployed to."""
    for variable in ("AWS_REGION", "AMAZON_REGION", "AWS_DEFAULT_REGION", "AMAZON_DEFAULT_REGION"):
        if os.environ.get(variable):
            return os.environ[variable]
    return session.region_name or CDK_CLI_DEFAULT_REGION


def connect(profile: str | None) -> Account:
    """The caller's session, region and account (STS GetCallerIdentity); :class:`CheckFailed` without them."""
    session = boto3.Session(profile_name=profile)
    region = cdk_cli_region(session)
    try:
        account_id = session.client("sts", region_name=region).get_caller_identity()["Account"]
    except (ClientError, BotoCoreError) as exc:
        raise CheckFailed(f"no usable AWS credentials: {exc}", "sign in (aws configure / aws sso login), or "
                          "set AWS_PROFILE") from None
    return Account(session, region, account_id, session.get_partition_for_region(region))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.preflight", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE",
                        help="a context value, as cdk deploy takes it")
    parser.add_argument("--profile", help="the AWS profile, as cdk deploy takes it")
    parser.add_argument("--skip", action="append", default=[], choices=CHECK_NAMES, metavar="CHECK",
                        help=f"a check not to run: {', '.join(CHECK_NAMES)}")
    # Other CDK CLI options in CDK_ARGS (make deploy passes the same ones) are the CLI's business.
    args, _cdk_options = parser.parse_known_args(argv)
    try:
        settings = deployment_settings(args.context)
    except SettingsError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 2
    try:
        account = connect(args.profile)
    except CheckFailed as failure:
        print(f"preflight: {failure.found}\n  -> {failure.remedy}", file=sys.stderr)
        return 1
    print(f"preflight: {', '.join(m.model_id for m in settings.models)} on {settings.instance_type} (max_instances "
          f"{settings.max_instances}, reserved_concurrency {settings.reserved_concurrency}, auth {settings.auth}) "
          f"in account {account.account_id}, {account.region}")
    outcomes = []
    for outcome in run_checks(settings, account, frozenset(args.skip)):
        outcomes.append(outcome)
        print(f"  {'ok  ' if outcome.passed else 'FAIL'}  {outcome.check:<19} {outcome.found}")
        if outcome.remedy:
            print(f"  {'':<25} -> {outcome.remedy}")
    failed = [outcome.check for outcome in outcomes if not outcome.passed]
    if failed:
        print(f"preflight: {len(failed)} of {len(outcomes)} checks failed ({', '.join(failed)}); nothing was "
              "deployed", file=sys.stderr)
        return 1
    print(f"preflight: all {len(outcomes)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
