"""Per-key limits through the real function under uvicorn, its keys and limit state in a DynamoDB table
(moto's server, the real boto3 client), in front of the emulator: every refusal kind before the endpoint is
called, the lease released however an answer ends, the ledger, and what the openai SDK makes of the headers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
import openai
import pytest

from infra.catalog import load_catalog
from infra.function_settings import model_settings
from llm_stream.api_keys import KeyRecord, key_digest
from llm_stream.key_limits import KeyLimits
from llm_stream.limits_table import key_item_key, plain, state_item_key
from sagemaker_emulator import EmulatorConfig, EmulatorServer, Fault
from stream_client.__main__ import main as client_main
from stream_client.key_admin import KeyAdmin
from stream_client.usage_report import UsageRow, usage_report
from tests.helpers.key_tables import table_admin
from tests.helpers.logs import LogRecords
from tests.helpers.servers import AppServer, several_models
from tests.helpers.slow_proxy import slow_proxy
from tests.helpers.sse import SSE, last, post_sse, tokens_of
from tests.helpers.waiting import wait_until

MODEL = "huggingface-llm-falcon-7b-instruct-bf16"
PROMPT = {"inputs": "Hello", "parameters": {"max_new_tokens": 8}}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
#: Tokens of the emulator's slow stream: long enough to hold a lease while a test looks.
SLOW = EmulatorConfig(ttft_ms=5, token_ms=40)


@pytest.fixture
def admin(key_table: str) -> KeyAdmin:
    return table_admin(key_table)


@pytest.fixture
def slow_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(SLOW) as emulator:
        yield emulator


def limited_function(start_function, emulator: EmulatorServer, admin: KeyAdmin, **overrides: Any) -> AppServer:
    return start_function(emulator, **{"auth_mode": "api_key", "api_keys_table": admin.table_name,
                                       "api_keys_refresh_seconds": 0.3, **overrides})


def key_with(admin: KeyAdmin, name: str, **limits: int) -> dict[str, str]:
    key, _ = admin.create(name, None, KeyLimits(**limits))
    return {"x-api-key": key}


def state(admin: KeyAdmin, name: str) -> dict[str, Any]:
    item = admin.client.get_item(TableName=admin.table_name, Key=state_item_key(name)).get("Item")
    return {} if item is None else plain(item)


def leases(admin: KeyAdmin, name: str) -> dict[str, Any]:
    return dict(state(admin, name).get("leases", {}))


def wait_for_no_leases(admin: KeyAdmin, name: str) -> None:
    deadline = time.monotonic() + 5
    while leases(admin, name):
        assert time.monotonic() < deadline, f"{name}'s lease was never released: {leases(admin, name)}"
        time.sleep(0.02)


class HeldStream:
    """A streamed answer read a token at a time on its own thread, holding its lease until told to stop."""

    def __init__(self, url: str, headers: dict[str, str], max_new_tokens: int = 200) -> None:
        self.first_token = threading.Event()
        self.stop = threading.Event()
        self.status: int | None = None
        payload = {"inputs": "Hello", "parameters": {"max_new_tokens": max_new_tokens}}
        self.thread = threading.Thread(target=self._read, args=(url, headers, payload), daemon=True)
        self.thread.start()
        assert self.first_token.wait(5), "the held stream never started"
        assert self.status == 200, self.status

    def _read(self, url: str, headers: dict[str, str], payload: dict[str, Any]) -> None:
        with httpx.stream("POST", url, json=payload, headers={**headers, **SSE}, timeout=30) as response:
            self.status = response.status_code
            for _ in response.iter_bytes():
                self.first_token.set()
                if self.stop.is_set():
                    return  # closing the connection: the caller left
        self.first_token.set()

    def leave(self) -> None:
        self.stop.set()
        self.thread.join(10)


# -- every refusal kind, before the endpoint is called -------------------------------------------


def test_max_streams_refuses_the_extra_stream_in_both_shapes_and_a_freed_slot_admits_again(
        start_function, slow_emulator: EmulatorServer, admin: KeyAdmin, request_logs: LogRecords) -> None:
    headers = key_with(admin, "team-a", max_streams=1)
    other = key_with(admin, "team-b", max_streams=1)
    function = limited_function(start_function, slow_emulator, admin)
    held = HeldStream(function.url, headers)
    calls_before = len(slow_emulator.requests)

    native = httpx.post(function.url, json=PROMPT, headers=headers, timeout=10)
    assert native.status_code == 429
    assert native.json()["error"]["type"] == "rate_limit_exceeded"
    assert "max_streams limit (1)" in native.json()["error"]["message"]
    assert native.headers["retry-after"] == "1"
    openai_shaped = httpx.post(function.url + "/v1/chat/completions", json=CHAT, headers=headers, timeout=10)
    assert openai_shaped.status_code == 429
    assert openai_shaped.json()["error"]["code"] == "rate_limit_exceeded"
    assert openai_shaped.json()["error"]["type"] == "rate_limit_error"
    assert len(slow_emulator.requests) == calls_before, "a refused request reached the endpoint"
    def refusal_lines() -> list[dict[str, Any]]:
        lines = [line for line in request_logs if line.get("error_type") == "rate_limit_exceeded"]
        return lines if len(lines) >= 2 else []

    refusals = wait_until(refusal_lines, "both refusals' log lines")
    assert [line["status"] for line in refusals] == [429, 429]
    assert {line["consumer"] for line in refusals} == {"team-a"}

    assert httpx.post(function.url, json=PROMPT, headers=other, timeout=10).status_code == 200  # its own slots
    held.leave()
    wait_for_no_leases(admin, "team-a")
    assert httpx.post(function.url, json=PROMPT, headers=headers, timeout=10).status_code == 200


def test_rpm_and_tpm_refuse_with_openai_headers_and_every_answer_carries_them(
        start_function, emulator: EmulatorServer, admin: KeyAdmin) -> None:
    minute_left = 60 - time.time() % 60
    if minute_left < 3:  # the two requests must fall in one minute
        time.sleep(minute_left + 0.1)
    headers = key_with(admin, "team-a", rpm=2, tpm=100_000)
    tight = key_with(admin, "team-t", tpm=2)
    function = limited_function(start_function, emulator, admin)
    first = httpx.post(function.url, json=PROMPT, headers=headers, timeout=10)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-limit-tokens"] == "100000"
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 100_000 - 8 - 2  # max_new_tokens + "Hello"/4
    assert first.headers["x-ratelimit-reset-requests"].endswith("s")
    assert httpx.post(function.url, json=PROMPT, headers=headers, timeout=10).status_code == 200
    third = httpx.post(function.url + "/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 8},
                       headers=headers, timeout=10)
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert "rpm limit (2)" in third.json()["error"]["message"]
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(third.headers["retry-after"]) <= 60

    assert httpx.post(function.url, json=PROMPT, headers=tight, timeout=10).status_code == 200  # 0 < 2: admitted
    wait_for_no_leases(admin, "team-t")

    def refusal() -> httpx.Response | None:
        answer = httpx.post(function.url, json=PROMPT, headers=tight, timeout=10)
        return answer if answer.status_code == 429 else None

    refused = wait_until(refusal, "the tokens used to be settled")
    assert refused is not None
    assert "tpm limit (2)" in refused.json()["error"]["message"]


def test_the_monthly_budget_ends_in_insufficient_quota_which_the_openai_sdk_does_not_retry(
        start_function, emulator: EmulatorServer, admin: KeyAdmin, request_logs: LogRecords) -> None:
    headers = key_with(admin, "team-a", monthly_tokens=30)
    function = limited_function(start_function, emulator, admin)
    spent = 0
    while (response := httpx.post(function.url, json=PROMPT, headers=headers, timeout=10)).status_code == 200:
        spent += 1
        assert spent < 10, "the budget was never reached"
    assert spent >= 2, "refused before the budget was spent"
    assert response.status_code == 429
    assert response.json()["error"]["type"] == "insufficient_quota"
    assert response.headers["x-should-retry"] == "false"
    now = datetime.now(UTC)
    next_month = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    assert response.json()["error"]["message"] == (
        f"this key has used its monthly_tokens budget (30 tokens this month, UTC); it resets at "
        f"{next_month:%Y-%m-%dT%H:%MZ}")

    client = openai.OpenAI(base_url=function.url + "/v1", api_key=headers["x-api-key"], max_retries=3)
    before = len(request_logs)
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
    assert raised.value.code == "insufficient_quota"
    assert len(request_logs.wait_for(before + 1)) == before + 1, "the SDK retried a spent budget"


@pytest.mark.slow  # seconds of waiting: in make test, not in make test-fast
def test_the_openai_sdk_waits_as_retry_after_says_and_then_succeeds(
        start_function, slow_emulator: EmulatorServer, admin: KeyAdmin, request_logs: LogRecords) -> None:
    headers = key_with(admin, "team-a", max_streams=1)
    function = limited_function(start_function, slow_emulator, admin)
    held = HeldStream(function.url, headers, max_new_tokens=10)  # ends by itself in about 0.4 s
    client = openai.OpenAI(base_url=function.url + "/v1", api_key=headers["x-api-key"], max_retries=2)
    started = time.monotonic()
    answer = client.completions.create(model=MODEL, prompt="Hi", max_tokens=4)
    elapsed = time.monotonic() - started
    held.leave()
    assert answer.choices[0].text
    def completions() -> list[int]:
        statuses = [line["status"] for line in request_logs if line.get("path") == "/v1/completions"]
        return statuses if statuses[-1:] == [200] else []

    statuses = wait_until(completions, "the answer's log line")
    assert statuses[0] == 429
    assert elapsed >= 1.0, "the SDK did not wait the Retry-After second"


def test_a_keys_max_tokens_caps_its_answers_and_refuses_larger_asks(
        start_function, emulator: EmulatorServer, admin: KeyAdmin) -> None:
    headers = key_with(admin, "team-a", max_tokens=5)
    function = limited_function(start_function, emulator, admin)
    too_long = httpx.post(function.url, json={"inputs": "Hi", "parameters": {"max_new_tokens": 6}}, headers=headers,
                          timeout=10)
    assert too_long.status_code == 422
    assert "at most 5" in too_long.json()["error"]["message"]
    _, events = post_sse(function.url, {"inputs": "Hi"}, headers=headers)  # the default, capped
    assert len(tokens_of(events)) == 5
    assert last(events)[1]["finish_reason"] == "length"


# -- the lease is released however the answer ends ----------------------------------------------


@pytest.mark.slow  # seconds of waiting: in make test, not in make test-fast
def test_the_lease_is_released_on_done_error_disconnect_and_deadline(
        start_function, slow_emulator: EmulatorServer, admin: KeyAdmin) -> None:
    headers = key_with(admin, "team-a", max_streams=1)
    function = limited_function(start_function, slow_emulator, admin, time_budget_seconds=1.0)

    _, events = post_sse(function.url, {"inputs": "Hi", "parameters": {"max_new_tokens": 3}}, headers=headers)
    assert last(events)[0] == "done"
    wait_for_no_leases(admin, "team-a")

    slow_emulator.inject(Fault(kind="in_band_error", after_tokens=2))
    _, events = post_sse(function.url, {"inputs": "Hi", "parameters": {"max_new_tokens": 50}}, headers=headers)
    assert last(events)[0] == "error"
    wait_for_no_leases(admin, "team-a")

    held = HeldStream(function.url, headers)
    assert leases(admin, "team-a")
    held.leave()
    wait_for_no_leases(admin, "team-a")

    _, events = post_sse(function.url, {"inputs": "Hi", "parameters": {"max_new_tokens": 200}}, headers=headers)
    assert last(events)[1]["type"] == "time_budget_exceeded"
    wait_for_no_leases(admin, "team-a")

    slow_emulator.inject(Fault(kind="model_error"))  # refused by the endpoint before any token: a status
    assert httpx.post(function.url, json=PROMPT, headers=headers, timeout=10).status_code == 502
    wait_for_no_leases(admin, "team-a")


# -- the ledger ----------------------------------------------------------------------------------


def test_the_ledger_counts_what_the_clients_received(
        start_function, emulator: EmulatorServer, admin: KeyAdmin, request_logs: LogRecords) -> None:
    headers = key_with(admin, "team-a")  # no limits: no admission, still a ledger
    function = limited_function(start_function, emulator, admin)
    received = 0
    for max_new_tokens in (3, 7, 11):
        _, events = post_sse(function.url, {"inputs": "Hello there", "parameters": {"max_new_tokens": max_new_tokens}},
                             headers=headers)
        received += len(tokens_of(events))
    client = openai.OpenAI(base_url=function.url + "/v1", api_key=headers["x-api-key"], max_retries=0)
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    assert answer.usage is not None
    received += answer.usage.completion_tokens
    prompt_tokens = answer.usage.prompt_tokens
    emulator.inject(Fault(kind="model_error"))
    assert httpx.post(function.url, json=PROMPT, headers=headers, timeout=10).status_code == 502

    today = datetime.now(UTC).date()

    def all_recorded() -> list[UsageRow]:
        rows = usage_report(admin, today, today, "team-a", price_per_hour=1.5).rows
        return rows if rows and rows[0].requests == 5 else []

    (row,) = wait_until(all_recorded, "five requests in the ledger")
    assert row.model == MODEL
    assert row.requests == 5
    assert row.completion_tokens == received
    assert row.prompt_tokens >= prompt_tokens > 0  # the emulator (TGI) counts every prompt
    assert row.requests_without_prompt_count == 0  # the failed one produced no token: it counts none
    assert row.errors == 1
    assert row.cost_share == 36.0  # the only key: the whole day at $1.5 an hour
    assert not [line for line in request_logs if line.get("event") == "usage_not_recorded"]


# -- when the table cannot admit ----------------------------------------------------------------


@pytest.mark.parametrize(("policy", "status"), [("allow", 200), ("refuse", 503)])
def test_an_unreachable_table_is_answered_as_limits_unavailable_says(
        start_function, emulator: EmulatorServer, admin: KeyAdmin, request_logs: LogRecords, policy: str,
        status: int) -> None:
    headers = key_with(admin, "team-a", rpm=100)
    function = limited_function(start_function, emulator, admin, limits_unavailable=policy,
                                api_keys_refresh_seconds=60)
    assert httpx.post(function.url, json=PROMPT, headers=headers, timeout=10).status_code == 200  # keys read
    boto3.client("dynamodb").delete_table(TableName=admin.table_name)
    started = time.monotonic()
    response = httpx.post(function.url, json=PROMPT, headers=headers, timeout=10)
    assert time.monotonic() - started < 5
    assert response.status_code == status
    def second_request_line() -> dict[str, Any] | None:
        lines = [line for line in request_logs if line["event"] == "request"]
        return lines[1] if len(lines) > 1 else None

    line = wait_until(second_request_line, "the second request's log line")
    assert line is not None
    assert line["_aws"]["CloudWatchMetrics"][0]["Metrics"][-1]["Name"] == "LimitsUnavailable"
    assert line["LimitsUnavailable"] == 1
    if policy == "refuse":
        assert response.json()["error"]["type"] == "limits_unavailable"
        assert "ResourceNotFoundException" in line["error_detail"]
    else:
        assert "ResourceNotFoundException" in line["limits"]
    lost = wait_until(lambda: [line for line in request_logs if line["event"] == "usage_not_recorded"
                               and line["write"] == "ledger"], "the unwritten ledger entry in the log")
    assert lost[0]["consumer"] == "team-a"
    assert "completion_tokens" in lost[0]["numbers"]["usage"]  # what the ledger missed, for whoever reconciles it


# -- budget alerts ---------------------------------------------------------------------------------


@pytest.mark.slow  # a server of its own (moto's SNS, SQS, Secrets Manager) or many writes
def test_budget_alerts_go_to_the_topic_once_at_80_and_once_at_100_percent(
        start_function, emulator: EmulatorServer, admin: KeyAdmin, request_logs: LogRecords) -> None:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name=f"budget-{time.monotonic_ns()}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"alerts-{time.monotonic_ns()}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    headers = key_with(admin, "team-a", monthly_tokens=50)
    function = limited_function(start_function, emulator, admin, budget_alerts_topic_arn=topic)
    while httpx.post(function.url, json=PROMPT, headers=headers, timeout=10).status_code == 200:
        pass

    def alerts() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        received.extend(json.loads(message["Body"]) for message in messages)
        return received if len(received) >= 2 else []

    received: list[dict[str, Any]] = []
    wait_until(alerts, "two budget alerts")
    time.sleep(0.2)
    alerts()  # none more
    assert [alert["threshold_percent"] for alert in received] == [80, 100]
    assert {alert["consumer"] for alert in received} == {"team-a"}
    assert received[1]["used_tokens"] >= 50
    assert received[1]["monthly_tokens"] == 50
    logged = [line for line in request_logs if line["event"] == "budget_alert"]
    assert [line["threshold_percent"] for line in logged] == [80, 100]


@pytest.mark.slow  # a server of its own (moto's SNS, SQS, Secrets Manager) or many writes
def test_where_the_container_does_not_count_the_prompt_the_ledger_says_so_and_the_limit_keeps_the_estimate(
        start_function, admin: KeyAdmin) -> None:
    """LMI 0.28 (the Mistral models) reports no prompt count: the ledger adds none and counts the request as
    one without it; the tpm window keeps the admission's estimate for the prompt."""
    mistral = load_catalog().get("huggingface-llm-mistral-7b-instruct")
    headers = key_with(admin, "team-a", tpm=100_000)
    config = EmulatorConfig(ttft_ms=5, token_ms=1, container="lmi", max_total_tokens=mistral.max_total_tokens)
    with EmulatorServer(config) as lmi:
        function = limited_function(start_function, lmi, admin, **model_settings(mistral))
        prompt = "Tell me about the sea, please."  # 30 characters: an estimate of 8 tokens
        answer = httpx.post(function.url + "/v1/completions", json={"model": mistral.model_id, "prompt": prompt,
                                                                     "max_tokens": 6}, headers=headers, timeout=10)
        assert answer.status_code == 200
        completion = answer.json()["usage"]["completion_tokens"]
        assert "prompt_tokens" not in answer.json()["usage"]
    today = datetime.now(UTC).date()
    row = wait_until(lambda: usage_report(admin, today, today, "team-a", None).rows, "the ledger entry")[0]
    assert row.prompt_tokens == 0
    assert row.requests_without_prompt_count == 1
    assert row.completion_tokens == completion
    wait_until(lambda: [value for name, value in state(admin, "team-a").items() if name.startswith("tk_")] == [
        completion + 8], "the reservation settled to the completion and the prompt's estimate")


