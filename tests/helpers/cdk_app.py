"""Build the CDK app exactly as `cdk synth` does: cdk.json's context (feature flags included) plus overrides."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Capture, Template

SKIP_BUNDLING: dict[str, list[str]] = {"aws:cdk:bundling-stacks": []}


def cdk_context(**overrides: Any) -> dict[str, Any]:
    from infra.cdk_context import project_context

    return {**project_context(), **overrides}


def build_app(bundle: bool = False, outdir: str | None = None, **overrides: Any) -> tuple[App, Any, Any]:
    from infra.app_builder import build

    app = App(context={**cdk_context(**overrides), **({} if bundle else SKIP_BUNDLING)}, outdir=outdir)
    endpoint, streaming = build(app)
    return app, endpoint, streaming


@cache
def _templates(overrides_json: str) -> tuple[Template, Template]:
    _, endpoint, streaming = build_app(**json.loads(overrides_json))
    return Template.from_stack(endpoint), Template.from_stack(streaming)


def templates(**overrides: Any) -> tuple[Template, Template]:
    """(endpoint template, streaming template), synthesized once per distinct overrides."""
    return _templates(json.dumps(overrides, sort_keys=True))


#: How CDK renders the stack's pseudo parameters.
REGION = {"Ref": "AWS::Region"}
PARTITION = {"Ref": "AWS::Partition"}


def join(*parts: object) -> dict:
    """An Fn::Join on the empty string, as CDK renders Fn.join("", ...) and token concatenation."""
    return {"Fn::Join": ["", list(parts)]}


def function_environment(streaming: Template) -> dict[str, Any]:
    variables = Capture()
    streaming.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": variables}})
    return dict(variables.as_object())


def app_environment(streaming: Template) -> dict[str, str]:
    """The function's own variables (not the Web Adapter's)."""
    return {k: v for k, v in function_environment(streaming).items() if not k.startswith("AWS_")}
