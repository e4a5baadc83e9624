"""API keys: the key document kept in the key store, and how a presented key is recognised.

The document is JSON (the secret's string in Secrets Manager, a file locally)::

    {"format": "llm-stream-api-keys/1",
     "keys": [{"name": "team-a", "sha256": "<hex digest of the key>",
               "created_at": "2026-11-25T10:00:00Z", "expires_at": null}]}

It holds each key's SHA-256 digest, never the key: keys are 256 random bits, so a fast digest cannot
be reversed by guessing, and whoever reads the secret still cannot call the function. The consumer's
``name`` is what logs and metrics show. ``stream_client keys`` writes the document; the function reads it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DOCUMENT_FORMAT = "llm-stream-api-keys/1"
#: A new key: this prefix (so secret scanners and people recognise one) and 32 random bytes, base64url.
KEY_PREFIX = "lsk-"
KEY_RANDOM_BYTES = 32
#: Longer presented values are refused without hashing (a real key is 47 characters).
MAX_PRESENTED_KEY_CHARS = 256
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"


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

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "created_at": _timestamp(self.created_at),
                "expires_at": None if self.expires_at is None else _timestamp(self.expires_at)}


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
        records = tuple(_record(index, entry) for index, entry in enumerate(entries))
        names = [record.name for record in records]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise KeyDocumentError(f"the key document names {', '.join(duplicates)} more than once")
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
        found: KeyRecord | None = None
        for record in self.records:
            if hmac.compare_digest(record.sha256.encode(), presented_digest):
                found = record
        return found

    def named(self, name: str) -> KeyRecord | None:
        return next((record for record in self.records if record.name == name), None)

    def adding(self, record: KeyRecord) -> KeyRing:
        if self.named(record.name) is not None:
            raise KeyDocumentError(f"a key named {record.name!r} exists already: revoke it first")
        return KeyRing((*self.records, record))

    def removing(self, name: str) -> KeyRing:
        return KeyRing(tuple(record for record in self.records if record.name != name))


EMPTY_DOCUMENT = KeyRing().to_document()


def _record(index: int, entry: object) -> KeyRecord:
    where = f"the key document's keys[{index}]"
    if not isinstance(entry, dict):
        raise KeyDocumentError(f"{where} is not an object")
    name, digest = entry.get("name"), entry.get("sha256")
    if not isinstance(name, str) or not valid_name(name):
        raise KeyDocumentError(f"{where}.name is not {NAME_RULE}")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise KeyDocumentError(f"{where}.sha256 is not 64 lowercase hex digits")
    expires = entry.get("expires_at")
    return KeyRecord(name=name, sha256=digest, created_at=_parse_time(entry.get("created_at"), f"{where}.created_at"),
                     expires_at=None if expires is None else _parse_time(expires, f"{where}.expires_at"))


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
