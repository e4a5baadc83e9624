"""The rules of per-key limits with no I/O: how limits are written, windows, refusals, resets, alert thresholds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from llm_stream.budget_alerts import crossed
from llm_stream.key_limits import KeyLimits, LimitsError, parse_limits
from llm_stream.rate_limits import (
    Counts,
    Windows,
    next_month_start,
    previous_month_of,
    ratelimit_headers,
    refusal,
    reset_text,
)

NOON = datetime(2026, 12, 7, 12, 0, 45, tzinfo=UTC).timestamp()


def counts(requests: int = 0, tokens: int = 0, month: int = 0, live: int = 0) -> Counts:
    return Counts(requests=requests, tokens=tokens, month_tokens=month, live_leases=live, expired_leases={})


def test_limits_are_written_as_name_value_pairs_and_none_removes_one() -> None:
    assert parse_limits("max_streams=4 rpm=60,tpm=20_000 monthly_tokens=none") == {
        "max_streams": 4, "rpm": 60, "tpm": 20000, "monthly_tokens": None}
    assert KeyLimits(rpm=5).over(KeyLimits(rpm=1, tpm=9)) == KeyLimits(rpm=5, tpm=9)
    assert KeyLimits(rpm=5, tpm=9).updated({"tpm": None}) == KeyLimits(rpm=5)
    assert KeyLimits(rpm=5, max_tokens=3).describe() == "rpm=5 max_tokens=3"
    assert not KeyLimits(max_tokens=3).counted  # a cap on one answer needs no shared count


@pytest.mark.parametrize(("text", "message"), [
    ("rpn=5", "'rpn=5' is not a limit: write NAME=VALUE with NAME one of max_streams, rpm"),
    ("rpm", "'rpm' is not a limit"),
    ("rpm=lots", "rpm='lots' is not valid: expected an integer (requests per minute) or 'none'"),
    ("rpm=0", "rpm=0 is not valid: expected an integer from 1 to 1000000000000"),
    ("max_streams=101", "max_streams=101 is not valid: expected an integer from 1 to 100"),
    ("rpm=1 rpm=2", "rpm is given twice"),
])
def test_bad_limits_are_refused_naming_the_value_and_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(LimitsError) as raised:
        parse_limits(text)
    assert message in str(raised.value)


def test_windows_are_calendar_minutes_and_months_in_utc() -> None:
    windows = Windows.at(NOON)
    assert windows.requests == f"rq_{int(NOON // 60)}"
    assert windows.month_tokens == "mo_202612"
    assert windows.settled_month == "ms_202612"
    assert next_month_start(NOON) == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert previous_month_of("202701") == "202612"
    assert previous_month_of("202612") == "202611"


def test_a_spent_budget_is_refused_first_and_not_to_be_retried() -> None:
    limits = KeyLimits(max_streams=1, rpm=1, monthly_tokens=10)
    refused = refusal(limits, counts(requests=1, month=10, live=1), NOON)
    assert refused is not None
    assert refused.error_type == "insufficient_quota"
    assert refused.headers["x-should-retry"] == "false"
    assert refused.message.endswith("it resets at 2027-01-01T00:00Z")


def test_each_limit_refuses_at_its_count_and_not_below() -> None:
    limits = KeyLimits(max_streams=2, rpm=3, tpm=100)
    assert refusal(limits, counts(requests=2, tokens=99, live=1), NOON) is None
    streams = refusal(limits, counts(live=2), NOON)
    assert streams is not None
    assert streams.headers["retry-after"] == "1"
    minute = refusal(limits, counts(requests=3), NOON)
    assert minute is not None
    assert minute.headers["retry-after"] == "15"
    assert "it resets in 15s" in minute.message
    tokens = refusal(limits, counts(tokens=100), NOON)
    assert tokens is not None
    assert "tpm limit (100)" in tokens.message


def test_openai_headers_for_the_limits_a_key_has() -> None:
    assert ratelimit_headers(KeyLimits(max_streams=2), counts(), NOON) == {}
    assert ratelimit_headers(KeyLimits(rpm=10, tpm=1000), counts(requests=3, tokens=1200), NOON) == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "7",
        "x-ratelimit-reset-requests": "15s", "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "15s"}


@pytest.mark.parametrize(("seconds", "text"), [(0.25, "250ms"), (1, "1s"), (59.2, "1m0s"), (360, "6m0s"),
                                               (3723, "1h2m3s")])
def test_resets_are_written_as_openai_writes_them(seconds: float, text: str) -> None:
    assert reset_text(seconds) == text


def test_each_alert_threshold_is_crossed_by_one_release_only() -> None:
    assert crossed(70, 85, 100) == [0.8]
    assert crossed(85, 90, 100) == []
    assert crossed(79, 100, 100) == [0.8, 1.0]
    assert crossed(100, 120, 100) == []
