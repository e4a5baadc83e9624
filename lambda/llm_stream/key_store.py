"""Where the function gets its API keys: the deployment's DynamoDB table (``limits_table.py``), or an older
deployment's key document (a Secrets Manager secret, or a file), one interface.

The store reads the keys at start-up and again once a refresh interval has passed, on the
request that finds it due (Lambda freezes an idle instance, so nothing runs between requests), so a key
revoked with ``stream_client keys revoke`` stops working within one interval without a redeploy. When a
read fails, the last good copy keeps serving until it is ``max_age_seconds`` old, and each failure is
logged; after that, or when there has never been a copy (a cold start while the keys are unreachable),
:meth:`KeyStore.ring` answers ``None`` and the gate refuses with 503: it fails closed.

Ages use the wall clock: Lambda's monotonic clock is not documented to advance while an instance is frozen.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import anyio
import anyio.to_thread

from .api_keys import KeyDocumentError, KeyRing
from .logs import log_event
from .settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from .limits_table import LimitsTable

#: After a failed read, the next attempt waits at most this long (or one interval, if shorter).
RETRY_AFTER_FAILURE_SECONDS = 5.0


class KeySource(Protocol):
    #: What the log says the keys come from.
    description: str

    def read(self) -> KeyRing:
        """The keys (blocking; the store calls it on a worker thread)."""


class SecretsManagerSource:
    def __init__(self, client: SecretsManagerClient, secret_id: str) -> None:
        self.client = client
        self.secret_id = secret_id
        self.description = f"Secrets Manager secret {secret_id}"

    def read(self) -> KeyRing:
        # AWSCURRENT is what GetSecretValue returns by default; named, because moto's server (the tests'
        # Secrets Manager) otherwise returns the first version after UpdateSecretVersionStage moved the label.
        return KeyRing.from_document(
            self.client.get_secret_value(SecretId=self.secret_id, VersionStage="AWSCURRENT")["SecretString"])


class FileSource:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"file {path}"

    def read(self) -> KeyRing:
        return KeyRing.from_document(self.path.read_text(encoding="utf-8"))


class TableSource:
    """The key records in the deployment's table; while an older deployment's key document has not been copied
    in (``stream_client keys migrate`` writes the marker last), that document's keys too, so an upgrade
    refuses no key that worked before it (a record in the table wins over the document's of the same name,
    and a name revoked in the table is not taken from the document)."""

    def __init__(self, table: LimitsTable, legacy: KeySource | None = None) -> None:
        self.table = table
        self.legacy = legacy
        self.description = f"DynamoDB table {table.table_name}" + (
            f" (and, until migrated, {legacy.description})" if legacy else "")

    def read(self) -> KeyRing:
        items = self.table.key_records()
        ring = KeyRing.from_records(items.records, f"the key records of {self.table.table_name}")
        if self.legacy is None or items.migrated:
            return ring
        in_table = {record.name for record in ring.records} | items.revoked  # a key revoked since stays revoked
        legacy = [record for record in self.legacy.read().records if record.name not in in_table]
        return KeyRing((*ring.records, *legacy))


class KeyStore:
    def __init__(self, source: KeySource, refresh_seconds: float, max_age_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.refresh_seconds = refresh_seconds
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._ring: KeyRing | None = None
        self._loaded_at = 0.0
        self._next_read_at = 0.0
        self._lock = anyio.Lock()
        #: The table the keys' limits and usage are kept in, when the keys come from one.
        self.table = source.table if isinstance(source, TableSource) else None

    async def ring(self) -> KeyRing | None:
        """The keys to check against, read again first if due; ``None`` when no copy is young enough."""
        if self._clock() >= self._next_read_at:
            async with self._lock:  # one read at a time; whoever waited finds it done
                if self._clock() >= self._next_read_at:
                    await self._read()
        if self._ring is not None and self._clock() - self._loaded_at <= self.max_age_seconds:
            return self._ring
        return None

    def retry_after_seconds(self) -> int:
        """When a caller refused for want of keys might try again."""
        return max(1, math.ceil(self._next_read_at - self._clock()))

    async def _read(self) -> None:
        started = self._clock()
        try:
            ring = await anyio.to_thread.run_sync(self.source.read)
        except Exception as exc:  # any failure of the source or the document: the same fallback
            self._next_read_at = started + min(self.refresh_seconds, RETRY_AFTER_FAILURE_SECONDS)
            age = None if self._ring is None else round(started - self._loaded_at, 1)
            log_event({
                "event": "api_keys_read_failed",
                "source": self.source.description,
                "error": _describe(exc),
                "last_good_copy_age_seconds": age,
                "serving_last_good_copy": age is not None and age <= self.max_age_seconds,
            })
            return
        self._ring, self._loaded_at = ring, started
        self._next_read_at = started + self.refresh_seconds


def _describe(exc: Exception) -> str:
    if isinstance(exc, KeyDocumentError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def create_key_store(settings: Settings) -> KeyStore | None:
    """The store api_key auth checks keys against (``None`` in the other modes: nothing to check)."""
    if settings.auth_mode != "api_key":
        return None
    source: KeySource
    if settings.api_keys_file:
        source = FileSource(Path(settings.api_keys_file))
    else:  # boto3 is imported here, in this mode only (not on the others' way to ready)
        import boto3
        from botocore.config import Config

        # A read holds up the request that triggered it, an admission too: keep a stalled call short.
        config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2})
        legacy = (SecretsManagerSource(boto3.client("secretsmanager", config=config), settings.api_keys_secret_id)
                  if settings.api_keys_secret_id else None)
        if settings.api_keys_table:
            from .limits_table import LimitsTable

            source = TableSource(LimitsTable(boto3.client("dynamodb", config=config), settings.api_keys_table), legacy)
        else:
            assert legacy is not None  # noqa: S101 (the settings require one source)
            source = legacy
    return KeyStore(source, settings.api_keys_refresh_seconds, settings.api_keys_max_age_seconds)
