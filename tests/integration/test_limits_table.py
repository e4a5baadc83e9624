"""Admission, release and the ledger against a DynamoDB API over HTTP (moto's server), with the real boto3
client: the conditional writes as DynamoDB evaluates them, not as the function hopes."""

from __future__ import annotations

import concurrent.futures
import time
from datetime import UTC, datetime

import boto3
import pytest

from llm_stream.errors import ApiError
from llm_stream.key_limits import KeyLimits
from llm_stream.limits_table import LimitsTable, Usage, plain, state_item_key, usage_item_key
from local_mode.dynamodb import create_table

LEASE_SECONDS = 300.0
NEW_YEAR = datetime(2027, 1, 1, tzinfo=UTC).timestamp()


@pytest.fixture
def table(moto_server: str) -> LimitsTable:
    client = boto3.client("dynamodb", endpoint_url=moto_server, region_name="us-east-1",
                          aws_access_key_id="local", aws_secret_access_key="local")
    name = f"limits-{time.monotonic_ns()}"
    create_table(client, name)
    return LimitsTable(client, name)


def state(table: LimitsTable, name: str) -> dict:
    return plain(table.client.get_item(TableName=table.table_name, Key=state_item_key(name))["Item"])


def refused(call) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("run", range(5))
def test_two_hundred_concurrent_admissions_never_admit_a_sixth(table: LimitsTable, run: int) -> None:
    limits = KeyLimits(max_streams=5)

    def admit(_: int) -> str:
        try:
            table.admit("greedy", limits, reserve=10, lease_seconds=LEASE_SECONDS)
        except ApiError as exc:
            return exc.error_type
        return "admitted"

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(admit, range(200)))
    assert outcomes.count("admitted") == 5
    assert outcomes.count("rate_limit_exceeded") == 195
    assert len(state(table, "greedy")["leases"]) == 5


def test_a_released_lease_frees_its_slot_and_settles_the_tokens(table: LimitsTable) -> None:
    limits = KeyLimits(max_streams=1, tpm=1000)
    now = time.time()
    first = table.admit("team", limits, reserve=300, lease_seconds=LEASE_SECONDS, now=now)
    assert first.headers["x-ratelimit-remaining-tokens"] == "700"
    refusal = refused(lambda: table.admit("team", limits, reserve=300, lease_seconds=LEASE_SECONDS, now=now))
    assert refusal.status == 429
    assert "max_streams" in refusal.message
    assert refusal.headers["retry-after"] == "1"
    table.release(first, used_tokens=120, now=now)
    item = state(table, "team")
    assert item["leases"] == {}
    assert item[first.windows.tokens] == 120
    second = table.admit("team", limits, reserve=300, lease_seconds=LEASE_SECONDS, now=now)
    assert second.headers["x-ratelimit-remaining-tokens"] == str(1000 - 120 - 300)


def test_a_lease_whose_holder_vanished_expires_through_the_condition(table: LimitsTable) -> None:
    limits = KeyLimits(max_streams=2)
    now = time.time()
    for _ in range(2):  # two holders that never release (a crashed instance)
        table.admit("team", limits, reserve=1, lease_seconds=60, now=now)
    assert refused(lambda: table.admit("team", limits, reserve=1, lease_seconds=60, now=now + 30)).status == 429
    later = table.admit("team", limits, reserve=1, lease_seconds=60, now=now + 62)
    leases = state(table, "team")["leases"]
    assert list(leases) == [later.lease_id], "both vanished leases went, the new one is the only one"


def test_rpm_refuses_within_the_minute_and_says_when_it_resets(table: LimitsTable) -> None:
    limits = KeyLimits(rpm=2)
    minute_start = (int(time.time()) // 60 + 1) * 60.0
    for _ in range(2):
        table.admit("team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=minute_start + 10)
    refusal = refused(lambda: table.admit("team", limits, reserve=1, lease_seconds=LEASE_SECONDS,
                                          now=minute_start + 45))
    assert refusal.error_type == "rate_limit_exceeded"
    assert refusal.headers["retry-after"] == "15"
    assert refusal.headers["x-ratelimit-reset-requests"] == "15s"
    assert refusal.headers["x-ratelimit-remaining-requests"] == "0"
    assert "rpm" in refusal.message
    next_minute = table.admit("team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=minute_start + 61)
    assert next_minute.headers["x-ratelimit-remaining-requests"] == "1"


def test_tpm_admits_below_the_limit_and_a_request_overshoots_by_at_most_its_own_size(table: LimitsTable) -> None:
    limits = KeyLimits(tpm=100)
    now = (int(time.time()) // 60 + 1) * 60.0 + 1
    first = table.admit("team", limits, reserve=90, lease_seconds=LEASE_SECONDS, now=now)
    second = table.admit("team", limits, reserve=90, lease_seconds=LEASE_SECONDS, now=now)  # 90 < 100: admitted
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused(lambda: table.admit("team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now)).status == 429
    table.release(first, used_tokens=5, now=now)
    table.release(second, used_tokens=5, now=now)  # 10 used: room again
    table.admit("team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now)


def test_the_monthly_budget_is_insufficient_quota_until_the_month_turns(table: LimitsTable) -> None:
    limits = KeyLimits(monthly_tokens=50)
    now = NEW_YEAR - 3600  # 2026-12-31T23:00Z
    admitted = table.admit("team", limits, reserve=40, lease_seconds=LEASE_SECONDS, now=now)
    table.release(admitted, used_tokens=60, now=now)  # the answer used more than it reserved
    refusal = refused(lambda: table.admit("team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now + 60))
    assert refusal.error_type == "insufficient_quota"
    assert refusal.headers["x-should-retry"] == "false"
    assert "2027-01-01T00:00Z" in refusal.message
    table.admit("team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now + 3601)  # January


def test_counters_of_windows_gone_by_are_removed_on_release(table: LimitsTable) -> None:
    limits = KeyLimits(rpm=100)
    now = time.time()
    table.release(table.admit("team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now - 600), 1, now - 600)
    later = table.admit("team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now)
    table.release(later, used_tokens=1, now=now)
    counters = sorted(name for name in state(table, "team") if name.startswith(("rq_", "tk_")))
    assert counters == sorted([later.windows.requests, later.windows.tokens])


def test_the_ledger_adds_each_request_to_its_key_day_and_model(table: LimitsTable) -> None:
    now = NEW_YEAR + 3600
    table.record_usage("team", "model-a", Usage(10, 5, 1.5, None), now=now)
    table.record_usage("team", "model-a", Usage(3, None, 0.25, "upstream_timeout"), now=now)
    item = plain(table.client.get_item(TableName=table.table_name,
                                       Key=usage_item_key("team", "2027-01-01", "model-a"))["Item"])
    assert item["requests"] == 2
    assert item["completion_tokens"] == 13
    assert item["prompt_tokens"] == 5
    assert item["requests_without_prompt_count"] == 1
    assert item["errors_upstream_timeout"] == 1
    assert item["stream_ms"] == 1750
    assert item["key_name"] == "team"
    assert item["model"] == "model-a"
