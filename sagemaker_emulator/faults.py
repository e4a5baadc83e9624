"""Fault knobs: what can go wrong between SageMaker, the container and the caller."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

FaultKind = Literal[
    "throttle",  # HTTP 429 ThrottlingException before any byte
    "model_error",  # HTTP 424 ModelError: the container answered 5xx
    "unknown_endpoint",  # HTTP 400 ValidationError: endpoint not found
    "in_band_error",  # TGI error event after `after_tokens` tokens, HTTP 200
    "model_stream_error",  # ModelStreamError exception frame after `after_tokens` tokens
    "internal_stream_failure",  # InternalStreamFailure exception frame after `after_tokens` tokens
    "drop_connection",  # socket closed mid-frame after `after_tokens` tokens
    "stall",  # nothing sent for `stall_seconds` after `after_tokens` tokens
    "stall_before_response",  # nothing, not even the response's headers, for `stall_seconds`; then the answer
    "grammar_not_enforced",  # TGI could not compile `parameters.grammar` and generates without it
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
#: The longest stall a fault may ask for (an hour: longer than any timeout it could be testing).
MAX_STALL_SECONDS = 3600
PRE_STREAM_FAULTS = frozenset({"throttle", "model_error", "unknown_endpoint", "stall_before_response"})
#: Faults that change how the container generates, not how the stream flows.
GENERATION_FAULTS = frozenset({"grammar_not_enforced"})


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    after_tokens: int = 0
    stall_seconds: float = 30.0
    #: How many requests it applies to; ``None`` means every request until cleared.
    times: int | None = 1
    error_type: str = "generation"  # for in_band_error
    message: str = ""

    def __post_init__(self) -> None:
        # Checked when the fault is set, so a bad knob is a 400 then, not a crash in a later request.
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; allowed: {', '.join(FAULT_KINDS)}")
        _require(_whole(self.after_tokens) and self.after_tokens >= 0, "after_tokens", self.after_tokens,
                 "a whole number >= 0")
        _require(isinstance(self.stall_seconds, int | float) and not isinstance(self.stall_seconds, bool)
                 and math.isfinite(self.stall_seconds) and 0 <= self.stall_seconds <= MAX_STALL_SECONDS,
                 "stall_seconds", self.stall_seconds, f"a number of seconds from 0 to {MAX_STALL_SECONDS}")
        _require(self.times is None or (_whole(self.times) and self.times >= 1), "times", self.times,
                 "a whole number >= 1, or null")
        _require(isinstance(self.error_type, str), "error_type", self.error_type, "a string")
        _require(isinstance(self.message, str), "message", self.message, "a string")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        allowed = set(cls.__dataclass_fields__)
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields {sorted(unknown)}; allowed: {sorted(allowed)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
