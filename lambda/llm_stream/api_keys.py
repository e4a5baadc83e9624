"""API keys: their records, and how a presented key is recognised.

A record is a JSON object (one per key in the deployment's DynamoDB table, ``limits_table.py``)::

    {"schema": 2, "name": "team-a", "sha256": "<hex digest of the key>",
     "created_at": "2026-11-25T10:00:00Z", "expires_at": null,
     "limits": {"max_streams": 4, "rpm": 60}, "allowed_models": null,
     "model_limits": {"huggingface-llm-falcon-40b-instruct-bf16": {"rpm": 10}},
     "previous": {"sha256": "<digest of the key it replaces>", "expires_at": "2026-12-01T10:00:00Z"}}

It holds each key's SHA-256 digest, never the key: keys are 256 random bits, so a fast digest cannot
be reversed by guessing, and whoever reads the table still cannot call the function. The consumer's
``name`` is what logs and metrics show. ``previous`` is the key a rotation replaced, accepted until its
expiry; ``allowed_models`` restricts a key to some models (``null``: every model). ``model_limits`` (absent:
none) gives a key limits of its own on a model: requests to that model are counted apart from the key's other
requests (``<name>@<model>``), against those limits, each unset one the key's own (``key_accounting.py``).

Before the table, the records lived in one document in a Secrets Manager secret (or a file locally), which
the function still reads: ``{"format": "llm-stream-api-keys/1", "keys": [<records of schema 1>]}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .key_limits import KeyLimits, LimitsError

DOCUMENT_FORMAT = "llm-stream-api-keys/1"
#: A new key: this prefix (so secret scanners and people recognise one) and 32 random bytes, base64url.
KEY_PREFIX = "lsk-"
KEY_RANDOM_BYTES = 32
#: Longer presented values are refused without hashing (a real key is 47 characters).
MAX_PRESENTED_KEY_CHARS = 256
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
#: The record format written now; schema 1 (the secret's) had no limits, models or rotation.
RECORD_SCHEMA = 2


class KeyDocumentError(ValueError):
    """The key document is not valid JSON in the expected shape (the message says where)."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


@dataclass(frozen=True)
class KeyRecord:
    name: str
    sha256: str
    created_at: datetime
    expires_at: datetime | None = None
    limits: KeyLimits = field(default_factory=KeyLimits)
    allowed_models: tuple[str, ...] | None = None
    #: Limits of its own on some models, by model id (sorted pairs, so a record stays hashable).
    model_limits: tuple[tuple[str, KeyLimits], ...] = ()
    #: The key a rotation replaced, and when it stops being accepted.
    previous_sha256: str | None = None
    previous_expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def digests(self, now: datetime) -> tuple[str, ...]:
        """The digests this record accepts now: its key's, and the replaced key's during a rotation's grace."""
        if self.previous_sha256 is None or self.previous_expires_at is None or now >= self.previous_expires_at:
            return (self.sha256,)
        return (self.sha256, self.previous_sha256)

    def limits_on(self, model_id: str) -> KeyLimits | None:
        """The key's own limits on ``model_id``; ``None``: the model's requests count with the key's others."""
        return dict(self.model_limits).get(model_id)

    def with_model_limits(self, model_id: str, limits: KeyLimits) -> KeyRecord:
        """This record with ``limits`` on ``model_id`` (none set: the model counts with the others again)."""
        others = {model: own for model, own in self.model_limits if model != model_id}
        if limits.to_json():
            others[model_id] = limits
        return replace(self, model_limits=tuple(sorted(others.items())))

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "schema": RECORD_SCHEMA, "name": self.name, "sha256": self.sha256,
            "created_at": _timestamp(self.created_at), "expires_at": _optional_timestamp(self.expires_at),
            "limits": self.limits.to_json(),
            "allowed_models": None if self.allowed_models is None else list(self.allowed_models)}
        if self.model_limits:  # written only when set: a record without stays as it was
            record["model_limits"] = {model: limits.to_json() for model, limits in self.model_limits}
        if self.previous_sha256 is not None:
            record["previous"] = {"sha256": self.previous_sha256,
                                  "expires_at": _optional_timestamp(self.previous_expires_at)}
        return record


