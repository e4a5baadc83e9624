"""The CDK CLI itself, run the way a deployer runs it."""

from __future__ import annotations

import json
import os
import subprocess

from tests import ROOT


def test_cdk_synth_fails_with_the_settings_message(tmp_path) -> None:
    """The real CLI, as a deployer runs it: `cdk synth -c auth=open`."""
    cdk = ROOT / "node_modules" / ".bin" / "cdk"
    assert cdk.exists(), "the CDK CLI is missing: `make test` installs it (npm install)"
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "CDK_DISABLE_VERSION_CHECK": "1",
           "AWS_EC2_METADATA_DISABLED": "true"}
    result = subprocess.run([str(cdk), "synth", "--quiet", "--output", str(tmp_path / "out"), "-c", "auth=open"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode != 0
    assert "error: context key 'auth': 'open' is not allowed; allowed: iam, none" in result.stderr
    assert "Traceback" not in result.stderr


def test_make_synth_with_scale_to_zero_works_offline(tmp_path) -> None:
    """`make synth CDK_ARGS="-c scale_to_zero=true"`, with no credentials: both templates, the component in one."""
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "PYTEST"))}
    result = subprocess.run(["make", "--no-print-directory", "synth",
                             f"CDK_ARGS=-c scale_to_zero=true -c max_instances=2 --output {out}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    endpoint = json.loads((out / "llm-stream-endpoint.template.json").read_text())
    types = sorted(resource["Type"] for resource in endpoint["Resources"].values()
                   if resource["Type"] != "AWS::CDK::Metadata")
    assert types == ["AWS::ApplicationAutoScaling::ScalableTarget", *["AWS::ApplicationAutoScaling::ScalingPolicy"] * 3,
                     *["AWS::CloudWatch::Alarm"] * 2, "AWS::IAM::Policy", "AWS::IAM::Role",
                     *["AWS::Logs::LogGroup"] * 2, "AWS::SageMaker::Endpoint", "AWS::SageMaker::EndpointConfig",
                     "AWS::SageMaker::InferenceComponent", "AWS::SageMaker::Model"]
    assert (out / "llm-stream-streaming.template.json").exists()
