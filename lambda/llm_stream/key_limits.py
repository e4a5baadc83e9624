"""What one API key may use: answers in flight, requests and tokens per minute, tokens per month, and the
length of one answer. A key's own limits override the deployment's defaults one by one; ``None`` is no limit.

Written as ``max_streams=4 rpm=60`` (the CLI, ``make dev LIMITS=...``) and stored as a JSON object in the
key's record (``api_keys.py``). How each is counted is in ``rate_limits.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

#: Each limit and what it caps, in the words the CLI and the errors use.
LIMITS = {
    "max_streams": "answers in flight at once",
    "rpm": "requests per minute",
    "tpm": "tokens per minute (prompt and completion)",
    "monthly_tokens": "tokens per calendar month (UTC)",
    "max_tokens": "tokens of one answer",
}
#: The largest value any limit may have (DynamoDB numbers hold far more; this catches typos).
MAX_LIMIT = 10**12
#: max_streams counts leases kept in one DynamoDB item (``limits_table.py``), about 30 bytes each, and a write
#: costs a unit per KB of the item: 100 answers in flight are 3 units a write.
MAX_STREAMS_LIMIT = 100


class LimitsError(ValueError):
    """A limit is unknown or its value is not allowed (the message names both)."""


@dataclass(frozen=True)
class KeyLimits:
    max_streams: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    monthly_tokens: int | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        for name, value in self.items():
            if value is None:
                continue
            highest = MAX_STREAMS_LIMIT if name == "max_streams" else MAX_LIMIT
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= highest:
                raise LimitsError(f"{name}={value!r} is not valid: expected an integer from 1 to {highest} "
                                  f"({LIMITS[name]}), or 'none' for no limit")

    def items(self) -> list[tuple[str, int | None]]:
        return [(limit.name, getattr(self, limit.name)) for limit in fields(self)]

    @property
    def counted(self) -> bool:
        """Whether admission must count this key's requests in the shared table (every limit but max_tokens)."""
        return any(value is not None for name, value in self.items() if name != "max_tokens")

    def over(self, defaults: KeyLimits) -> KeyLimits:
        """These limits where set, the defaults elsewhere."""
        return replace(defaults, **{name: value for name, value in self.items() if value is not None})

    def updated(self, changes: dict[str, int | None]) -> KeyLimits:
        """These limits with ``changes`` applied (``None`` removes a limit)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, int]:
        return {name: value for name, value in self.items() if value is not None}

    @classmethod
    def from_json(cls, value: object, where: str = "limits") -> KeyLimits:
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise LimitsError(f"{where} is not an object of limits ({', '.join(LIMITS)})")
        unknown = sorted(set(value) - set(LIMITS))
        if unknown:
            raise LimitsError(f"{where} has unknown limits {', '.join(unknown)}: expected {', '.join(LIMITS)}")
        return cls(**value)

    def describe(self) -> str:
        return " ".join(f"{name}={value}" for name, value in self.items() if value is not None) or "none"


def parse_limits(text: str) -> dict[str, int | None]:
    """``max_streams=4 rpm=60`` (spaces or commas between) as changes; ``rpm=none`` removes that limit."""
    changes: dict[str, int | None] = {}
    for part in text.replace(",", " ").split():
        name, sep, raw = part.partition("=")
        if not sep or name not in LIMITS:
            raise LimitsError(f"{part!r} is not a limit: write NAME=VALUE with NAME one of {', '.join(LIMITS)}")
        if name in changes:
            raise LimitsError(f"{name} is given twice")
        changes[name] = None if raw.lower() == "none" else _integer(name, raw)
    KeyLimits(**changes)  # every value checked here, with the error naming it
    return changes


def _integer(name: str, raw: str) -> int:
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        raise LimitsError(f"{name}={raw!r} is not valid: expected an integer ({LIMITS[name]}) or 'none'") from None

