"""api_key auth end to end: the real function under uvicorn, its keys in a file or in the deployment's
DynamoDB table (moto's server, started here, with the real boto3 client; an older deployment's Secrets
Manager secret too), managed by the real CLI."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import openai
import pytest
from botocore.exceptions import ClientError
from starlette.routing import Route

from llm_stream.api_keys import KeyRecord, KeyRing, key_digest, new_key
from llm_stream.app import create_app
from llm_stream.key_limits import KeyLimits
from llm_stream.settings import Settings
from sagemaker_emulator import EmulatorServer
from stream_client.__main__ import main as client_main
from stream_client.client import stream_answer
from stream_client.key_admin import KeyAdmin
from tests.helpers.key_tables import table_admin as admin
from tests.helpers.logs import LogRecords
from tests.helpers.servers import AppServer

MODEL = "huggingface-llm-falcon-7b-instruct-bf16"
PROMPT = {"inputs": "Hello", "parameters": {"max_new_tokens": 8}}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 8}
COMPLETION = {"model": MODEL, "prompt": "Hi", "max_tokens": 8}
BODIES = {"/": PROMPT, "/v1/chat/completions": CHAT, "/v1/completions": COMPLETION}
OPEN = {("GET", "/healthz"), ("HEAD", "/healthz"), ("GET", "/"), ("HEAD", "/"), ("GET", "/page.js"),
        ("HEAD", "/page.js"), ("GET", "/page.css"), ("HEAD", "/page.css"), ("GET", "/favicon.ico"),
        ("HEAD", "/favicon.ico")}


def protected_routes() -> list[tuple[str, str]]:
    """Every (method, path) the app answers, except the open ones, and a path it does not know."""
    app = create_app(Settings(endpoint_name="e"), client=object())  # type: ignore[arg-type]
    routes = {(method, route.path) for route in app.routes if isinstance(route, Route)
              for method in route.methods or ()}
    assert routes >= OPEN, OPEN - routes
    return [*sorted(routes - OPEN), ("GET", "/no-such-page"), ("POST", "/healthz")]


PROTECTED = protected_routes()


def write_keys(path: Path, *records: KeyRecord) -> None:
    path.write_text(KeyRing(records).to_document())


def key_record(name: str, key: str, expires_in: timedelta | None = None) -> KeyRecord:
    created = datetime.now(UTC) - timedelta(days=1)
    return KeyRecord(name=name, sha256=key_digest(key), created_at=created,
                     expires_at=None if expires_in is None else datetime.now(UTC) + expires_in)


def call(url: str, method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = BODIES.get(path) if method == "POST" else None
    return httpx.request(method, url + path, json=body, headers=headers or {}, timeout=10)


class Keys:
    """A key file with three consumers: valid, expired, and one whose key is then revoked."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "keys.json"
        self.valid, self.expired, self.revoked = new_key(), new_key(), new_key()
        write_keys(self.path, key_record("team-a", self.valid), key_record("old", self.expired, timedelta(seconds=-1)))


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


@pytest.fixture
def keyed_function(emulator: EmulatorServer, start_function, keys: Keys) -> AppServer:
    return start_function(emulator, auth_mode="api_key", api_keys_file=str(keys.path), api_keys_refresh_seconds=0.2)


# -- the gate --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_protected_route_refuses_missing_wrong_revoked_and_expired_keys(
        keyed_function, keys: Keys, emulator: EmulatorServer, method: str, path: str) -> None:
    cases = {
        "missing_api_key": {},
        "invalid_api_key": {"authorization": f"Bearer {keys.revoked}"},
        "expired_api_key": {"x-api-key": keys.expired},
    }
    for error_type, headers in cases.items():
        response = call(keyed_function.url, method, path, headers)
        assert response.status_code == 401, (error_type, response.text)
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="llm-stream"')
        assert ('error="invalid_token"' in challenge) == (error_type != "missing_api_key")
        if method == "HEAD":
            continue
        error = response.json()["error"]
        if path.startswith("/v1/"):  # the OpenAI SDKs' shape: they raise AuthenticationError from it
            assert error["type"] == "authentication_error"
            assert error["code"] == error_type
        else:
            assert error["type"] == error_type
        assert error["request_id"] == response.headers["x-request-id"]
    assert emulator.requests == []


