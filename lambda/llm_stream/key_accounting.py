"""Per-key limits and usage, in the two places every keyed request passes: admission, in the gateway before the
endpoint is called (so every route that calls the endpoint, now or later, is admitted), and the end of the
request, in a middleware (so every way a request ends releases what it holds and is written to the ledger).

* Admission costs one DynamoDB round trip (``limits_table.py``), for keys with a limit other than
  ``max_tokens``; ``max_tokens`` caps the request's own length when it is validated.
* Every answer for a key with ``rpm`` or ``tpm`` carries OpenAI's ``x-ratelimit-*`` headers.
* When the answer's last byte is ready, and before the response is closed (Lambda may freeze the instance
  once it is), the lease is released, the reservation settled and the ledger updated, on worker threads,
  at once. A failure there is logged with the numbers (``usage_not_recorded``): nothing is lost silently.
* When a key's answers cross 80 % and 100 % of its ``monthly_tokens``, an alert (``budget_alerts.py``).
* When the table cannot admit a request in time, ``LIMITS_UNAVAILABLE`` decides: ``allow`` serves it
  uncounted (a log line and the ``LimitsUnavailable`` metric, which has an alarm), ``refuse`` answers 503.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .budget_alerts import BudgetAlerts, crossed
from .errors import ApiError
from .key_limits import KeyLimits
from .lifecycle import request_stats
from .logs import log_event
from .settings import INPUT_CHARS_PER_TOKEN, Settings

if TYPE_CHECKING:
    from .api_keys import KeyRecord
    from .limits_table import Admission, LimitsTable
    from .stats import RequestStats

#: Scope state: the record of the key the request came with (set by the key gate), and its admission.
KEY_RECORD_STATE = "llm_stream.key_record"
_ADMISSION_STATE = "llm_stream.admission"
_RECORDED_STATE = "llm_stream.recorded"
_LIMITS_STATE = "llm_stream.limits"
#: Longest an admission may take before LIMITS_UNAVAILABLE decides; and the end-of-request writes.
ADMISSION_TIMEOUT_SECONDS = 2.5
RECORDING_TIMEOUT_SECONDS = 2.5


def key_record(scope: Scope) -> KeyRecord | None:
    record: KeyRecord | None = scope.get("state", {}).get(KEY_RECORD_STATE)
    return record


def prompt_estimate(input_chars: int) -> int:
    """The prompt's tokens as admission reserves them (the function has no tokenizer)."""
    return math.ceil(input_chars / INPUT_CHARS_PER_TOKEN)


@functools.lru_cache(maxsize=64)
def capped_settings(settings: Settings, max_tokens: int) -> Settings:
    """The settings a request is validated with under a key's ``max_tokens``."""
    return replace(settings, max_new_tokens=min(settings.max_new_tokens, max_tokens),
                   default_max_new_tokens=min(settings.default_max_new_tokens, max_tokens))


