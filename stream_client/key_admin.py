"""The API keys of a deployment, in its DynamoDB table (``llm_stream/limits_table.py`` for the layout).

Every change is one conditional write of the key's item: it applies only to the record it was computed from
(two admins never lose each other's change) and appends an entry to the item's ``audit`` list: who (the
caller's AWS identity), when, what. Keys themselves are never stored: a record holds their SHA-256 digests.
A revoked key's item keeps its audit trail and loses its record, so the function stops accepting it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from llm_stream.key_limits import KeyLimits, LimitsError
from llm_stream.limits_table import KEY_PARTITION, MIGRATED_MARKER, SK, LimitsTable, key_item_key

from .key_document import KeyDocumentError, KeyRecord, KeyRing, api_keys

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

#: Attempts at a change that a concurrent admin keeps getting in before.
WRITE_ATTEMPTS = 5
#: How long a rotated key keeps working by default, so its consumer can switch.
DEFAULT_ROTATION_GRACE = timedelta(hours=24)


class KeyAdminError(Exception):
    """What went wrong, in words for the person at the terminal."""


@dataclass(frozen=True)
class KeyItem:
    """A key's item: its record (``None`` once revoked) and its audit trail."""

    name: str
    record: KeyRecord | None
    audit: list[dict[str, str]]
    raw_record: str | None