# -- at platform scale, and the usage report through the CLI -----------------------------------------


@pytest.mark.slow  # seconds of waiting: in make test, not in make test-fast
def test_the_key_table_holds_a_thousand_keys_with_their_limits(
        start_function, emulator: EmulatorServer, admin: KeyAdmin) -> None:
    """Past what the older key secret could hold (64 KB): 1,000 records, read by the function in one refresh."""
    now = datetime.now(UTC)
    keys = [f"lsk-thousand-{index:04d}" for index in range(1000)]
    limits = KeyLimits(max_streams=4, rpm=600, tpm=100_000, monthly_tokens=5_000_000, max_tokens=512)
    records = [KeyRecord(name=f"team-{index:04d}", sha256=key_digest(key), created_at=now, limits=limits)
               for index, key in enumerate(keys)]
    for start in range(0, len(records), 25):
        admin.client.batch_write_item(RequestItems={admin.table_name: [
            {"PutRequest": {"Item": {**key_item_key(record.name),
                                     "record": {"S": json.dumps(record.to_json(), sort_keys=True)}}}}
            for record in records[start:start + 25]]})
    assert len(admin.ring().records) == 1000
    function = limited_function(start_function, emulator, admin)
    for key in (keys[0], keys[999]):
        answer = httpx.post(function.url, json=PROMPT, headers={"x-api-key": key}, timeout=10)
        assert answer.status_code == 200
        assert answer.headers["x-ratelimit-limit-requests"] == "600"


