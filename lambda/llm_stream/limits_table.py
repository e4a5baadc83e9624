"""The deployment's DynamoDB table: API key records, each key's limit state, and the usage ledger.

One table, three kinds of item (``pk``, ``sk``):

* ``key``, ``<name>``: a key's record (``record``: its JSON, ``api_keys.py``) and ``audit``, the changes made
  to it (who, when, what); ``key``, ``#migrated``: written once the key document of an older deployment
  was copied in (until then the function reads that document too: ``key_store.py``).
* ``state#<name>``, ``limits``: the key's leases (``leases``: a map of lease id to expiry, epoch seconds)
  and its counters, one attribute per window (``rq_<minute>``, ``tk_<minute>``, ``mo_<yyyymm>``; and
  ``ms_<yyyymm>``, the month's tokens without reservations, for the budget alerts).
* ``usage#<name>``, ``<yyyy-mm-dd>#<model>``: the ledger, one item per key, UTC day and model.

Admission is one conditional ``UpdateItem`` on the state item: it takes a lease and counts the request
only if, in the same atomic step, the leases and counters leave room (``rate_limits.py`` says how), so two
instances can never both take the last slot. A lease holds its own expiry: nothing waits for DynamoDB's
TTL (which deletes items up to days late). When the write is refused, the item it saw comes back with the
refusal (``ReturnValuesOnConditionCheckFailure``) and says which limit was hit; only when it shows leases
past their expiry (holders that vanished) does a second write take the slot, removing them on the condition
that they still hold the values seen. A key's first counted request creates its state item first.
``tidy_at`` is the TTL attribute: it removes idle keys' state and old ledger days, nothing more.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from .key_limits import KeyLimits
from .rate_limits import Counts, Windows, previous_month_of, ratelimit_headers, refusal

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PK, SK = "pk", "sk"
KEY_PARTITION = "key"
MIGRATED_MARKER = "#migrated"
STATE_SORT_KEY = "limits"
TIDY_ATTRIBUTE = "tidy_at"
#: An idle key's state item goes after this (longer than any window it counts in).
STATE_KEPT = timedelta(days=40)
#: Ledger days are kept this long, then tidied by the TTL.
USAGE_KEPT = timedelta(days=400)
#: Conditional writes for one admission at most: the first, one that also clears leases whose holders
#: vanished, and one after creating a key's first state item.
ADMISSION_ATTEMPTS = 3

_serializer, _deserializer = TypeSerializer(), TypeDeserializer()


def key_item_key(name: str) -> dict[str, Any]:
    return {PK: {"S": KEY_PARTITION}, SK: {"S": name}}


def state_item_key(name: str) -> dict[str, Any]:
    return {PK: {"S": f"state#{name}"}, SK: {"S": STATE_SORT_KEY}}


def usage_partition(name: str) -> str:
    """The partition of a key's ledger: one item per UTC day and model, sorted by day."""
    return f"usage#{name}"


def usage_item_key(name: str, day: str, model: str) -> dict[str, Any]:
    return {PK: {"S": usage_partition(name)}, SK: {"S": f"{day}#{model}"}}


def plain(item: dict[str, Any]) -> dict[str, Any]:
    """An item in DynamoDB's typed JSON as plain values (numbers as Decimal)."""
    return {name: _deserializer.deserialize(value) for name, value in item.items()}


def typed(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items()}


class AdmissionContended(Exception):
    """The key's state item kept changing under an admission's attempts (the function treats it as the table
    being unavailable)."""


@dataclass
class KeyItems:
    """The key partition as the function reads it."""

    records: list[Any] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    migrated: bool = False


@dataclass(frozen=True)
class Admission:
    """What an admitted request holds until its answer ends: its lease and its token reservation."""

    name: str
    reserve: int
    windows: Windows
    lease_id: str
    #: Counter attributes of windows gone by, removed when the lease is released.
    stale: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Usage:
    """What one request used, for the ledger."""

    completion_tokens: int
    #: ``None`` where the container did not count the prompt (the ledger says so instead of guessing).
    prompt_tokens: int | None
    stream_seconds: float
    error_type: str | None


