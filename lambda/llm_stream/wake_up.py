"""Scale to zero: how long until the model is awake, counted from the first "no capacity" answer seen.

While an endpoint's inference component has no copies, SageMaker refuses invocations at once, and a
CloudWatch alarm on those refusals asks Application Auto Scaling for a copy. The function never waits for
it (a Lambda held open for minutes bills and blocks a stream slot): it answers 503 ``model_waking_up``
with the time left of the expected wake-up, counted down from the first refusal, and a ``Retry-After`` of
at most a minute (the OpenAI SDKs honour ``Retry-After`` only up to 60 s; beyond it they retry within
seconds), so callers poll about once a minute until the model is ready.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: The least ``Retry-After`` given, once the expected time has passed and the model is still waking.
MIN_RETRY_AFTER_SECONDS = 10
MAX_RETRY_AFTER_SECONDS = 60


@dataclass(frozen=True)
class WakeUpEstimate:
    #: What is left of the expected wake-up time (0 once it has passed).
    seconds_left: int
    retry_after: int


class WakeUpClock:
    def __init__(self, expected_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._expected = expected_seconds
        self._clock = clock
        self._since: float | None = None
        self._lock = threading.Lock()

    def estimate(self) -> WakeUpEstimate:
        """Counted from the first refusal (a new wake-up starts the count again once twice the expected time
        has passed)."""
        with self._lock:
            now = self._clock()
            if self._since is None or now - self._since > 2 * self._expected:
                self._since = now
            left = max(0, math.ceil(self._expected - (now - self._since)))
        return WakeUpEstimate(left, min(MAX_RETRY_AFTER_SECONDS, max(MIN_RETRY_AFTER_SECONDS, left)))

    def awake(self) -> None:
        """The endpoint answered: the next refusal is a new wake-up."""
        with self._lock:
            self._since = None
