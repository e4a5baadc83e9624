"""A local HTTP fake of the AWS operations the project calls that moto's server does not serve.

Lambda's GetAccountSettings, GetLayerVersionByArn and GetFunctionConcurrency (rest-json) and Service
Quotas' ListServiceQuotas and ListAWSDefaultServiceQuotas (json 1.1, paginated), answered on their
botocore paths and targets. Every answer is checked against the operation's output shape in botocore's
service model before it is sent, and errors are encoded as each protocol encodes them, so the real boto3
client parses what it would parse from AWS. The data is the test's: only the shapes are AWS's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import botocore.session
from botocore.validate import ParamValidator

_SERVICE_MODELS = {name: botocore.session.get_session().get_service_model(name)
                   for name in ("lambda", "service-quotas")}
QUOTAS_TARGET_PREFIX = str(_SERVICE_MODELS["service-quotas"].metadata["targetPrefix"])
#: Service Quotas' page size here: small, so the client's paginator has to follow NextToken.
QUOTAS_PAGE_SIZE = 2


class ShapeMismatch(AssertionError):
    """The fake was about to send what botocore's model does not describe."""


def check_output(service: str, operation: str, body: dict[str, Any]) -> None:
    shape = _SERVICE_MODELS[service].operation_model(operation).output_shape
    assert shape is not None, f"{service} {operation} has no output"
    report = ParamValidator().validate(body, shape)
    if report.has_errors():
        raise ShapeMismatch(f"{service} {operation}: {report.generate_report()}")


def quota(name: str, code: str, value: float, service_code: str = "sagemaker",
          region: str = "us-east-1") -> dict[str, Any]:
    """A ``ServiceQuota`` structure as Service Quotas lists it."""
    return {"ServiceCode": service_code, "ServiceName": "Amazon SageMaker", "QuotaCode": code, "QuotaName": name,
            "QuotaArn": f"arn:aws:servicequotas:{region}:111122223333:{service_code}/{code}", "Value": value,
            "Unit": "None", "Adjustable": True, "GlobalQuota": False}


@dataclass
class FakeAwsApis:
    """The state the fake answers from, which a test sets; ``calls`` records each operation served."""

    concurrency_limit: int = 1000
    unreserved: int = 1000
    #: Layer version ARN -> GetLayerVersionByArn's answer.
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Function name -> its reserved concurrency.
    reservations: dict[str, int] = field(default_factory=dict)
    applied_quotas: list[dict[str, Any]] = field(default_factory=list)
    default_quotas: list[dict[str, Any]] = field(default_factory=list)
    #: Operations answered with AccessDeniedException.
    denied: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    url: str = ""

    def add_layer(self, arn: str, architectures: tuple[str, ...] = ("arm64",)) -> None:
        self.layers[arn] = {
            "LayerArn": arn.rsplit(":", 1)[0], "LayerVersionArn": arn, "Version": int(arn.rsplit(":", 1)[1]),
            "Description": "", "CreatedDate": "2025-08-14T04:50:41.128+0000",
            "CompatibleArchitectures": list(architectures),
            "Content": {"Location": "https://awslambda-us-east-1-layers.s3.us-east-1.amazonaws.com/snapshots/x",
                        "CodeSha256": "mV0ob2mq0cuDm5YyN4qCDNtnC4s=", "CodeSize": 2398714},
        }

    # -- the operations: an answer, or a raised _Refusal -------------------------------------------------

    def get_account_settings(self, _query: dict[str, str], _path: list[str]) -> dict[str, Any]:
        return {"AccountLimit": {"TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                                 "CodeSizeZipped": 52428800, "ConcurrentExecutions": self.concurrency_limit,
                                 "UnreservedConcurrentExecutions": self.unreserved},
                "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": len(self.reservations)}}

    def get_layer_version_by_arn(self, query: dict[str, str], _path: list[str]) -> dict[str, Any]:
        arn = query.get("Arn", "")
        if arn not in self.layers:  # another account's missing version: AccessDenied, as Lambda answers
            raise _Refusal(403, "AccessDeniedException", f"User is not authorized to perform: "
                           f"lambda:GetLayerVersion on resource: {arn}")
        return self.layers[arn]

    def get_function_concurrency(self, _query: dict[str, str], path: list[str]) -> dict[str, Any]:
        name = unquote(path[2])  # /2019-09-30/functions/{FunctionName}/concurrency
        if name not in self.reservations:
            raise _Refusal(404, "ResourceNotFoundException", f"Function not found: {name}")
        return {"ReservedConcurrentExecutions": self.reservations[name]}

    def list_quotas(self, quotas: list[dict[str, Any]], request: dict[str, Any]) -> dict[str, Any]:
        listed = [q for q in quotas if q["ServiceCode"] == request.get("ServiceCode")]
        start = int(request.get("NextToken") or 0)
        end = start + min(int(request.get("MaxResults") or QUOTAS_PAGE_SIZE), QUOTAS_PAGE_SIZE)
        page: dict[str, Any] = {"Quotas": listed[start:end]}
        if end < len(listed):
            page["NextToken"] = str(end)
        return page


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