class LimitsTable:
    """The table's operations (blocking: the function calls them on worker threads)."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self.client = client
        self.table_name = table_name

    def admit(self, name: str, limits: KeyLimits, reserve: int, lease_seconds: float, lease_id: str,
              now: float) -> Admission:
        """Count a request against ``limits`` and take the lease ``lease_id``; :class:`ApiError` (429) when there is
        no room, :class:`AdmissionContended` when the item kept changing under the attempts."""
        windows = Windows.at(now)
        clearing: dict[str, int] = {}
        for _ in range(ADMISSION_ATTEMPTS):
            try:
                answer = self.client.update_item(
                    TableName=self.table_name, Key=state_item_key(name), ReturnValues="ALL_NEW",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                    **_admission(limits, windows, reserve, lease_id, now + lease_seconds, clearing))
            except ClientError as exc:
                seen = plain(exc.response.get("Item") or {})  # type: ignore[arg-type]  # ALL_OLD's item, typed
                if "leases" not in seen and _no_leases(exc):  # the key's first counted request
                    self._create_state(name, now)
                    continue
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                counts = Counts.of(seen, windows, now)
                refused = refusal(limits, counts, now)
                if refused is not None:
                    raise refused from None
                clearing = counts.expired_leases  # room once the leases of vanished holders go: try again
                continue
            item = plain(answer["Attributes"])
            counts = Counts.of(item, windows, now)
            return Admission(name=name, reserve=reserve, windows=windows, lease_id=lease_id,
                             stale=_stale(item, windows), headers=ratelimit_headers(limits, counts, now))
        raise AdmissionContended(f"the state item of {name!r} kept changing over {ADMISSION_ATTEMPTS} attempts")

    def release(self, admission: Admission, used_tokens: int, now: float | None = None) -> int | None:
        """End an admission: its lease released, its reservation replaced by the tokens used, once: only while the
        lease is there, so a retried or repeated release changes nothing (``None``), and so does the release of
        an admission that never landed. Returns the tokens the month's answers used so far, reservations aside
        (``ms_<yyyymm>``: it only grows, so a threshold is crossed by exactly one release)."""
        now = time.time() if now is None else now
        names = {"#lease": admission.lease_id, "#tidy": TIDY_ATTRIBUTE, "#tk": admission.windows.tokens,
                 "#mo": admission.windows.month_tokens, "#ms": admission.windows.settled_month}
        removals = ["leases.#lease"]
        for index, stale in enumerate(admission.stale):
            names[f"#stale{index}"] = stale
            removals.append(f"#stale{index}")
        try:
            answer = self.client.update_item(
                TableName=self.table_name, Key=state_item_key(admission.name),
                UpdateExpression="SET #tidy = :tidy ADD #tk :delta, #mo :delta, #ms :used REMOVE "
                                 + ", ".join(removals),
                ConditionExpression="attribute_exists(leases.#lease)", ExpressionAttributeNames=names,
                ReturnValues="UPDATED_NEW",
                ExpressionAttributeValues=typed({":delta": used_tokens - admission.reserve, ":used": used_tokens,
                                                 ":tidy": _state_tidy_at(now)}))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None  # released already, or never admitted
            raise
        return int(plain(answer["Attributes"])[admission.windows.settled_month])

    def record_usage(self, name: str, model: str, usage: Usage, now: float | None = None) -> None:
        """Add one request to the ledger: one atomic update of the (key, UTC day, model) item."""
        now = time.time() if now is None else now
        day = datetime.fromtimestamp(now, UTC).date()
        counters = {"requests": 1, "completion_tokens": usage.completion_tokens,
                    "stream_ms": round(usage.stream_seconds * 1000)}
        if usage.prompt_tokens is None:
            counters["requests_without_prompt_count"] = 1
        else:
            counters["prompt_tokens"] = usage.prompt_tokens
        if usage.error_type is not None:
            counters[f"errors_{usage.error_type}"] = 1
        names = {f"#c{index}": counter for index, counter in enumerate(counters)}
        values = {f":c{index}": value for index, value in enumerate(counters.values())}
        tidy_at = datetime.combine(day + USAGE_KEPT, datetime.min.time(), UTC).timestamp()
        self.client.update_item(
            TableName=self.table_name, Key=usage_item_key(name, day.isoformat(), model),
            UpdateExpression="SET #key = :key, #day = :day, #model = :model, #tidy = :tidy ADD "
            + ", ".join(f"{name_ref} {value_ref}" for name_ref, value_ref in zip(names, values, strict=True)),
            ExpressionAttributeNames={**names, "#key": "key_name", "#day": "day", "#model": "model",
                                      "#tidy": TIDY_ATTRIBUTE},
            ExpressionAttributeValues=typed({**values, ":key": name, ":day": day.isoformat(), ":model": model,
                                             ":tidy": int(tidy_at)}))

    def key_records(self) -> KeyItems:
        """Every key record's JSON, the names of revoked keys, and whether an older deployment's key document
        was copied in."""
        items = KeyItems()
        for item in self.query_partition(KEY_PARTITION, projection=("sk", "record")):
            if item[SK]["S"] == MIGRATED_MARKER:
                items.migrated = True
            elif "record" in item:
                items.records.append(json.loads(item["record"]["S"]))
            else:
                items.revoked.add(item[SK]["S"])
        return items

    def query_partition(self, partition: str, projection: tuple[str, ...] = (),
                        sort_keys: tuple[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of ``partition`` (strongly consistent, page by page), with the sort keys between
        ``sort_keys`` if given, and only the attributes in ``projection`` if given."""
        names, values = {"#pk": PK}, {":pk": {"S": partition}}
        condition = "#pk = :pk"
        if sort_keys is not None:
            names["#sk"] = SK
            values[":from"], values[":to"] = {"S": sort_keys[0]}, {"S": sort_keys[1]}
            condition += " AND #sk BETWEEN :from AND :to"
        request: dict[str, Any] = {"TableName": self.table_name, "KeyConditionExpression": condition,
                                   "ExpressionAttributeValues": values, "ConsistentRead": True}
        if projection:
            names.update({f"#p{index}": attribute for index, attribute in enumerate(projection)})
            request["ProjectionExpression"] = ", ".join(f"#p{index}" for index in range(len(projection)))
        request["ExpressionAttributeNames"] = names
        while True:
            page = self.client.query(**request)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _create_state(self, name: str, now: float) -> None:
        self.client.update_item(
            TableName=self.table_name, Key=state_item_key(name),
            UpdateExpression="SET leases = if_not_exists(leases, :empty), #tidy = :tidy",
            ExpressionAttributeNames={"#tidy": TIDY_ATTRIBUTE},
            ExpressionAttributeValues=typed({":empty": {}, ":tidy": _state_tidy_at(now)}))


