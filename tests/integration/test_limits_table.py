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
from llm_stream.limits_table import (
    Admission,
    LimitsTable,
    Usage,
    new_lease_id,
    plain,
    state_item_key,
    usage_item_key,
)
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


def admit(table: LimitsTable, name: str, limits: KeyLimits, reserve: int, lease_seconds: float = LEASE_SECONDS,
          now: float | None = None) -> Admission:
    return table.admit(name, limits, reserve, lease_seconds, new_lease_id(), time.time() if now is None else now)


def state(table: LimitsTable, name: str) -> dict:
    return plain(table.client.get_item(TableName=table.table_name, Key=state_item_key(name))["Item"])


def refused(call) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("run", [0, *(pytest.param(run, marks=pytest.mark.slow) for run in range(1, 5))])
def test_two_hundred_concurrent_admissions_never_admit_a_sixth(table: LimitsTable, run: int) -> None:
    limits = KeyLimits(max_streams=5)

    def attempt(_: int) -> str:
        try:
            admit(table, "greedy", limits, reserve=10)
        except ApiError as exc:
            return exc.error_type
        return "admitted"

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(attempt, range(200)))
    assert outcomes.count("admitted") == 5
    assert outcomes.count("rate_limit_exceeded") == 195
    assert len(state(table, "greedy")["leases"]) == 5


def test_a_released_lease_frees_its_slot_and_settles_the_tokens(table: LimitsTable) -> None:
    limits = KeyLimits(max_streams=1, tpm=1000)
    now = time.time()
    first = admit(table, "team", limits, reserve=300, lease_seconds=LEASE_SECONDS, now=now)
    assert first.headers["x-ratelimit-remaining-tokens"] == "700"
    refusal = refused(lambda: admit(table, "team", limits, reserve=300, lease_seconds=LEASE_SECONDS, now=now))
    assert refusal.status == 429
    assert "max_streams" in refusal.message
    assert refusal.headers["retry-after"] == "1"
    table.release(first, used_tokens=120, now=now)
    item = state(table, "team")
    assert item["leases"] == {}
    assert item[first.windows.tokens] == 120
    second = admit(table, "team", limits, reserve=300, lease_seconds=LEASE_SECONDS, now=now)
    assert second.headers["x-ratelimit-remaining-tokens"] == str(1000 - 120 - 300)


def test_a_lease_whose_holder_vanished_expires_through_the_condition(table: LimitsTable) -> None:
    limits = KeyLimits(max_streams=2)
    now = time.time()
    for _ in range(2):  # two holders that never release (a crashed instance)
        admit(table, "team", limits, reserve=1, lease_seconds=60, now=now)
    assert refused(lambda: admit(table, "team", limits, reserve=1, lease_seconds=60, now=now + 30)).status == 429
    later = admit(table, "team", limits, reserve=1, lease_seconds=60, now=now + 62)
    leases = state(table, "team")["leases"]
    assert list(leases) == [later.lease_id], "both vanished leases went, the new one is the only one"


def test_rpm_refuses_within_the_minute_and_says_when_it_resets(table: LimitsTable) -> None:
    limits = KeyLimits(rpm=2)
    minute_start = (int(time.time()) // 60 + 1) * 60.0
    for _ in range(2):
        admit(table, "team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=minute_start + 10)
    refusal = refused(lambda: admit(table, "team", limits, reserve=1, lease_seconds=LEASE_SECONDS,
                                          now=minute_start + 45))
    assert refusal.error_type == "rate_limit_exceeded"
    assert refusal.headers["retry-after"] == "15"
    assert refusal.headers["x-ratelimit-reset-requests"] == "15s"
    assert refusal.headers["x-ratelimit-remaining-requests"] == "0"
    assert "rpm" in refusal.message
    next_minute = admit(table, "team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=minute_start + 61)
    assert next_minute.headers["x-ratelimit-remaining-requests"] == "1"


def test_tpm_admits_below_the_limit_and_a_request_overshoots_by_at_most_its_own_size(table: LimitsTable) -> None:
    limits = KeyLimits(tpm=100)
    now = (int(time.time()) // 60 + 1) * 60.0 + 1
    first = admit(table, "team", limits, reserve=90, lease_seconds=LEASE_SECONDS, now=now)
    second = admit(table, "team", limits, reserve=90, lease_seconds=LEASE_SECONDS, now=now)  # 90 < 100: admitted
    assert second.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused(lambda: admit(table, "team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now)).status == 429
    table.release(first, used_tokens=5, now=now)
    table.release(second, used_tokens=5, now=now)  # 10 used: room again
    admit(table, "team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now)


def test_the_monthly_budget_is_insufficient_quota_until_the_month_turns(table: LimitsTable) -> None:
    limits = KeyLimits(monthly_tokens=50)
    now = NEW_YEAR - 3600  # 2026-12-31T23:00Z
    admitted = admit(table, "team", limits, reserve=40, lease_seconds=LEASE_SECONDS, now=now)
    table.release(admitted, used_tokens=60, now=now)  # the answer used more than it reserved
    refusal = refused(lambda: admit(table, "team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now + 60))
    assert refusal.error_type == "insufficient_quota"
    assert refusal.headers["x-should-retry"] == "false"
    assert "2027-01-01T00:00Z" in refusal.message
    admit(table, "team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now + 3601)  # January


def test_counters_of_windows_gone_by_are_removed_on_release(table: LimitsTable) -> None:
    limits = KeyLimits(rpm=100)
    now = time.time()
    table.release(admit(table, "team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now - 600), 1, now - 600)
    later = admit(table, "team", limits, reserve=1, lease_seconds=LEASE_SECONDS, now=now)
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


def test_a_release_across_the_month_turn_keeps_the_month_its_answer_was_admitted_in(table: LimitsTable) -> None:
    """An answer admitted on December 31st ends in January, after a January release tidied old windows: its
    tokens still land on December's counts (which the tidying keeps), so December's settled count only grows."""
    limits = KeyLimits(monthly_tokens=100)
    first = admit(table, "team", limits, reserve=10, now=NEW_YEAR - 120)
    assert table.release(first, used_tokens=85, now=NEW_YEAR - 100) == 85
    december = admit(table, "team", limits, reserve=10, now=NEW_YEAR - 30)  # still running at midnight
    january = admit(table, "team", limits, reserve=10, now=NEW_YEAR + 30)
    table.release(january, used_tokens=4, now=NEW_YEAR + 40)
    assert table.release(december, used_tokens=5, now=NEW_YEAR + 60) == 90  # not 5: December's count was kept
    assert table.release(december, used_tokens=5, now=NEW_YEAR + 61) is None  # released once only
    item = state(table, "team")
    assert item["ms_202612"] == 90
    assert item["ms_202701"] == 4


def test_windows_older_than_the_previous_one_are_tidied(table: LimitsTable) -> None:
    limits = KeyLimits(rpm=100)
    october = admit(table, "team", limits, reserve=1, now=NEW_YEAR - 70 * 86400)
    table.release(october, used_tokens=1, now=NEW_YEAR - 70 * 86400)
    table.release(admit(table, "team", limits, reserve=1, now=NEW_YEAR + 30), used_tokens=1, now=NEW_YEAR + 30)
    months = sorted(name for name in state(table, "team") if name.startswith(("mo_", "ms_")))
    assert months == ["mo_202701", "ms_202701"]
