"""Scale to zero: an endpoint whose model is an inference component, and the copies serving it.

With no copies, SageMaker refuses every invocation at once with a ValidationError (HTTP 400) whose
message begins ``Inference Component has no capacity to process this request`` (AWS's scale-to-zero
launch post and notebooks). Deployed, those refusals show in CloudWatch as ``NoCapacityInvocationFailures``,
whose alarm asks Application Auto Scaling for a copy; minutes later the copy serves. Here the first
refusal starts that clock (``warm_up_seconds``), and ``idle_seconds`` without an invocation takes the
copies back to zero, as the stack's idle alarm does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: SageMaker's whole answer while a component has no copies (AWS's scale-to-zero notebooks).
NO_CAPACITY_MESSAGE = ("Inference Component has no capacity to process this request. ApplicationAutoScaling may be "
                       "in-progress (if configured) or try to increase the capacity by invoking "
                       "UpdateInferenceComponentRuntimeConfig API.")
#: Its answer to an invocation of such an endpoint that names no component (quoted in langchain#14344).
COMPONENT_REQUIRED_MESSAGE = ("Inference Component Name header is required for endpoints to which you plan to deploy "
                              "inference components. Please include Inference Component Name header or consider "
                              "using SageMaker models.")


@dataclass(frozen=True)
class Admission:
    """Whether an invocation may reach the model; if not, the ValidationError message to answer with."""

    admitted: bool
    message: str = ""


class Capacity:
    """The component's copies over time (thread-safe)."""

    def __init__(self, component: str, copies: int, warm_up_seconds: float, idle_seconds: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.component = component
        self._copies = copies
        self._warm_up = warm_up_seconds
        self._idle = idle_seconds
        self._clock = clock
        self._ready_at: float | None = None
        self._last_invocation = clock()
        self._lock = threading.Lock()

    @staticmethod
    def unknown(named: str | None, account: str) -> Admission:
        """The refusal of an invocation that names no component, or one the endpoint does not host."""
        if not named:
            return Admission(False, COMPONENT_REQUIRED_MESSAGE)
        # Not quoted from AWS: the endpoint-not-found answer's wording, for a component.
        return Admission(False, f"Inference Component {named} of account {account} not found.")

    def admit(self, named: str | None, account: str) -> Admission:
        """One invocation: refused without the component's name, or while there is no copy (the first such
        refusal starts the scale-out); otherwise admitted."""
        if named != self.component:
            return self.unknown(named, account)
        with self._lock:
            now = self._advance()
            self._last_invocation = now
            if self._copies:
                return Admission(True)
            if self._ready_at is None:
                self._ready_at = now + self._warm_up
            return Admission(False, NO_CAPACITY_MESSAGE)

    def scale_to(self, copies: int) -> None:
        """What UpdateInferenceComponentRuntimeConfig (or autoscaling) does, at once; the idle time counts
        from here."""
        with self._lock:
            self._copies, self._ready_at = copies, None
            self._last_invocation = self._clock()

    def state(self) -> dict[str, Any]:
        """The copies now, as ``GET /_emulator/inference-component`` shows them (idle and warm-up applied)."""
        with self._lock:
            now = self._advance()
            waking = None if self._ready_at is None else self._ready_at - now
            return {"inference_component": self.component, "copies": self._copies, "ready_in_seconds": waking}

    def _advance(self) -> float:
        """Apply what happened since the last look, in the order it happened: a warm-up that ended brought a copy
        (whose idle time counts from then), and a copy idle for longer than ``idle_seconds`` went (lock held).
        Looking changes nothing that time has not: ``state()`` and ``admit()`` see the same copies."""
        now = self._clock()
        if self._ready_at is not None and now >= self._ready_at:
            self._copies, self._last_invocation, self._ready_at = 1, self._ready_at, None
        if self._idle is not None and self._copies and now - self._last_invocation > self._idle:
            self._copies = 0
        return now
