"""How a key's limits are counted, what a refusal says, and OpenAI's rate-limit headers. No I/O here: the
counts come from the key's state item in DynamoDB (``limits_table.py``).

The rules, as the docs state them (docs/limits.md):

* ``max_streams``: each admitted answer holds a lease until it ends, however it ends; a lease whose holder
  vanished expires after the function's timeout and a margin.
* ``rpm`` and ``tpm`` count per calendar minute (UTC), ``monthly_tokens`` per calendar month (UTC), in the
  window the request was admitted in.
* Tokens are prompt and completion tokens as the container counted them. The function has no tokenizer, so
  a request is admitted while its window's count is below the limit, and then reserves its ``max_tokens``
  plus its prompt at :data:`~llm_stream.settings.INPUT_CHARS_PER_TOKEN` characters per token; when the
  answer ends the reservation is replaced by the counts (the estimate stays where the container does not
  count the prompt). So the requests in flight are counted at their largest, and one request may take a
  window past its limit by at most its own size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError
from .key_limits import KeyLimits

#: A refusal for want of a stream slot: retry soon (nobody knows when an answer ends).
STREAMS_RETRY_AFTER_SECONDS = 1


def minute_of(now: float) -> int:
    return int(now // 60)


def month_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m")


def next_month_start(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


def previous_month_of(month: str) -> str:
    """``yyyymm`` of the month before ``yyyymm``."""
    year, number = int(month[:4]), int(month[4:])
    return f"{year - 1}12" if number == 1 else f"{year}{number - 1:02d}"


@dataclass(frozen=True)
class Windows:
    """The windows a moment falls in, and their counters' attribute names in the state item."""

    #: Minutes since the epoch, and the UTC month as ``yyyymm``.
    minute: int
    month: str

    @classmethod
    def at(cls, now: float) -> Windows:
        return cls(minute=minute_of(now), month=month_of(now))

    @property
    def requests(self) -> str:
        return f"rq_{self.minute}"

    @property
    def tokens(self) -> str:
        return f"tk_{self.minute}"

    @property
    def month_tokens(self) -> str:
        return f"mo_{self.month}"

    @property
    def settled_month(self) -> str:
        """The month's tokens as answers used them (no reservations): only release writes it."""
        return f"ms_{self.month}"


@dataclass(frozen=True)
class Counts:
    """A key's counts in the windows of one moment, as its state item held them."""

    requests: int
    tokens: int
    month_tokens: int
    live_leases: int
    expired_leases: dict[str, int]

    @classmethod
    def of(cls, item: dict[str, Any], windows: Windows, now: float) -> Counts:
        leases = {name: int(until) for name, until in (item.get("leases") or {}).items()}
        return cls(requests=int(item.get(windows.requests, 0)), tokens=int(item.get(windows.tokens, 0)),
                   month_tokens=int(item.get(windows.month_tokens, 0)),
                   live_leases=sum(1 for until in leases.values() if until > now),
                   expired_leases={name: until for name, until in leases.items() if until <= now})


def refusal(limits: KeyLimits, counts: Counts, now: float) -> ApiError | None:
    """Why ``counts`` leave no room for one more request under ``limits`` (``None``: there is room). A spent
    budget comes first: it is the one refusal not worth retrying soon."""
    if limits.monthly_tokens is not None and counts.month_tokens >= limits.monthly_tokens:
        resets = datetime.fromtimestamp(next_month_start(now), UTC).strftime("%Y-%m-%dT%H:%MZ")
        headers = {**ratelimit_headers(limits, counts, now), "x-should-retry": "false",
                   "retry-after": str(math.ceil(next_month_start(now) - now))}
        return ApiError(429, "insufficient_quota",
                        f"this key has used its monthly_tokens budget ({limits.monthly_tokens} tokens this month, "
                        f"UTC); it resets at {resets}", headers=headers)
    if limits.max_streams is not None and counts.live_leases >= limits.max_streams:
        return _rate_limited(limits, counts, now, STREAMS_RETRY_AFTER_SECONDS,
                             f"this key has {counts.live_leases} answers in flight, its max_streams limit "
                             f"({limits.max_streams}); retry when one ends")
    if limits.rpm is not None and counts.requests >= limits.rpm:
        return _rate_limited(limits, counts, now, _to_next_minute(now),
                             f"this key made {counts.requests} requests this minute, its rpm limit ({limits.rpm}); "
                             f"it resets in {reset_text(_to_next_minute(now))}")
    if limits.tpm is not None and counts.tokens >= limits.tpm:
        return _rate_limited(limits, counts, now, _to_next_minute(now),
                             f"this key used or reserved {counts.tokens} tokens this minute, its tpm limit "
                             f"({limits.tpm}); it resets in {reset_text(_to_next_minute(now))}")
    return None


def _rate_limited(limits: KeyLimits, counts: Counts, now: float, retry_after: float, message: str) -> ApiError:
    headers = {**ratelimit_headers(limits, counts, now), "retry-after": str(max(1, math.ceil(retry_after)))}
    return ApiError(429, "rate_limit_exceeded", message, headers=headers)


def ratelimit_headers(limits: KeyLimits, counts: Counts, now: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the limits a key has (rpm: ``requests``, tpm: ``tokens``)."""
    headers: dict[str, str] = {}
    reset = reset_text(_to_next_minute(now))
    for kind, limit, used in (("requests", limits.rpm, counts.requests), ("tokens", limits.tpm, counts.tokens)):
        if limit is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, limit - used))
            headers[f"x-ratelimit-reset-{kind}"] = reset
    return headers


def reset_text(seconds: float) -> str:
    """A duration as OpenAI writes its resets: ``1s``, ``6m0s``, ``1h2m3s``, ``250ms``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def _to_next_minute(now: float) -> float:
    return (minute_of(now) + 1) * 60 - now