@pytest.mark.slow  # a server of its own (moto's SNS, SQS, Secrets Manager) or many writes
def test_keys_usage_prints_the_ledger_as_a_table_csv_and_json(
        start_function, emulator: EmulatorServer, admin: KeyAdmin, capsys) -> None:
    headers = {"team-a": key_with(admin, "team-a"), "team-b": key_with(admin, "team-b")}
    function = limited_function(start_function, emulator, admin)
    for name, times in (("team-a", 3), ("team-b", 1)):
        for _ in range(times):
            assert httpx.post(function.url, json=PROMPT, headers=headers[name], timeout=10).status_code == 200
    today = datetime.now(UTC).date()
    wait_until(lambda: sum(row.requests for row in usage_report(admin, today, today, None, None).rows) == 4,
               "four requests in the ledger")

    def keys_cli(*args: str) -> tuple[int, str, str]:
        status = client_main(["keys", "--table", admin.table_name, *args])
        captured = capsys.readouterr()
        # The function runs in this process: its request log lines share stdout with the command's output.
        out = "\n".join(line for line in captured.out.splitlines() if not line.startswith('{"event"'))
        return status, out, captured.err

    status, out, _ = keys_cli("usage", "--format", "json", "--price-per-hour", "2")
    assert status == 0
    report = json.loads(out)
    assert [(row["key"], row["requests"]) for row in report["rows"]] == [("team-a", 3), ("team-b", 1)]
    assert report["period_cost"] == 48.0 * ((today - today.replace(day=1)).days + 1)
    shares = [row["cost_share"] for row in report["rows"]]
    assert abs(sum(shares) - report["period_cost"]) < 0.02
    assert shares[0] > shares[1]
    status, out, _ = keys_cli("usage", "--format", "csv", "--key", "team-b")
    assert out.splitlines()[0].startswith("key,model,requests,prompt_tokens,completion_tokens")
    assert out.splitlines()[1].startswith(f"team-b,{MODEL},1,")
    # One key's rows keep their share of every key's tokens, not the whole cost.
    status, out, _ = keys_cli("usage", "--format", "json", "--price-per-hour", "2", "--key", "team-b")
    assert [row["cost_share"] for row in json.loads(out)["rows"]] == [shares[1]]
    # A priced model nobody called: its cost is said to be unshared, not spread over others.
    status, out, _ = keys_cli("usage", "--model-price", f"{MODEL}=2", "--model-price",
                              "huggingface-llm-mistral-7b-instruct=3")
    assert "Not shared: $" in out
    assert "of huggingface-llm-mistral-7b-instruct (no tokens counted in the period)" in out
    status, _, err = keys_cli("usage", "--model-price", f"{MODEL}=2", "--model-price", f"{MODEL}=3")
    assert status == 1
    assert "--model-price names a model twice" in err
    status, out, _ = keys_cli("usage")
    assert "No cost shares: pass --price-per-hour" in out
    status, _, err = keys_cli("usage", "--since", "2026-12-09", "--until", "2026-12-01")
    assert status == 1
    assert "--since 2026-12-09 is after --until 2026-12-01" in err