@pytest.mark.parametrize(("headers", "error_type"), [
    ({"x-api-key": ""}, "missing_api_key"),
    ({"authorization": "Bearer"}, "invalid_api_key"),
    ({"authorization": "Token"}, "invalid_api_key"),
    ({"authorization": "Basic dXNlcjpwYXNz"}, "invalid_api_key"),
    ({"authorization": "AWS4-HMAC-SHA256 Credential=AKIA/x"}, "invalid_api_key"),
    ({"x-api-key": "lsk-" + "A" * 300}, "invalid_api_key"),
    ({"x-api-key": b"lsk-caf\xe9"}, "invalid_api_key"),  # not ASCII, as no issued key is
    ("bare valid key", "invalid_api_key"),  # the valid key without the Bearer scheme
])
def test_malformed_credentials_are_refused(keyed_function, keys: Keys, emulator: EmulatorServer, headers,
                                           error_type: str) -> None:
    if headers == "bare valid key":
        headers = {"authorization": keys.valid}
    response = call(keyed_function.url, "POST", "/", headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == error_type
    assert emulator.requests == []


def test_two_different_keys_in_one_request_are_refused(keyed_function, keys: Keys, emulator) -> None:
    response = call(keyed_function.url, "POST", "/", {"authorization": f"Bearer {keys.valid}",
                                                       "x-api-key": keys.expired})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "the request carries more than one different API key"
    assert call(keyed_function.url, "POST", "/", {"authorization": f"bearer {keys.valid}",
                                                  "x-api-key": keys.valid}).status_code == 200
    assert emulator.requests[0].final_outcome() == "completed"


def test_a_refusal_comes_before_the_body_is_read(keyed_function) -> None:
    """Headers announce a body that never comes: the answer is the 401 at once, not the 408 after 10 s."""
    host, port = keyed_function.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                           b"content-length: 60000\r\n\r\n{\"inputs\":")
        started = time.monotonic()
        head = connection.recv(4096).decode()
    assert head.startswith("HTTP/1.1 401"), head
    assert time.monotonic() - started < 2


def test_open_paths_need_no_key_and_health_says_which_auth(keyed_function, emulator) -> None:
    health = httpx.get(f"{keyed_function.url}/healthz")
    assert health.json() == {"status": "ok", "auth": "api_key"}
    for method, path in OPEN:
        assert httpx.request(method, keyed_function.url + path).status_code in (200, 204), (method, path)
    assert emulator.requests == []


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_a_valid_key_streams_and_names_its_consumer_in_its_log_line(
        keyed_function, keys: Keys, header: str, request_logs: LogRecords, capsys) -> None:
    value = f"Bearer {keys.valid}" if header == "authorization" else keys.valid
    response = httpx.post(keyed_function.url, json=PROMPT, headers={header: value, "accept": "text/event-stream"},
                          timeout=10)
    assert response.status_code == 200
    assert "event: done" in response.text
    refused = call(keyed_function.url, "POST", "/", {"x-api-key": keys.revoked})
    assert refused.status_code == 401
    served, refusal = request_logs.wait_for(2)[-2:]
    assert served["consumer"] == "team-a"
    # Per-key views come from the log line: a metric dimension per key would be a custom metric per key.
    assert "Consumer" not in served
    assert all("Consumer" not in dimensions for directive in served["_aws"]["CloudWatchMetrics"]
               for dimensions in directive["Dimensions"])
    assert served["Tokens"] > 0
    assert "consumer" not in refusal
    assert refusal["error_type"] == "invalid_api_key"
    assert "_aws" not in refusal  # logged, not metered: probes of any path must not swell Requests
    everything = json.dumps(list(request_logs)) + capsys.readouterr().out
    for key in (keys.valid, keys.revoked, keys.expired):
        assert key not in everything


