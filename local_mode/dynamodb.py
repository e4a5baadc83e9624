"""A DynamoDB API on loopback for local runs and tests: moto's server, as its own process, and the table the
streaming stack creates (``infra/streaming_stack.py``: the same key schema and TTL attribute), reached by
the real boto3 client. What only real DynamoDB confirms is listed in docs/limits.md.

DynamoDB applies each write to an item atomically; moto's server answers requests on threads and reads,
changes and stores an item in separate steps, so two concurrent conditional updates can both pass their
condition (200 concurrent admissions for ``max_streams=5`` admitted 6). Run as ``python -m
local_mode.dynamodb PORT``, it serves moto's application one request at a time: the atomicity DynamoDB
gives, given here, never in the function.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_stream.limits_table import PK, SK, TIDY_ATTRIBUTE

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LOCAL_TABLE_NAME = "llm-stream-local"
_START_TIMEOUT_SECONDS = 30.0


@contextmanager
def serialised_moto(port: int) -> Iterator[str]:
    """moto's server (every service it implements, one request at a time) on ``127.0.0.1:port`` until the
    block ends: its URL."""
    process = subprocess.Popen([sys.executable, "-m", "local_mode.dynamodb", str(port)],  # noqa: S603 (our own module)
                               cwd=Path(__file__).parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310 (loopback URL built here)
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on {url}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def create_table(client: DynamoDBClient, name: str) -> None:
    """The table as the stack defines it: on-demand, ``pk``/``sk`` strings, TTL on ``tidy_at``."""
    client.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": PK, "KeyType": "HASH"}, {"AttributeName": SK, "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": PK, "AttributeType": "S"}, {"AttributeName": SK, "AttributeType": "S"}])
    client.update_time_to_live(TableName=name,
                               TimeToLiveSpecification={"Enabled": True, "AttributeName": TIDY_ATTRIBUTE})


def serve(port: int) -> None:
    """moto's server application on loopback, one request at a time."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    application = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ: dict[str, Any], start_response: Any) -> Any:
        with lock:
            return list(application(environ, start_response))

    run_simple("127.0.0.1", port, one_at_a_time, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