_LAMBDA_ROUTES = {  # (first path segments) -> (operation, handler name)
    ("2016-08-19", "account-settings"): ("GetAccountSettings", "get_account_settings"),
    ("2018-10-31", "layers"): ("GetLayerVersionByArn", "get_layer_version_by_arn"),
    ("2019-09-30", "functions"): ("GetFunctionConcurrency", "get_function_concurrency"),
}


def _handler(fake: FakeAwsApis) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            path = [part for part in url.path.split("/") if part]
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            route = (path[0], path[1]) if len(path) >= 2 else ("", "")
            operation, method = _LAMBDA_ROUTES.get(route, ("", ""))
            if not operation or (operation == "GetLayerVersionByArn" and query.get("find") != "LayerVersion"):
                self._send(404, {"Type": "User", "Message": f"no route {url.path}"}, "ResourceNotFoundException")
                return
            self._serve("lambda", operation, lambda: getattr(fake, method)(query, path))

        def do_POST(self) -> None:
            target = self.headers.get("X-Amz-Target", "")
            operation = target.removeprefix(f"{QUOTAS_TARGET_PREFIX}.")
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            quotas = {"ListServiceQuotas": fake.applied_quotas, "ListAWSDefaultServiceQuotas": fake.default_quotas}
            if operation not in quotas:
                self._send(400, {"__type": "UnknownOperationException", "message": target}, "")
                return
            self._serve("service-quotas", operation, lambda: fake.list_quotas(quotas[operation], request))

        def _serve(self, service: str, operation: str, answer: Any) -> None:
            fake.calls.append(operation)
            try:
                if operation in fake.denied:
                    raise _Refusal(403 if service == "lambda" else 400, "AccessDeniedException",
                                   f"User is not authorized to perform: {operation}")
                body = answer()
            except _Refusal as refusal:
                if service == "lambda":  # rest-json: the type in a header, the message in the body
                    self._send(refusal.status, {"Type": "User", "Message": refusal.message}, refusal.code)
                else:  # json 1.1: the type in the body
                    self._send(refusal.status, {"__type": refusal.code, "message": refusal.message}, "")
                return
            check_output(service, operation, body)
            self._send(200, body, "")

        def _send(self, status: int, body: dict[str, Any], error_type: str) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            rest = self.command == "GET"  # Lambda's rest-json; Service Quotas posts json 1.1
            self.send_header("Content-Type", "application/json" if rest else "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "00000000-0000-4000-8000-000000000000")
            if error_type:
                self.send_header("x-amzn-ErrorType", error_type)
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def serve(fake: FakeAwsApis) -> Iterator[FakeAwsApis]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