def test_the_openai_sdk_uses_the_key_and_raises_authentication_error_without_it(keyed_function, keys) -> None:
    base_url = f"{keyed_function.url}/v1"
    good = openai.OpenAI(base_url=base_url, api_key=keys.valid, max_retries=0)
    answer = good.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert answer.choices[0].message.content
    bad = openai.OpenAI(base_url=base_url, api_key=keys.revoked, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        bad.models.list()
    assert raised.value.code == "invalid_api_key"


def test_a_revoked_key_stops_working_within_the_refresh_interval(keyed_function, keys: Keys) -> None:
    headers = {"x-api-key": keys.valid}
    assert call(keyed_function.url, "GET", "/v1/models", headers).status_code == 200
    write_keys(keys.path)  # revoke everything
    revoked_at = time.monotonic()
    while (response := call(keyed_function.url, "GET", "/v1/models", headers)).status_code == 200:
        assert time.monotonic() - revoked_at < 0.2 + 0.5, "still accepted well after the refresh interval"
        time.sleep(0.02)
    assert response.status_code == 401  # refused as revoked, not for want of a fresh copy (a 503)
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_no_readable_keys_is_503_and_nothing_reaches_the_endpoint(
        emulator, start_function, tmp_path: Path, request_logs: LogRecords) -> None:
    function = start_function(emulator, auth_mode="api_key", api_keys_file=str(tmp_path / "missing.json"))
    for headers in ({"x-api-key": new_key()}, {"authorization": f"Bearer {new_key()}"}):
        response = call(function.url, "POST", "/v1/chat/completions", headers)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "key_store_unavailable"
        assert int(response.headers["retry-after"]) >= 1
    assert call(function.url, "POST", "/", {}).status_code == 401  # no key at all: no need to read keys
    assert emulator.requests == []
    failures = [line for line in request_logs if line["event"] == "api_keys_read_failed"]
    assert failures
    assert "FileNotFoundError" in failures[0]["error"]
    refusal = next(line for line in request_logs if line.get("error_type") == "key_store_unavailable")
    assert "missing.json" in refusal["error_detail"]  # where it looked goes to the log, not to the caller


@pytest.mark.slow  # it waits for the last good copy to grow too old
def test_the_last_good_copy_serves_while_reads_fail_then_requests_are_refused(
        emulator, start_function, keys: Keys) -> None:
    # A copy may serve 3 intervals of 0.5 s: long enough that a busy machine still answers within it.
    function = start_function(emulator, auth_mode="api_key", api_keys_file=str(keys.path),
                              api_keys_refresh_seconds=0.5, api_keys_max_stale_intervals=3)
    headers = {"x-api-key": keys.valid}
    assert call(function.url, "GET", "/v1/models", headers).status_code == 200
    keys.path.write_text("not a key document")
    broken_at = time.monotonic()
    assert call(function.url, "GET", "/v1/models", headers).status_code == 200
    statuses = []
    while time.monotonic() - broken_at < 3.0:
        statuses.append(call(function.url, "GET", "/v1/models", headers).status_code)
        time.sleep(0.05)
    assert statuses[0] == 200
    assert statuses[-1] == 503
    assert set(statuses) == {200, 503}
    assert statuses.index(503) == len(statuses) - statuses[::-1].index(200)  # once refused, stays refused


# -- the key table: DynamoDB (moto's server), the real boto3 client, the real CLI -----------------


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = client_main(["keys", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def listed(capsys, table: str) -> dict[str, dict[str, str]]:
    """``keys list`` as {name: {column: value}}, read by the columns' positions (values may hold spaces)."""
    status, out, _ = run_cli(capsys, "--table", table, "list")
    assert status == 0
    header, *lines = out.splitlines()
    columns = [(match[0], match.start()) for match in re.finditer(r"\S+", header)]
    assert [name for name, _ in columns] == ["NAME", "CREATED", "EXPIRES", "STATUS", "LIMITS", "MODELS"]
    ends = [start for _, start in columns[1:]] + [None]
    return {line.split()[0]: {name: line[start:end].strip() for (name, start), end in zip(columns, ends, strict=True)}
            for line in lines}


def test_cli_create_list_revoke_round_trip(key_table: str, capsys, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"llm-stream-streaming": {"FunctionUrl": "https://x", "AuthMode": "api_key",
                                                            "ApiKeysTableName": key_table}}))
    status, key, message = run_cli(capsys, "--outputs", str(outputs), "create", "team-a", "--expires", "90d",
                                   "--max-streams", "4", "--rpm", "60")
    key = key.strip()
    assert status == 0
    assert key.startswith("lsk-")
    assert len(key) == 47
    assert "expires" in message
    assert "shown only now" in message
    assert "max_streams=4 rpm=60" in message
    stored = json.dumps(boto3.client("dynamodb").scan(TableName=key_table)["Items"])
    assert key not in stored
    assert key_digest(key) in stored

    status, _, message = run_cli(capsys, "--table", key_table, "create", "team-a")
    assert status == 1
    assert "a key named 'team-a' exists already" in message
    status, _, message = run_cli(capsys, "--table", key_table, "create", "bad name")
    assert status == 1
    assert "not a valid key name" in message
    assert run_cli(capsys, "--table", key_table, "create", "team-b")[0] == 0

    rows = listed(capsys, key_table)
    assert list(rows) == ["team-a", "team-b"]
    assert rows["team-a"]["LIMITS"] == "max_streams=4 rpm=60"
    assert rows["team-b"]["EXPIRES"] == "never"
    assert (rows["team-b"]["STATUS"], rows["team-b"]["LIMITS"], rows["team-b"]["MODELS"]) == (
        "active", "none", "every model")

    status, _, message = run_cli(capsys, "--table", key_table, "revoke", "team-a")
    assert status == 0
    assert "within its refresh interval" in message
    assert listed(capsys, key_table)["team-a"]["STATUS"] == "revoked"
    status, _, message = run_cli(capsys, "--table", key_table, "revoke", "team-a")
    assert status == 1
    assert "no key named 'team-a'" in message
    audit = [entry["what"].split()[0] for entry in admin(key_table).items()[0].audit]
    assert audit == ["create", "revoke"]
    assert admin(key_table).items()[0].audit[0]["by"].startswith("arn:aws:")


def test_cli_sets_and_removes_limits_and_refuses_bad_ones(key_table: str, capsys) -> None:
    assert run_cli(capsys, "--table", key_table, "create", "team-a", "--tpm", "1000")[0] == 0
    assert run_cli(capsys, "--table", key_table, "set-limits", "team-a", "--rpm", "30", "--tpm", "none")[0] == 0
    assert listed(capsys, key_table)["team-a"]["LIMITS"] == "rpm=30"
    status, _, message = run_cli(capsys, "--table", key_table, "set-limits", "team-a", "--max-streams", "0")
    assert status == 1
    assert "max_streams=0 is not valid: expected an integer from 1 to 100 " in message
    status, _, message = run_cli(capsys, "--table", key_table, "set-limits", "team-a")
    assert status == 1
    assert "name at least one limit" in message
    status, _, message = run_cli(capsys, "--table", key_table, "set-limits", "nobody", "--rpm", "1")
    assert status == 1
    assert "no key named 'nobody'" in message


def test_cli_restricts_a_key_to_models_and_lifts_it_and_refuses_unknown_ones(key_table: str, capsys) -> None:
    falcon, mistral = "huggingface-llm-falcon-7b-instruct-bf16", "huggingface-llm-mistral-7b-instruct"
    status, _, message = run_cli(capsys, "--table", key_table, "create", "team-a", "--models", f"{falcon},{mistral}")
    assert status == 0
    assert f"models: {falcon},{mistral}" in message
    assert listed(capsys, key_table)["team-a"]["MODELS"] == f"{falcon},{mistral}"
    assert run_cli(capsys, "--table", key_table, "set-models", "team-a", "--models", mistral)[0] == 0
    ring = KeyAdmin(boto3.client("dynamodb"), key_table, "tests").ring()
    assert ring.records[0].allowed_models == (mistral,)  # what the function reads (403 model_not_allowed)
    assert run_cli(capsys, "--table", key_table, "set-models", "team-a", "--all")[0] == 0
    assert listed(capsys, key_table)["team-a"]["MODELS"] == "every model"
    for bad, problem in (("gpt-4o", "unknown model 'gpt-4o'"), (f"{falcon},{falcon}", "name each model once"),
                         (",", "no model")):
        with pytest.raises(SystemExit):
            client_main(["keys", "--table", key_table, "set-models", "team-a", "--models", bad])
        err = capsys.readouterr().err
        assert problem in err
        assert falcon in err  # the catalog's models are named


def test_cli_refuses_bad_lifetimes_and_deployments_without_keys(capsys, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        client_main(["keys", "--table", "x", "create", "a", "--expires", "tomorrow"])
    assert "is not a lifetime: use Nd or Nh" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        client_main(["keys", "--table", "x", "create", "a", "--rpm", "lots"])
    assert "'lots' is not an integer or 'none'" in capsys.readouterr().err
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"s": {"FunctionUrl": "https://x", "AuthMode": "iam"}}))
    status, _, message = run_cli(capsys, "--outputs", str(outputs), "list")
    assert status == 1
    assert "is the deployment's auth api_key?" in message