# -- what an admission holds is given back on every path --------------------------------------------------


@pytest.mark.slow  # seconds of waiting: in make test, not in make test-fast
def test_an_admission_whose_answer_came_too_late_gives_back_the_lease_it_took(
        start_function, emulator: EmulatorServer, admin: KeyAdmin, moto_server: str,
        monkeypatch: pytest.MonkeyPatch, request_logs: LogRecords) -> None:
    """DynamoDB applies the admission but its answer is slower than the function waits: the request is served
    uncounted (LIMITS_UNAVAILABLE=allow), and the lease the write took is released, not left to expire."""
    headers = key_with(admin, "team-a", max_streams=1)
    slow = threading.Event()

    def hold(request_headers: dict[str, str], body: bytes) -> float:
        admission = b"ReturnValuesOnConditionCheckFailure" in body
        return 3.0 if slow.is_set() and admission else 0.0

    with slow_proxy(moto_server, hold) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy)
        function = limited_function(start_function, emulator, admin)
        assert httpx.post(function.url, json=PROMPT, headers=headers, timeout=10).status_code == 200  # a first
        wait_for_no_leases(admin, "team-a")
        slow.set()
        assert httpx.post(function.url, json=PROMPT, headers=headers, timeout=10).status_code == 200
        slow.clear()
        line = wait_until(lambda: [line for line in request_logs if line["event"] == "request"][1:], "the log line")[0]
        assert "admitted uncounted" in line["limits"]
        wait_for_no_leases(admin, "team-a")
        assert httpx.post(function.url, json=PROMPT, headers=headers, timeout=10).status_code == 200


