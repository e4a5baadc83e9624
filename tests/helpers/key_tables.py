"""Keys in a test's key table (the ``key_table`` fixture), through the CLI's own admin."""

from __future__ import annotations

import boto3

from stream_client import keys as keys_cli
from stream_client.key_admin import KeyAdmin


def table_admin(table: str) -> KeyAdmin:
    """The CLI's admin for ``table``, acting as the caller moto's STS names."""
    return KeyAdmin(boto3.client("dynamodb"), table, keys_cli.caller_identity())