def _admission(limits: KeyLimits, windows: Windows, reserve: int, lease_id: str, lease_until: float,
               clearing: dict[str, int]) -> dict[str, Any]:
    """The conditional update that admits one request (clearing the expired leases named, if any)."""
    names = {"#rq": windows.requests, "#tk": windows.tokens, "#mo": windows.month_tokens}
    values: dict[str, Any] = {":one": 1, ":zero": 0, ":reserve": reserve}
    updates = ["#rq = if_not_exists(#rq, :zero) + :one", "#tk = if_not_exists(#tk, :zero) + :reserve",
               "#mo = if_not_exists(#mo, :zero) + :reserve", "leases.#lease = :until"]
    names["#lease"] = lease_id
    values[":until"] = int(lease_until) + 1
    conditions = ["attribute_exists(leases)"]
    for limit, attribute in ((limits.rpm, "#rq"), (limits.tpm, "#tk"), (limits.monthly_tokens, "#mo")):
        if limit is not None:
            values[f":limit{attribute[1:]}"] = limit
            conditions.append(f"(attribute_not_exists({attribute}) OR {attribute} < :limit{attribute[1:]})")
    removals = []
    if limits.max_streams is not None:
        # The expired leases removed here must still be there, as seen: then the live ones number size - k.
        values[":streams"] = limits.max_streams + len(clearing)
        conditions.append("size(leases) < :streams")
    for index, (expired, until) in enumerate(sorted(clearing.items())):
        names[f"#gone{index}"], values[f":gone{index}"] = expired, until
        conditions.append(f"leases.#gone{index} = :gone{index}")
        removals.append(f"leases.#gone{index}")
    expression = "SET " + ", ".join(updates) + (" REMOVE " + ", ".join(removals) if removals else "")
    return {"UpdateExpression": expression, "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": typed(values)}


def _stale(item: dict[str, Any], windows: Windows) -> tuple[str, ...]:
    """Counter attributes of windows before the previous one: an answer admitted in the previous minute or
    month may still be running, and its release adds to that window."""
    previous_month = previous_month_of(windows.month)
    stale = []
    for attribute in item:
        prefix, _, stamp = attribute.partition("_")
        if not stamp.isdigit():
            continue
        if (prefix in ("rq", "tk") and int(stamp) < windows.minute - 1) or (
                prefix in ("mo", "ms") and stamp < previous_month):
            stale.append(attribute)
    return tuple(sorted(stale))


def _state_tidy_at(now: float) -> int:
    """When the TTL may remove a key's state item that nothing touched since ``now``."""
    return int(now + STATE_KEPT.total_seconds())


def new_lease_id() -> str:
    """A lease's id: short, since every answer in flight keeps one in the key's item (write units grow with it)."""
    return secrets.token_hex(8)


def _no_leases(exc: ClientError) -> bool:
    """Whether DynamoDB refused an admission because the item has no lease map yet: the condition failed
    (``attribute_exists(leases)``) or, if it checks the path first, a validation error naming the path."""
    error = exc.response["Error"]
    return error["Code"] == "ConditionalCheckFailedException" or (
        error["Code"] == "ValidationException" and "document path" in error.get("Message", ""))
