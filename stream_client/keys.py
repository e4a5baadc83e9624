"""``python -m stream_client keys create NAME [--expires 90d] | list | revoke NAME``

Manages the API keys of a deployment with auth=api_key: their digests live in the Secrets Manager
secret the streaming stack created (``ApiKeysSecretArn`` in outputs.json). ``create`` prints the new
key on stdout, once; nothing stores it. ``list`` shows names and dates, never keys. A revoked key stops
working within the function's refresh interval (60 s by default).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from . import client
from .key_document import KeyDocumentError, KeyRecord, KeyRing, api_keys

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

DEFAULT_OUTPUTS = Path("outputs.json")
SECRET_OUTPUT = "ApiKeysSecretArn"  # noqa: S105 (an output's name, not a secret)
#: Attempts at a write that a concurrent writer keeps getting in before.
WRITE_ATTEMPTS = 5
CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
_DURATION = re.compile(r"^(\d+)([dh])$")
_MAX_LIFETIME = timedelta(days=3650)


class KeyAdminError(Exception):
    """What went wrong, in words for the person at the terminal."""


@dataclass
class KeyAdmin:
    """Reads and writes the key document in its secret (read, change, write, read back)."""

    client: SecretsManagerClient
    secret_id: str

    def ring(self) -> KeyRing:
        return self._current()[0]

    def _current(self) -> tuple[KeyRing, str]:
        """The key document and the id of the secret's version that holds it (AWSCURRENT)."""
        try:
            value = self.client.get_secret_value(SecretId=self.secret_id, VersionStage=CURRENT)
        except (ClientError, BotoCoreError) as exc:
            raise KeyAdminError(f"cannot read {self.secret_id}: {exc}") from None
        try:
            return KeyRing.from_document(value["SecretString"]), value["VersionId"]
        except KeyDocumentError as exc:
            raise KeyAdminError(f"{self.secret_id} does not hold a key document: {exc}") from None

    def create(self, name: str, lifetime: timedelta | None, now: datetime | None = None) -> tuple[str, KeyRecord]:
        """A new key and its record; the key is returned here and nowhere else."""
        if not api_keys.valid_name(name):
            raise KeyAdminError(f"{name!r} is not a valid key name: use {api_keys.NAME_RULE}")
        created = (now or datetime.now(UTC)).replace(microsecond=0)
        key = api_keys.new_key()
        record = KeyRecord(name=name, sha256=api_keys.key_digest(key), created_at=created,
                           expires_at=None if lifetime is None else created + lifetime)

        self._update(lambda ring: ring if ring.named(name) == record else ring.adding(record))
        return key, record

    def revoke(self, name: str) -> KeyRecord:
        record = self.ring().named(name)
        if record is None:
            raise KeyAdminError(f"no key named {name!r} in {self.secret_id}")
        self._update(lambda ring: ring.removing(name))
        return record

    def _update(self, change: Callable[[KeyRing], KeyRing]) -> None:
        """Write ``change`` of the current document as a compare-and-swap, so two admins never lose each
        other's change: the new version is stored without the AWSCURRENT label, and the label moves to it
        only from the version this change was made on (UpdateSecretVersionStage refuses to move it from a
        version that no longer holds it). If another write came first, the change is made again on top."""
        for _ in range(WRITE_ATTEMPTS):
            ring, version = self._current()
            try:
                changed = change(ring)
            except KeyDocumentError as exc:
                raise KeyAdminError(str(exc)) from None
            if changed == ring:  # already applied: a retried write whose first answer was lost
                return
            document = changed.to_document()
            try:
                written = self.client.put_secret_value(SecretId=self.secret_id, SecretString=document,
                                                       VersionStages=[PENDING])["VersionId"]
                self.client.update_secret_version_stage(SecretId=self.secret_id, VersionStage=CURRENT,
                                                        MoveToVersionId=written, RemoveFromVersionId=version)
                return
            except ClientError as exc:
                if self._current()[1] == version:  # not a concurrent write: a real failure
                    raise KeyAdminError(f"cannot write {self.secret_id}: {exc}") from None
            except BotoCoreError as exc:
                raise KeyAdminError(f"cannot write {self.secret_id}: {exc}") from None
        raise KeyAdminError(f"{self.secret_id} kept changing under this write ({WRITE_ATTEMPTS} attempts): retry")


def parse_lifetime(text: str) -> timedelta:
    match = _DURATION.match(text)
    lifetime = None
    if match:
        amount = int(match[1])
        lifetime = timedelta(days=amount) if match[2] == "d" else timedelta(hours=amount)
    if lifetime is None or not timedelta(0) < lifetime <= _MAX_LIFETIME:
        raise argparse.ArgumentTypeError(f"{text!r} is not a lifetime: use Nd or Nh (say 90d or 12h), "
                                         "up to 3650 days")
    return lifetime


def secret_from_outputs(path: Path) -> str:
    outputs = client.stack_outputs(
        path, SECRET_OUTPUT, "deploy with -c auth=api_key first, or pass --secret-id",
        f"no stack in {path} has an {SECRET_OUTPUT} output: is the deployment's auth api_key?")
    return str(outputs[SECRET_OUTPUT])


def secrets_client(secret_id: str) -> SecretsManagerClient:
    """A client in the secret's own region when its ARN names one (else the default region)."""
    parts = secret_id.split(":")
    region = parts[3] if secret_id.startswith("arn:") and len(parts) > 3 else None
    return boto3.client("secretsmanager", region_name=region)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stream_client keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--secret-id", help="the key document's secret (default: read from --outputs)")
    source.add_argument("--outputs", type=Path, default=DEFAULT_OUTPUTS,
                        help="outputs file written by `make deploy` (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="issue a new key (printed once)")
    create.add_argument("name", help=api_keys.NAME_RULE)
    create.add_argument("--expires", type=parse_lifetime, metavar="LIFETIME", help="say 90d or 12h (default: never)")
    commands.add_parser("list", help="names, creation and expiry dates (never keys)")
    revoke = commands.add_parser("revoke", help="stop accepting a key")
    revoke.add_argument("name")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        secret_id = args.secret_id or secret_from_outputs(args.outputs)
        admin = KeyAdmin(secrets_client(secret_id), secret_id)
        if args.command == "create":
            key, record = admin.create(args.name, args.expires)
            until = f"expires {_show(record.expires_at)}" if record.expires_at else "does not expire"
            print(f"Created key {record.name!r} ({until}). It is shown only now: store it safely.", file=sys.stderr)
            print(key)
        elif args.command == "list":
            _print_table(admin.ring(), datetime.now(UTC))
        else:
            admin.revoke(args.name)
            print(f"Revoked {args.name!r}: the function refuses it within its refresh interval "
                  "(API_KEYS_REFRESH_SECONDS, 60 s by default).", file=sys.stderr)
    except (KeyAdminError, client.ClientError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_table(ring: KeyRing, now: datetime) -> None:
    rows = [("NAME", "CREATED", "EXPIRES", "STATUS")]
    rows += [(record.name, _show(record.created_at), _show(record.expires_at) if record.expires_at else "never",
              "expired" if record.expired(now) else "active") for record in ring.records]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not ring.records:
        print("(no keys: create one with `python -m stream_client keys create NAME`)", file=sys.stderr)


def _show(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