def test_a_request_refused_after_admission_counts_no_tokens_and_frees_its_lease(
        start_function, slow_emulator: EmulatorServer, admin: KeyAdmin) -> None:
    """Admitted under the key's limits, then refused by the function's own stream slots (503): nothing was
    generated, so the key's windows get their reservation back."""
    busy, limited = key_with(admin, "busy"), key_with(admin, "team-a", max_streams=2, tpm=100_000)
    function = limited_function(start_function, slow_emulator, admin, max_concurrent_streams=1,
                                queue_wait_seconds=0)
    held = HeldStream(function.url, busy)
    refused = httpx.post(function.url, json=PROMPT, headers=limited, timeout=10)
    held.leave()
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "too_many_streams"
    wait_for_no_leases(admin, "team-a")
    counters = {name: value for name, value in state(admin, "team-a").items() if name.startswith(("tk_", "mo_"))}
    assert set(counters.values()) == {0}


@pytest.mark.slow  # a server of its own (moto's SNS, SQS, Secrets Manager) or many writes
def test_a_failed_alert_is_logged_as_such_and_the_release_stands(
        start_function, emulator: EmulatorServer, admin: KeyAdmin, request_logs: LogRecords) -> None:
    headers = key_with(admin, "team-a", monthly_tokens=5)
    function = limited_function(start_function, emulator, admin,
                                budget_alerts_topic_arn="arn:aws:sns:us-east-1:123456789012:no-such-topic")
    assert httpx.post(function.url, json=PROMPT, headers=headers, timeout=10).status_code == 200
    failed = wait_until(lambda: [line for line in request_logs if line["event"] == "budget_alert_not_sent"],
                        "the unsent alert's log line")
    assert [line["threshold_percent"] for line in failed] == [80, 100]
    assert "NotFound" in failed[0]["error"]
    wait_for_no_leases(admin, "team-a")
    assert not [line for line in request_logs if line["event"] == "usage_not_recorded"]