class KeyAccounting:
    def __init__(self, settings: Settings, table: LimitsTable) -> None:
        self.settings = settings
        self.table = table
        self.defaults = settings.default_limits
        self.alerts = BudgetAlerts(settings.budget_alerts_topic_arn, settings.service_name)

    def limits(self, scope: Scope) -> KeyLimits | None:
        """The request's key's limits: its own over the defaults (on a model with limits of its own, the
        smaller ``max_tokens`` of the two)."""
        return self._plan(scope).limits

    def _plan(self, scope: Scope) -> _KeyPlan:
        """Worked out once per request, after routing (the gateway routes before it validates or admits)."""
        state = scope["state"]
        known: _KeyPlan | None = state.get(_LIMITS_STATE)
        if known is not None:
            return known
        record = key_record(scope)
        if record is None:
            return _KeyPlan(None, ())
        from .model_routing import routed

        model = routed(scope, self.settings).model_id
        limits, on_model = record.limits.over(self.defaults), record.limits_on(model)
        counters = [(record.name, limits)]
        if on_model is not None:
            counters.append((f"{record.name}@{model}", on_model))
            if on_model.max_tokens is not None:
                limits = replace(limits, max_tokens=min(on_model.max_tokens, limits.max_tokens or on_model.max_tokens))
        known = _KeyPlan(limits, tuple((name, own) for name, own in counters if own.counted))
        state[_LIMITS_STATE] = known
        return known

    def settings_for(self, scope: Scope, settings: Settings | None = None) -> Settings:
        """``settings`` (the routed model's; the deployment's by default) with the key's own ``max_tokens``."""
        base = settings or self.settings
        limits = self.limits(scope)
        if limits is None or limits.max_tokens is None:
            return base
        return capped_settings(base, limits.max_tokens)

    async def admit(self, scope: Scope, input_chars: int, max_new_tokens: int) -> None:
        """Count the request against its key's limits, and then against the key's own on the routed model where
        it has some (``<key>@<model>``: a model's limits restrict within the key's); :class:`ApiError` when it must
        not reach the endpoint. A request the second refuses has counted once on the first (its lease and tokens
        are given back at the end, as for any refusal after admission).

        Each admission is kept in the scope before it is sent: if its answer never comes back in time, the
        write may still have landed, and :meth:`record` releases whatever it took (a release changes nothing
        where no lease was taken)."""
        counters = self._plan(scope).counters
        if not counters:
            return
        from .limits_table import Admission, new_lease_id
        from .rate_limits import Windows

        now = time.time()
        admissions: list[Admission] = []
        scope["state"][_ADMISSION_STATE] = admissions
        reserve = max_new_tokens + prompt_estimate(input_chars)
        try:
            with anyio.fail_after(ADMISSION_TIMEOUT_SECONDS):
                for name, limits in counters:
                    pending = Admission(name=name, reserve=reserve, windows=Windows.at(now), lease_id=new_lease_id())
                    admissions.append(pending)
                    admit = functools.partial(self.table.admit, name, limits, reserve, self.settings.lease_seconds,
                                              pending.lease_id, now)
                    admissions[-1] = await anyio.to_thread.run_sync(admit, abandon_on_cancel=True)
        except ApiError:
            admissions.pop()  # refused: nothing was written for this one
            raise
        except Exception as exc:  # DynamoDB unreachable, throttled, slow, or refusing the function's role
            self._unavailable(request_stats(scope), exc)

    def _unavailable(self, stats: RequestStats, exc: Exception) -> None:
        stats.limits_unavailable = True
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.settings.limits_unavailable == "refuse":
            raise ApiError(503, "limits_unavailable", "this key's limits cannot be checked right now; try again "
                           "shortly", headers={"retry-after": "5"}, detail=f"admission failed: {detail}")
        stats.limits_detail = f"admitted uncounted (LIMITS_UNAVAILABLE=allow): {detail}"

    async def record(self, scope: Scope) -> None:
        """Release the request's admission and add it to the ledger (once; never raises, never hangs).

        A request that produced no token (refused after admission, or failed before its first token) counts no
        tokens; otherwise completion tokens, and prompt tokens as the container counted them or, where it did
        not, as admission estimated them (for the limits; the ledger records only counted ones)."""
        state, record = scope["state"], key_record(scope)
        if state.get(_RECORDED_STATE) or record is None:
            return
        state[_RECORDED_STATE] = True
        stats, admissions = request_stats(scope), state.get(_ADMISSION_STATE, [])
        if not stats.metered:  # the page, health, unknown routes: nothing to count
            return
        from .limits_table import Usage

        completion = stats.generated_tokens if stats.generated_tokens is not None else stats.tokens
        produced = completion > 0
        usage = Usage(completion_tokens=completion, prompt_tokens=stats.input_tokens if produced else 0,
                      stream_seconds=stats.duration_ms() / 1000, error_type=stats.error_type)
        with anyio.move_on_after(RECORDING_TIMEOUT_SECONDS, shield=True) as waited:
            async with anyio.create_task_group() as tasks:
                ledger: dict[str, object] = {"usage": usage}
                tasks.start_soon(self._write, stats, "ledger", ledger, self.table.record_usage, record.name,
                                 stats.model_id, usage)
                prompt = stats.input_tokens if stats.input_tokens is not None else prompt_estimate(
                    stats.input_chars or 0)
                used = completion + prompt if produced else 0
                counted = dict(self._plan(scope).counters) if admissions else {}
                for admission in admissions:
                    numbers: dict[str, object] = {"used_tokens": used, "reserved_tokens": admission.reserve,
                                                  "lease": admission.lease_id, "windows": admission.windows}
                    tasks.start_soon(self._write, stats, f"release of {admission.name}", numbers, self._release,
                                     admission, used, counted.get(admission.name))
        if waited.cancelled_caught:
            _not_recorded(stats, "release and ledger", TimeoutError("the table did not answer in time"),
                          {"usage": usage, "admissions": admissions})

    def _release(self, admission: Admission, used: int, limits: KeyLimits | None) -> None:
        """Release the admission; send the budget alerts its tokens crossed (blocking)."""
        month_used = self.table.release(admission, used)
        budget = None if limits is None else limits.monthly_tokens
        if budget is None or month_used is None:
            return
        for share in crossed(month_used - used, month_used, budget):
            try:
                self.alerts.send(admission.name, admission.windows.month, month_used, budget, share)
            except Exception as exc:  # the release itself is done: say which alert was not sent
                log_event({"event": "budget_alert_not_sent", "consumer": admission.name,
                           "threshold_percent": round(share * 100), "used_tokens": month_used,
                           "monthly_tokens": budget, "error": f"{type(exc).__name__}: {exc}"})

    async def _write(self, stats: RequestStats, what: str, numbers: dict[str, object], write: Callable[..., None],
                     *args: object) -> None:
        try:
            await anyio.to_thread.run_sync(functools.partial(write, *args), abandon_on_cancel=True)
        except Exception as exc:
            _not_recorded(stats, what, exc, numbers)


