#!/usr/bin/env python3
"""CDK app: `cdk synth` / `cdk deploy` (see README). Settings come from cdk.json's context and `-c key=value`."""

import sys

from aws_cdk import App

from infra.app_builder import build
from infra.settings import SettingsError

app = App()
try:
    build(app)
except SettingsError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)
app.synth()
