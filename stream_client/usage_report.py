"""``keys usage``: the ledger (one item per key, UTC day and model) summed per key and model over a period,
with each key's share of the endpoint's cost: its share of the period's tokens (prompt and completion as
counted) times the endpoint's price for the period, when a price per hour is given; or, with several models,
each model's own cost (its price per hour: the instance-hours its copies hold) shared by that model's tokens."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from llm_stream.limits_table import plain, usage_partition

if TYPE_CHECKING:
    from .key_admin import KeyAdmin

FORMATS = ("table", "csv", "json")


@dataclass
class UsageRow:
    key: str
    model: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Requests whose container did not count the prompt (their prompt tokens are not in ``prompt_tokens``).
    requests_without_prompt_count: int = 0
    stream_seconds: float = 0.0
    errors: int = 0
    cost_share: float | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class UsageReport:
    since: date
    until: date
    rows: list[UsageRow]
    price_per_hour: float | None
    #: Model id -> its own price per hour (several models: each shares its own cost).
    model_prices: dict[str, float] = field(default_factory=dict)
    #: Costs no counted token shares (a priced model nobody called in the period), by model.
    unshared: dict[str, float] = field(default_factory=dict)

    @property
    def hours(self) -> int:
        return 24 * ((self.until - self.since).days + 1)

    @property
    def period_cost(self) -> float | None:
        if self.model_prices:
            return sum(self.model_prices.values()) * self.hours
        return None if self.price_per_hour is None else self.price_per_hour * self.hours

    def model_costs(self) -> dict[str | None, float]:
        """The costs to share and what shares each: per model (its rows), or the endpoint's (``None``: all rows)."""
        if self.model_prices:
            return {model: price * self.hours for model, price in self.model_prices.items()}
        return {} if self.price_per_hour is None else {None: self.price_per_hour * self.hours}


def usage_report(admin: KeyAdmin, since: date, until: date, key: str | None,
                 price_per_hour: float | None, model_prices: dict[str, float] | None = None) -> UsageReport:
    """``key``'s rows, or every key's; a cost is shared by every key's tokens either way."""
    costs_shared = price_per_hour is not None or bool(model_prices)
    names = [key] if key and not costs_shared else [item.name for item in admin.items()]
    rows: dict[tuple[str, str], UsageRow] = {}
    for name in names:
        for raw in admin.query_partition(usage_partition(name), sort_keys=(since.isoformat(),
                                                                          f"{until.isoformat()}#\uffff")):
            item = plain(raw)
            row = rows.setdefault((name, item["model"]), UsageRow(key=name, model=item["model"]))
            row.requests += int(item.get("requests", 0))
            row.prompt_tokens += int(item.get("prompt_tokens", 0))
            row.completion_tokens += int(item.get("completion_tokens", 0))
            row.requests_without_prompt_count += int(item.get("requests_without_prompt_count", 0))
            row.stream_seconds += int(item.get("stream_ms", 0)) / 1000
            row.errors += sum(int(value) for field, value in item.items() if field.startswith("errors_"))
    every_row = sorted(rows.values(), key=lambda row: (row.key, row.model))
    report = UsageReport(since, until, [row for row in every_row if key is None or row.key == key], price_per_hour,
                         dict(model_prices or {}))
    for model, cost in report.model_costs().items():
        sharing = [row for row in every_row if model is None or row.model == model]
        total = sum(row.tokens for row in sharing)
        if not total:
            report.unshared[model or "(every model)"] = cost
        for row in sharing:
            row.cost_share = round(cost * row.tokens / total, 2) if total else None
    return report


def render(report: UsageReport, output_format: str) -> str:
    if output_format == "json":
        return json.dumps({"since": report.since.isoformat(), "until": report.until.isoformat(),
                           "price_per_hour": report.price_per_hour, "model_prices": report.model_prices,
                           "period_cost": report.period_cost, "unshared_costs": report.unshared,
                           "rows": [asdict(row) for row in report.rows]}, indent=1)
    header = ["key", "model", "requests", "prompt_tokens", "completion_tokens", "requests_without_prompt_count",
              "stream_seconds", "errors", "cost_share"]
    values = [[str(value) if value is not None else "" for value in _cells(row)] for row in report.rows]
    if output_format == "csv":
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, *values])
        return out.getvalue().rstrip("\n")
    unshared = [f"Not shared: ${cost:,.2f} of {model} (no tokens counted in the period)."
                for model, cost in report.unshared.items()]
    return "\n".join([*aligned_columns([header, *values]), "", _price_note(report), *unshared])


def aligned_columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as lines of columns padded to their widest cell, two spaces apart (the CLI's tables)."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def _cells(row: UsageRow) -> list[Any]:
    return [row.key, row.model, row.requests, row.prompt_tokens, row.completion_tokens,
            row.requests_without_prompt_count, round(row.stream_seconds, 1), row.errors, row.cost_share]


def _price_note(report: UsageReport) -> str:
    period = f"{report.since} to {report.until} (UTC, {(report.until - report.since).days + 1} days)"
    if report.period_cost is None:
        return (f"{period}. No cost shares: pass --price-per-hour (the endpoint's instances' on-demand price per "
                "hour, from the AWS price list for its instance type and region), or with several models "
                "--model-price MODEL=USD for each (what its copies' instance-hours cost per hour).")
    if report.model_prices:
        prices = ", ".join(f"{model} ${price}/hour" for model, price in report.model_prices.items())
        return (f"{period}. Models' cost ${report.period_cost:,.2f} ({prices}, from --model-price), each shared by "
                "the keys' parts of that model's tokens; rows of other models have no share.")
    return (f"{period}. Endpoint cost ${report.period_cost:,.2f} at ${report.price_per_hour}/hour (from "
            "--price-per-hour), shared by each key's part of the tokens counted. Requests whose container did not "
            "count the prompt count their completion tokens only.")


def month_start(today: date) -> date:
    return today.replace(day=1)