def test_a_key_restricted_to_other_models_is_refused_before_the_endpoint(
        start_function, emulator: EmulatorServer, admin: KeyAdmin) -> None:
    key, record = admin.create("team-a", None, KeyLimits())
    admin.client.update_item(
        TableName=admin.table_name, Key=key_item_key("team-a"), UpdateExpression="SET #record = :record",
        ExpressionAttributeNames={"#record": "record"}, ExpressionAttributeValues={":record": {"S": json.dumps(
            {**record.to_json(), "allowed_models": ["huggingface-llm-mistral-7b-instruct"]})}})
    function = limited_function(start_function, emulator, admin)
    refused = httpx.post(function.url + "/v1/completions", json={"model": MODEL, "prompt": "Hi"},
                         headers={"x-api-key": key}, timeout=10)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "model_not_allowed"
    assert emulator.requests == []


def test_a_key_s_limits_on_one_model_count_that_model_apart_and_each_model_shares_its_own_cost(
        start_function, admin: KeyAdmin, capsys) -> None:
    """Two models behind the URL: team-a may make 5 requests a minute, 1 of them to Mistral (set with the CLI).
    A request to Mistral counts against team-a and team-a@Mistral; the ledger and the cost shares are per
    model."""
    mistral = "huggingface-llm-mistral-7b-instruct"
    minute_left = 60 - time.time() % 60
    if minute_left < 4:  # the requests must fall in one minute
        time.sleep(minute_left + 0.1)
    headers, other = key_with(admin, "team-a", rpm=5), key_with(admin, "team-c")
    assert client_main(["keys", "--table", admin.table_name, "set-limits", "team-a", "--model", mistral,
                        "--rpm", "1"]) == 0
    assert f"rpm=5; {mistral}: rpm=1" in capsys.readouterr().err
    emulator, served = several_models(f"{MODEL},{mistral}")
    with emulator:
        function = limited_function(start_function, emulator, admin, **served)

        def chat(model: str, key: dict[str, str] = headers) -> httpx.Response:
            return httpx.post(f"{function.url}/v1/chat/completions", json={**CHAT, "model": model}, headers=key,
                              timeout=10)

        first = chat(mistral)
        assert first.status_code == 200
        assert (first.headers["x-ratelimit-limit-requests"], first.headers["x-ratelimit-remaining-requests"]) == (
            "1", "0")
        refused = chat(mistral)
        assert refused.status_code == 429
        assert "rpm limit (1)" in refused.json()["error"]["message"]
        falcon = chat(MODEL)  # the key's own count holds both of Mistral's (the refused one counted there first)
        assert falcon.status_code == 200
        assert (falcon.headers["x-ratelimit-limit-requests"], falcon.headers["x-ratelimit-remaining-requests"]) == (
            "5", "2")
        assert chat(MODEL, other).status_code == 200
    wait_for_no_leases(admin, "team-a")
    wait_for_no_leases(admin, f"team-a@{mistral}")  # the refused request's lease on team-a given back too
    assert [request.headers["X-Amzn-SageMaker-Inference-Component"] for request in emulator.requests] == [
        mistral, MODEL, MODEL]
    today = datetime.now(UTC).date()
    # The refusal is in the ledger too (a request, an error, no tokens).
    wait_until(lambda: sum(row.requests for row in usage_report(admin, today, today, None, None).rows) == 4,
               "four requests in the ledger")
    assert client_main(["keys", "--table", admin.table_name, "usage", "--format", "json",
                        "--model-price", f"{MODEL}=1", "--model-price", f"{mistral}=3"]) == 0
    out = "\n".join(line for line in capsys.readouterr().out.splitlines() if not line.startswith('{"event"'))
    report = json.loads(out)
    shares = {(row["key"], row["model"]): row["cost_share"] for row in report["rows"]}
    days = (today - today.replace(day=1)).days + 1
    # Mistral's whole cost is team-a's (its only caller); Falcon's is shared by team-a and team-c.
    assert shares[("team-a", mistral)] == 3 * 24 * days
    assert abs(shares[("team-a", MODEL)] + shares[("team-c", MODEL)] - 24 * days) < 0.02
    assert report["period_cost"] == 4 * 24 * days
    assert client_main(["keys", "--table", admin.table_name, "list"]) == 0
    assert f"rpm=5; {mistral}: rpm=1" in capsys.readouterr().out
