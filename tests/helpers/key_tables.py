"""Keys for tests: in a test's key table (the ``key_table`` fixture), through the CLI's own admin, or in a key
document file (``API_KEYS_FILE``, for tests of the function without DynamoDB)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import boto3

from stream_client import keys as keys_cli
from stream_client.key_admin import KeyAdmin
from stream_client.key_document import KeyRecord, KeyRing, api_keys


def table_admin(table: str) -> KeyAdmin:
    """The CLI's admin for ``table``, acting as the caller moto's STS names."""
    return KeyAdmin(boto3.client("dynamodb"), table, keys_cli.caller_identity())


def write_key_file(path: Path, **keys: str) -> Path:
    """A key document accepting each key under its consumer name."""
    now = datetime.now(UTC)
    records = tuple(KeyRecord(name=name, sha256=api_keys.key_digest(key), created_at=now) for name, key in keys.items())
    path.write_text(KeyRing(records).to_document(), encoding="utf-8")
    return path