@dataclass(frozen=True)
class _KeyPlan:
    """A request's key's limits, and the counters it is admitted under (each with its limits)."""

    limits: KeyLimits | None
    counters: tuple[tuple[str, KeyLimits], ...]


def tightest_headers(admissions: list[Admission]) -> dict[str, str]:
    """OpenAI's rate-limit headers for a request admitted under one counter or two: for requests and for
    tokens, those of the counter with the least left."""
    headers: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        remaining = f"x-ratelimit-remaining-{kind}"
        carrying = [admission.headers for admission in admissions if remaining in admission.headers]
        if carrying:
            tightest = min(carrying, key=lambda given: int(given[remaining]))
            headers.update({name: value for name, value in tightest.items() if name.endswith(f"-{kind}")})
    return headers


def _not_recorded(stats: RequestStats, what: str, exc: Exception, numbers: dict[str, object]) -> None:
    """What a failed write would have counted, on a log line, so the counters can be reconciled by hand."""
    log_event({"event": "usage_not_recorded", "request_id": stats.request_id, "consumer": stats.consumer,
               "write": what, "error": f"{type(exc).__name__}: {exc}",
               "numbers": {name: repr(value) for name, value in numbers.items()}})


class AccountingMiddleware:
    """Inside the key gate: the rate-limit headers on the answer, and :meth:`KeyAccounting.record` once the
    last byte is ready (before the response is closed) or, if it never is, when the request ends."""

    def __init__(self, app: ASGIApp, accounting: KeyAccounting) -> None:
        self.app = app
        self.accounting = accounting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in tightest_headers(scope["state"].get(_ADMISSION_STATE, [])).items():
                    headers.setdefault(name, value)
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                if message.get("body"):
                    await send({**message, "more_body": True})
                    message = {"type": "http.response.body", "body": b"", "more_body": False}
                await self.accounting.record(scope)
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:  # the caller left, or the app failed, before the last byte
            await self.accounting.record(scope)
