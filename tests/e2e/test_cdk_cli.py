"""The CDK CLI itself, run the way a deployer runs it."""

from __future__ import annotations

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