@dataclass(frozen=True)
class KeyRing:
    """The keys the function accepts, as the key document lists them."""

    records: tuple[KeyRecord, ...] = ()

    @classmethod
    def from_document(cls, text: str) -> KeyRing:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise KeyDocumentError(f"the key document is not JSON: {exc}") from None
        if not isinstance(document, dict) or document.get("format") != DOCUMENT_FORMAT:
            raise KeyDocumentError(f"the key document is not an object with format {DOCUMENT_FORMAT!r}")
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise KeyDocumentError("the key document's 'keys' is not a list")
        return cls.from_records(entries, "the key document's keys")

    @classmethod
    def from_records(cls, entries: list[Any], where: str) -> KeyRing:
        records = tuple(parse_record(entry, f"{where}[{index}]") for index, entry in enumerate(entries))
        names = [record.name for record in records]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise KeyDocumentError(f"{where} list {', '.join(duplicates)} more than once")
        return cls(records)

    def to_document(self) -> str:
        return json.dumps({"format": DOCUMENT_FORMAT, "keys": [record.to_json() for record in self.records]},
                          indent=1)

    def find(self, presented: str) -> KeyRecord | None:
        """The record whose digest matches ``presented``. Every record is compared, each in constant time,
        so the time taken says nothing about which digest, or how much of one, matched."""
        if not presented or len(presented) > MAX_PRESENTED_KEY_CHARS:
            return None
        presented_digest = key_digest(presented).encode()
        now = datetime.now(UTC)
        found: KeyRecord | None = None
        for record in self.records:
            for digest in record.digests(now):
                if hmac.compare_digest(digest.encode(), presented_digest):
                    found = record
        return found


EMPTY_DOCUMENT = KeyRing().to_document()


def parse_record(entry: object, where: str) -> KeyRecord:
    """A record as the table or the key document holds it; :class:`KeyDocumentError` says what is wrong where."""
    if not isinstance(entry, dict):
        raise KeyDocumentError(f"{where} is not an object")
    name, digest = entry.get("name"), entry.get("sha256")
    if not isinstance(name, str) or not valid_name(name):
        raise KeyDocumentError(f"{where}.name is not {NAME_RULE}")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise KeyDocumentError(f"{where}.sha256 is not 64 lowercase hex digits")
    schema = entry.get("schema", 1)
    if schema not in (1, RECORD_SCHEMA):
        raise KeyDocumentError(f"{where}.schema is {schema!r}: this function reads schemas 1 and {RECORD_SCHEMA}")
    try:
        limits = KeyLimits.from_json(entry.get("limits"), f"{where}.limits")
    except LimitsError as exc:
        raise KeyDocumentError(str(exc)) from None
    models = entry.get("allowed_models")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise KeyDocumentError(f"{where}.allowed_models is not null or a list of model ids")
    model_limits = _model_limits(entry.get("model_limits"), f"{where}.model_limits")
    previous = entry.get("previous") or {}
    previous_digest = previous.get("sha256") if isinstance(previous, dict) else None
    if previous and (not isinstance(previous_digest, str) or not _DIGEST.match(previous_digest)):
        raise KeyDocumentError(f"{where}.previous.sha256 is not 64 lowercase hex digits")
    return KeyRecord(name=name, sha256=digest, created_at=_parse_time(entry.get("created_at"), f"{where}.created_at"),
                     expires_at=_parse_optional_time(entry.get("expires_at"), f"{where}.expires_at"),
                     limits=limits, allowed_models=None if models is None else tuple(models),
                     model_limits=model_limits, previous_sha256=previous_digest,
                     previous_expires_at=_previous_expiry(previous, where) if previous_digest else None)


def _model_limits(value: object, where: str) -> tuple[tuple[str, KeyLimits], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise KeyDocumentError(f"{where} is not an object of model ids and their limits")
    try:
        return tuple(sorted((str(model), KeyLimits.from_json(limits, f"{where}.{model}"))
                            for model, limits in value.items()))
    except LimitsError as exc:
        raise KeyDocumentError(str(exc)) from None


def _previous_expiry(previous: dict[str, Any], where: str) -> datetime | None:
    return _parse_optional_time(previous.get("expires_at"), f"{where}.previous.expires_at")


def _parse_optional_time(value: object, where: str) -> datetime | None:
    return None if value is None else _parse_time(value, where)


def _parse_time(value: object, where: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    raise KeyDocumentError(f"{where} is not an ISO 8601 time with a time zone")


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _optional_timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else _timestamp(moment)