@dataclass
class KeyAdmin:
    client: DynamoDBClient
    table_name: str
    #: Who makes the changes, for the audit trail (the caller's AWS identity).
    actor: str

    def items(self) -> list[KeyItem]:
        """Every key's item, revoked ones included, by name."""
        items = []
        for raw in self.query_partition(KEY_PARTITION):
            if raw[SK]["S"] != MIGRATED_MARKER:
                items.append(_key_item(raw))
        return sorted(items, key=lambda item: item.name)

    def migrated(self) -> bool:
        """Whether an older deployment's key document was copied in (the marker ``import_keys`` writes)."""
        raw = self._call(lambda: self.client.get_item(TableName=self.table_name, ConsistentRead=True,
                                                      Key=key_item_key(MIGRATED_MARKER)))
        return "Item" in raw

    def ring(self) -> KeyRing:
        return KeyRing(tuple(item.record for item in self.items() if item.record is not None))

    def create(self, name: str, lifetime: timedelta | None, limits: KeyLimits, now: datetime | None = None,
               models: tuple[str, ...] | None = None) -> tuple[str, KeyRecord]:
        """A new key and its record (``models``: the only ones it may call; ``None``: every one); the key is
        returned here and nowhere else."""
        if not api_keys.valid_name(name):
            raise KeyAdminError(f"{name!r} is not a valid key name: use {api_keys.NAME_RULE}")
        created = _now(now)
        key = api_keys.new_key()
        record = KeyRecord(name=name, sha256=api_keys.key_digest(key), created_at=created,
                           expires_at=None if lifetime is None else created + lifetime, limits=limits,
                           allowed_models=models)
        try:
            self._write(record, None, f"create ({_summary(record)})", created)
        except _Changed:
            if self._live(name) != record:  # not this write itself, retried after its answer was lost
                raise KeyAdminError(f"a key named {name!r} exists already: revoke it first, or rotate it") from None
        return key, record

    def set_limits(self, name: str, changes: dict[str, int | None], now: datetime | None = None,
                   model: str | None = None) -> KeyRecord:
        """Change a key's own limits, or (``model``) its own limits on that model, the others kept."""
        def change(record: KeyRecord) -> KeyRecord:
            try:
                if model is None:
                    return replace(record, limits=record.limits.updated(changes))
                return record.with_model_limits(model, (record.limits_on(model) or KeyLimits()).updated(changes))
            except LimitsError as exc:
                raise KeyAdminError(str(exc)) from None

        def audit(new: KeyRecord) -> str:
            if model is None:
                return f"set-limits ({new.limits.describe()})"
            return f"set-limits on {model} ({(new.limits_on(model) or KeyLimits()).describe()})"

        return self._change(name, change, audit, now)

    def set_models(self, name: str, models: tuple[str, ...] | None, now: datetime | None = None) -> KeyRecord:
        """Restrict a key to ``models`` (``None``: every model the deployment serves)."""
        return self._change(name, lambda record: replace(record, allowed_models=models),
                            lambda new: f"set-models ({describe_models(new.allowed_models)})", now)

    def rotate(self, name: str, grace: timedelta, now: datetime | None = None) -> tuple[str, KeyRecord]:
        """A new key for ``name``; the one it replaces keeps working for ``grace``."""
        moment = _now(now)
        key = api_keys.new_key()

        def change(record: KeyRecord) -> KeyRecord:
            return replace(record, sha256=api_keys.key_digest(key), previous_sha256=record.sha256,
                           previous_expires_at=moment + grace)

        record = self._change(name, change, lambda new: f"rotate (the previous key works until "
                              f"{show_time(new.previous_expires_at)})", moment)
        return key, record

    def revoke(self, name: str, now: datetime | None = None) -> KeyRecord:
        """Stop accepting the key (and a rotated-out one); its item keeps the audit trail."""
        moment = _now(now)
        for _ in range(WRITE_ATTEMPTS):
            item = self._item(name)
            try:
                self._write(None, item, "revoke", moment)
            except _Changed:
                continue
            assert item.record is not None  # noqa: S101 (_item found a live record)
            return item.record
        raise _kept_changing(name)

    def import_keys(self, document: KeyRing, what: str = "migrate (from the key secret)",
                    now: datetime | None = None) -> tuple[list[str], list[str]]:
        """Copy a key document in, as an older deployment's secret held it (keys already in the table are left as
        they are), then write the marker that tells the function to stop reading the document. Safe to run
        again."""
        moment = _now(now)
        copied, kept = [], []
        for record in document.records:
            try:
                self._write(record, None, what, moment, new_item=True)
                copied.append(record.name)
            except _Changed:
                kept.append(record.name)
        self._call(lambda: self.client.put_item(TableName=self.table_name, Item={
            **key_item_key(MIGRATED_MARKER), "at": {"S": show_time(moment)}, "by": {"S": self.actor}}))
        return copied, kept

    def _change(self, name: str, change: Callable[[KeyRecord], KeyRecord], describe: Callable[[KeyRecord], str],
                now: datetime | None) -> KeyRecord:
        moment = _now(now)
        for _ in range(WRITE_ATTEMPTS):
            item = self._item(name)
            assert item.record is not None  # noqa: S101 (_item found a live record)
            new = change(item.record)
            try:
                self._write(new, item, describe(new), moment)
            except _Changed:
                if self._live(name) == new:  # this write itself, retried after its answer was lost
                    return new
                continue
            return new
        raise _kept_changing(name)

    def _live(self, name: str) -> KeyRecord | None:
        try:
            return self._item(name).record
        except KeyAdminError:
            return None

    def _item(self, name: str) -> KeyItem:
        raw = self._call(lambda: self.client.get_item(TableName=self.table_name, Key=key_item_key(name),
                                                      ConsistentRead=True)).get("Item")
        item = None if raw is None else _key_item(raw)
        if item is None or item.record is None:
            raise KeyAdminError(f"no key named {name!r} in {self.table_name}")
        return item

    def _write(self, record: KeyRecord | None, seen: KeyItem | None, what: str, moment: datetime,
               new_item: bool = False) -> None:
        """Write ``record`` (``None``: revoke) over what ``seen`` held (``None``: there is no live record; with
        ``new_item``, no item at all: an import never brings back a key revoked here)."""
        name = record.name if record is not None else seen.name  # type: ignore[union-attr]  # one is given
        entry = {"M": {"at": {"S": show_time(moment)}, "by": {"S": self.actor}, "what": {"S": what}}}
        values: dict[str, Any] = {":entry": {"L": [entry]}, ":empty": {"L": []}}
        if record is None:
            update = "REMOVE #record SET #audit = list_append(if_not_exists(#audit, :empty), :entry)"
        else:
            update = "SET #record = :record, #audit = list_append(if_not_exists(#audit, :empty), :entry)"
            values[":record"] = {"S": json.dumps(record.to_json(), sort_keys=True)}
        if new_item:
            condition = "attribute_not_exists(#record) AND attribute_not_exists(#audit)"
        elif seen is None:
            condition = "attribute_not_exists(#record)"
        else:
            condition = "#record = :seen"
            values[":seen"] = {"S": seen.raw_record}
        try:
            self.client.update_item(TableName=self.table_name, Key=key_item_key(name), UpdateExpression=update,
                                    ConditionExpression=condition, ExpressionAttributeValues=values,
                                    ExpressionAttributeNames={"#record": "record", "#audit": "audit"})
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise _Changed from None
            raise KeyAdminError(f"cannot write to {self.table_name}: {exc}") from None
        except BotoCoreError as exc:
            raise KeyAdminError(f"cannot write to {self.table_name}: {exc}") from None

    def query_partition(self, partition: str, sort_keys: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """Every item of ``partition`` (with sort keys between ``sort_keys``, if given), as the function reads it."""
        return list(self._call(lambda: list(LimitsTable(self.client, self.table_name).query_partition(
            partition, sort_keys=sort_keys))))

    def _call(self, call: Any) -> Any:
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            raise KeyAdminError(f"cannot reach {self.table_name}: {exc}") from None


class _Changed(Exception):
    """The item is not what the change was computed from (another admin got in first)."""


def _key_item(raw: dict[str, Any]) -> KeyItem:
    name = raw[SK]["S"]
    text = raw.get("record", {}).get("S")
    try:
        record = None if text is None else api_keys.parse_record(json.loads(text), f"the record of {name!r}")
    except (KeyDocumentError, ValueError) as exc:
        raise KeyAdminError(str(exc)) from None
    audit = [{field: value["S"] for field, value in entry["M"].items()} for entry in raw.get("audit", {}).get("L", [])]
    return KeyItem(name=name, record=record, audit=audit, raw_record=text)


def describe_models(models: tuple[str, ...] | None) -> str:
    return "every model" if models is None else ",".join(models)


def describe_limits(record: KeyRecord) -> str:
    """The key's own limits, then its own on each model that has some (``rpm=60; <model>: rpm=10``)."""
    return "; ".join([record.limits.describe(), *(f"{model}: {limits.describe()}"
                                                  for model, limits in record.model_limits)])


def _summary(record: KeyRecord) -> str:
    expiry = f"expires {show_time(record.expires_at)}" if record.expires_at else "no expiry"
    return f"{expiry}; limits {describe_limits(record)}; models {describe_models(record.allowed_models)}"


def _kept_changing(name: str) -> KeyAdminError:
    return KeyAdminError(f"the key {name!r} kept changing under this write ({WRITE_ATTEMPTS} attempts): retry")


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).replace(microsecond=0)


def show_time(moment: datetime | None) -> str:
    """A moment as the CLI shows it: ``2026-12-07 10:00 UTC`` (empty for none)."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
