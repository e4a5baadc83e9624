"""Budget alerts: when a key's answers have used 80 % and then 100 % of its ``monthly_tokens``, one message to
the deployment's SNS topic (and a log line, whether or not the topic is set).

The month's settled count (``ms_<yyyymm>``, ``limits_table.py``) only grows, and each release adds to it
atomically and reads the sum back, so exactly one release sees each threshold crossed: one alert per
threshold, key and month, whatever the concurrency.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from .logs import log_event

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

#: The parts of the month's budget that send an alert.
THRESHOLDS = (0.8, 1.0)


def crossed(before: int, after: int, budget: int) -> list[float]:
    """The thresholds a release that took the month's tokens from ``before`` to ``after`` crossed."""
    return [share for share in THRESHOLDS if before < share * budget <= after]


class BudgetAlerts:
    def __init__(self, topic_arn: str, service_name: str) -> None:
        self.topic_arn = topic_arn
        self.service_name = service_name
        self._client: SNSClient | None = None
        self._lock = threading.Lock()

    def send(self, key: str, month: str, used: int, budget: int, share: float) -> None:
        """Log the crossing and publish it (blocking: called on a worker thread)."""
        alert = {"event": "budget_alert", "consumer": key, "month": month, "used_tokens": used,
                 "monthly_tokens": budget, "threshold_percent": round(share * 100)}
        log_event(alert)
        if not self.topic_arn:
            return
        # SNS takes 99 characters of subject: the figures first, so a long key name (``team-a@<model>``) is what
        # is cut; the message holds everything.
        subject = (f"{self.service_name}: {round(share * 100)} % of monthly tokens ({used} of {budget}) used by API "
                   f"key {key}")
        self._sns().publish(TopicArn=self.topic_arn, Subject=subject[:99], Message=json.dumps(alert))

    def _sns(self) -> SNSClient:
        with self._lock:  # created on the first alert only: most instances never send one
            if self._client is None:
                import boto3
                from botocore.config import Config

                self._client = boto3.client("sns", config=Config(connect_timeout=1, read_timeout=2))
            return self._client