@pytest.mark.slow  # a server of its own (moto's SNS, SQS, Secrets Manager) or many writes
def test_concurrent_admins_lose_no_change(key_table: str) -> None:
    """Each change is conditional on the record it was made from: four admins changing one key's limits at
    once keep all four changes, and the audit trail has each."""
    admins = [admin(key_table) for _ in range(4)]
    admins[0].create("team-a", None, KeyLimits())
    errors: list[Exception] = []
    start = threading.Barrier(len(admins))
    changes = [{"max_streams": 2}, {"rpm": 30}, {"tpm": 1000}, {"monthly_tokens": 10**6}]

    def change(one: KeyAdmin, limits: dict[str, int | None]) -> None:
        start.wait()
        try:
            one.set_limits("team-a", limits)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=change, args=pair) for pair in zip(admins, changes, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    item = admins[0].items()[0]
    assert item.record is not None
    assert item.record.limits == KeyLimits(max_streams=2, rpm=30, tpm=1000, monthly_tokens=10**6)
    assert len(item.audit) == 5


class LosesOneAnswer:
    """The real client, except that the first update's answer is lost after the update was made (what
    botocore's retry of a timed-out call would see)."""

    def __init__(self, client: Any) -> None:
        self.client, self.lost = client, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def update_item(self, **kwargs: Any) -> Any:
        answer = self.client.update_item(**kwargs)
        if not self.lost:
            self.lost = True
            raise ClientError({"Error": {"Code": "ConditionalCheckFailedException", "Message": "lost"}}, "UpdateItem")
        return answer


def test_a_write_whose_answer_was_lost_still_hands_out_the_key(key_table: str) -> None:
    lossy = KeyAdmin(LosesOneAnswer(boto3.client("dynamodb")), key_table, "tester")  # type: ignore[arg-type]
    key, record = lossy.create("team-a", None, KeyLimits(rpm=5))
    assert lossy.ring().records == (record,)
    assert lossy.ring().find(key) == record


def keyed_by_table(emulator: EmulatorServer, start_function, table: str, **overrides: Any) -> AppServer:
    return start_function(emulator, auth_mode="api_key", api_keys_table=table, api_keys_refresh_seconds=0.3,
                          **overrides)


def wait_until_refused(function: AppServer, key: str) -> httpx.Response:
    changed_at = time.monotonic()
    while (response := call(function.url, "POST", "/", {"x-api-key": key})).status_code == 200:
        assert time.monotonic() - changed_at < 0.3 + 0.7, "still accepted well after the refresh interval"
        time.sleep(0.05)
    return response


def test_the_function_checks_keys_from_the_table(key_table: str, emulator: EmulatorServer, start_function) -> None:
    key, _ = admin(key_table).create("team-a", timedelta(days=1), KeyLimits())
    function = keyed_by_table(emulator, start_function, key_table)
    result = stream_answer(function.url, PROMPT, auth="api_key", api_key=key)
    assert result.done is not None
    assert result.tokens > 0
    admin(key_table).revoke("team-a")
    response = wait_until_refused(function, key)
    assert response.status_code == 401  # refused as revoked, not for want of a fresh copy (a 503)
    assert response.json()["error"]["type"] == "invalid_api_key"


@pytest.mark.slow  # it waits for the grace to end
def test_a_rotated_key_works_beside_the_new_one_until_its_grace_ends(
        key_table: str, emulator: EmulatorServer, start_function) -> None:
    old, _ = admin(key_table).create("team-a", None, KeyLimits())
    # Times are kept to the second: a grace of 5 s ends 4 to 5 s from now, time enough under any load.
    new, record = admin(key_table).rotate("team-a", timedelta(seconds=5))
    function = keyed_by_table(emulator, start_function, key_table)
    for key in (old, new):
        assert call(function.url, "POST", "/", {"x-api-key": key}).status_code == 200
    assert record.previous_expires_at is not None
    time.sleep(max(0.0, (record.previous_expires_at - datetime.now(UTC)).total_seconds()) + 0.1)
    assert call(function.url, "POST", "/", {"x-api-key": old}).status_code == 401
    assert call(function.url, "POST", "/", {"x-api-key": new}).status_code == 200


def test_an_unreadable_table_is_503_and_nothing_reaches_the_endpoint(
        key_table: str, emulator: EmulatorServer, start_function, request_logs: LogRecords) -> None:
    function = keyed_by_table(emulator, start_function, key_table + "-gone")
    response = call(function.url, "POST", "/", {"x-api-key": new_key()})
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "key_store_unavailable"
    assert "gone" not in response.text
    assert emulator.requests == []
    failure = next(line for line in request_logs if line["event"] == "api_keys_read_failed")
    assert "ResourceNotFoundException" in failure["error"]


@pytest.mark.slow  # a server of its own (moto's SNS, SQS, Secrets Manager) or many writes
def test_an_older_deployments_key_secret_keeps_working_through_its_migration(
        key_table: str, emulator: EmulatorServer, start_function, capsys, tmp_path: Path,
        request_logs: LogRecords) -> None:
    """Upgrading: the function reads the table and the old secret until ``keys migrate`` copied the secret in,
    then the table alone; a key in both keeps the table's record."""
    secrets = boto3.client("secretsmanager")
    legacy, both, retired = new_key(), new_key(), new_key()
    document = KeyRing((key_record("legacy", legacy), key_record("both", both),
                        key_record("retired", retired))).to_document()
    secret = secrets.create_secret(Name=f"api-keys-{time.monotonic_ns()}", SecretString=document)["ARN"]
    admin(key_table).create("both", None, KeyLimits(rpm=7))  # made in the table since (another key)
    admin(key_table).create("retired", None, KeyLimits())
    admin(key_table).revoke("retired")  # revoked in the table since
    function = keyed_by_table(emulator, start_function, key_table, api_keys_secret_id=secret)
    assert call(function.url, "POST", "/", {"x-api-key": legacy}).status_code == 200
    assert call(function.url, "POST", "/", {"x-api-key": both}).status_code == 401  # the table's "both" wins
    assert call(function.url, "POST", "/", {"x-api-key": retired}).status_code == 401  # and its revocation

    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"s": {"ApiKeysTableName": key_table, "ApiKeysSecretArn": secret}}))
    status, _, message = run_cli(capsys, "--outputs", str(outputs), "migrate")
    assert status == 0
    assert "Copied 1 keys" in message
    assert "2 were there already (both, retired)" in message
    secrets.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
    time.sleep(0.4)  # past a refresh interval (0.3 s): the next request makes the function read the keys again
    assert call(function.url, "POST", "/", {"x-api-key": legacy}).status_code == 200
    time.sleep(0.4)
    assert call(function.url, "POST", "/", {"x-api-key": legacy}).status_code == 200
    # Those reads found the marker and left the (deleted) secret alone: none of them failed.
    assert [line for line in request_logs if line["event"] == "api_keys_read_failed"] == []
    assert [item.audit[-1]["what"] for item in admin(key_table).items() if item.name == "legacy"] == [
        "migrate (from the key secret)"]
    # Run again (make deploy does, every time): nothing to do, even with the secret gone, and a key revoked
    # since stays revoked.
    admin(key_table).revoke("legacy")
    status, _, message = run_cli(capsys, "--outputs", str(outputs), "migrate")
    assert status == 0
    assert "already holds the key secret's keys: nothing to do" in message
    assert admin(key_table).import_keys(KeyRing.from_document(document)) == ([], ["legacy", "both", "retired"])
    assert wait_until_refused(function, legacy).status_code == 401


def test_the_client_sends_the_key_from_the_environment(
        keyed_function, keys: Keys, capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"s": {"FunctionUrl": keyed_function.url, "AuthMode": "api_key"}}))
    monkeypatch.delenv("LLM_STREAM_API_KEY", raising=False)
    assert client_main(["--outputs", str(outputs), "Hi"]) == 1
    assert "this deployment needs an API key: pass --api-key or set LLM_STREAM_API_KEY" in capsys.readouterr().err
    assert client_main(["--outputs", str(outputs), "--api-key", keys.revoked, "Hi"]) == 1
    assert "HTTP 401: invalid_api_key" in capsys.readouterr().err
    monkeypatch.setenv("LLM_STREAM_API_KEY", keys.valid)
    assert client_main(["--outputs", str(outputs), "Hi"]) == 0
    assert "finish:" in capsys.readouterr().err
