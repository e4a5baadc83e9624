"""``python -m stream_client keys create | set-limits | list | rotate | revoke | usage | migrate``

Manages the API keys of a deployment with auth=api_key, in the DynamoDB table the streaming stack created
(``ApiKeysTableName`` in outputs.json): their digests, limits and audit trail, and the usage ledger.
``create`` and ``rotate`` print the new key on stdout, once; nothing stores it. ``list`` shows names, dates
and limits, never keys. A revoked key, and new limits, take effect within the function's refresh interval
(60 s by default). docs/limits.md explains the limits, the ledger and the cost shares.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from llm_stream.key_limits import LIMITS, KeyLimits, LimitsError

from . import client
from .key_admin import (
    DEFAULT_ROTATION_GRACE,
    KeyAdmin,
    KeyAdminError,
    describe_limits,
    describe_models,
    show_time,
)
from .key_document import KeyDocumentError, KeyRing, api_keys
from .usage_report import FORMATS, aligned_columns, month_start, render, usage_report

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient

DEFAULT_OUTPUTS = Path("outputs.json")
TABLE_OUTPUT = "ApiKeysTableName"
#: An older deployment's key document (before the table): ``keys migrate`` copies it in.
SECRET_OUTPUT = "ApiKeysSecretArn"  # noqa: S105 (an output's name, not a secret)
_DURATION = re.compile(r"^(\d+)([dh])$")
_MAX_LIFETIME = timedelta(days=3650)


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


#: ``--rpm none``: the key's own limit removed (it gets the deployment's default, if any).
NO_LIMIT = "none"


def parse_limit_value(text: str) -> int | str:
    if text.lower() == NO_LIMIT:
        return NO_LIMIT
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer or 'none'") from None


def parse_model(text: str) -> str:
    """One catalog model id."""
    models = parse_models(text)
    if len(models) != 1:
        raise argparse.ArgumentTypeError(f"{text!r}: name one model")
    return models[0]


def parse_model_price(text: str) -> tuple[str, float]:
    """``MODEL=USD``: a catalog model and its price per hour."""
    model, _, price = text.partition("=")
    try:
        value = float(price)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected MODEL=USD, a catalog model id and a price per hour")
    return parse_model(model), value


def parse_models(text: str) -> tuple[str, ...]:
    """``a,b``: catalog model ids, each once (a key restricted to a model no deployment serves is a mistake)."""
    from infra.catalog import load_catalog

    models = tuple(part.strip() for part in text.split(",") if part.strip())
    known = load_catalog().models
    unknown = [model for model in models if model not in known]
    if not models or unknown or len(set(models)) != len(models):
        problem = f"unknown model {unknown[0]!r}" if unknown else "name each model once" if models else "no model"
        raise argparse.ArgumentTypeError(f"{problem}; the catalog's models: {', '.join(sorted(known))}")
    return models


def parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day: write YYYY-MM-DD (UTC)") from None


def _add_limit_flags(parser: argparse.ArgumentParser, removable: bool) -> None:
    for name, meaning in LIMITS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=parse_limit_value, metavar="N",
                            help=f"{meaning}" + ("; 'none' removes the key's own limit" if removable else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stream_client keys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--table", help="the deployment's key table (default: read from --outputs)")
    source.add_argument("--outputs", type=Path, default=DEFAULT_OUTPUTS,
                        help="outputs file written by `make deploy` (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="issue a new key (printed once), with its own limits if given")
    create.add_argument("name", help=api_keys.NAME_RULE)
    create.add_argument("--expires", type=parse_lifetime, metavar="LIFETIME", help="say 90d or 12h (default: never)")
    create.add_argument("--models", type=parse_models, metavar="ID,ID",
                        help="the only models the key may call (catalog ids; default: every model served)")
    _add_limit_flags(create, removable=False)
    set_limits = commands.add_parser("set-limits", help="change a key's own limits (the others stay)")
    set_limits.add_argument("name")
    set_limits.add_argument("--model", type=parse_model, metavar="ID",
                            help="the key's own limits on this model: its requests then count apart from the key's "
                                 "others, against these limits and, for each one not set, the key's own")
    _add_limit_flags(set_limits, removable=True)
    set_models = commands.add_parser("set-models", help="restrict a key to some models, or lift the restriction")
    set_models.add_argument("name")
    choice = set_models.add_mutually_exclusive_group(required=True)
    choice.add_argument("--models", type=parse_models, metavar="ID,ID", help="the only models the key may call")
    choice.add_argument("--all", action="store_true", help="every model the deployment serves")
    commands.add_parser("list", help="names, dates, status, limits and models (never keys)")
    rotate = commands.add_parser("rotate", help="issue a new key for NAME; the old one works for a grace period")
    rotate.add_argument("name")
    rotate.add_argument("--grace", type=parse_lifetime, default=DEFAULT_ROTATION_GRACE, metavar="LIFETIME",
                        help="how long the old key keeps working, say 24h or 7d (default: 24h)")
    revoke = commands.add_parser("revoke", help="stop accepting a key (and a rotated-out one)")
    revoke.add_argument("name")
    usage = commands.add_parser("usage", help="requests, tokens, stream time and cost share per key and model")
    usage.add_argument("--since", type=parse_day, help="first UTC day, YYYY-MM-DD (default: this month's first)")
    usage.add_argument("--until", type=parse_day, help="last UTC day (default: today)")
    usage.add_argument("--key", help="one key's usage only")
    usage.add_argument("--format", choices=FORMATS, default="table")
    prices = usage.add_mutually_exclusive_group()
    prices.add_argument("--price-per-hour", type=float, metavar="USD",
                        help="the endpoint's price per hour, to share its cost (default: no cost shares)")
    prices.add_argument("--model-price", type=parse_model_price, action="append", metavar="MODEL=USD",
                        help="with several models, one model's own price per hour (what its copies' instance-hours "
                             "cost), shared by that model's tokens; once per model")
    migrate = commands.add_parser("migrate", help="copy an older deployment's key secret into the table (once)")
    migrate.add_argument("--secret-id", help=f"the key secret (default: {SECRET_OUTPUT} in --outputs)")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        table = args.table or str(_outputs(args.outputs)[TABLE_OUTPUT])
        admin = KeyAdmin(dynamodb_client(), table, caller_identity())
        _run(admin, args)
    except (KeyAdminError, client.ClientError, LimitsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(admin: KeyAdmin, args: argparse.Namespace) -> None:
    given = {name: getattr(args, name, None) for name in LIMITS}
    changes = {name: None if value == NO_LIMIT else value for name, value in given.items() if value is not None}
    if args.command == "create":
        key, record = admin.create(args.name, args.expires, KeyLimits(**changes), models=args.models)
        expiry = f"expires {show_time(record.expires_at)}" if record.expires_at else "does not expire"
        print(f"Created key {record.name!r} ({expiry}; limits: {record.limits.describe()}; models: "
              f"{describe_models(record.allowed_models)}). It is shown only now: store it safely.", file=sys.stderr)
        print(key)
    elif args.command == "set-models":
        record = admin.set_models(args.name, None if args.all else args.models)
        print(f"{args.name!r} may now call {describe_models(record.allowed_models)}; the function applies it within "
              "its refresh interval.", file=sys.stderr)
    elif args.command == "set-limits":
        if not changes:
            flags = ", ".join("--" + name.replace("_", "-") for name in LIMITS)
            raise KeyAdminError(f"name at least one limit to set: {flags}")
        record = admin.set_limits(args.name, changes, model=args.model)
        print(f"{args.name!r} now has limits: {describe_limits(record)} (keys without a limit of their own get the "
              "deployment's defaults); the function applies them within its refresh interval.", file=sys.stderr)
    elif args.command == "list":
        _print_keys(admin, datetime.now(UTC))
    elif args.command == "rotate":
        key, record = admin.rotate(args.name, args.grace)
        print(f"Rotated {args.name!r}: the previous key works until {show_time(record.previous_expires_at)}. The new "
              "key is shown only now: store it safely.", file=sys.stderr)
        print(key)
    elif args.command == "revoke":
        admin.revoke(args.name)
        print(f"Revoked {args.name!r}: the function refuses it within its refresh interval "
              "(API_KEYS_REFRESH_SECONDS, 60 s by default).", file=sys.stderr)
    elif args.command == "usage":
        today = datetime.now(UTC).date()
        since, until = args.since or month_start(today), args.until or today
        if since > until:
            raise KeyAdminError(f"--since {since} is after --until {until}")
        prices = dict(args.model_price or ())
        if len(prices) != len(args.model_price or ()):
            raise KeyAdminError("--model-price names a model twice: give each model's price once")
        print(render(usage_report(admin, since, until, args.key, args.price_per_hour, prices), args.format))
    else:
        _migrate(admin, args)


def _migrate(admin: KeyAdmin, args: argparse.Namespace) -> None:
    if admin.migrated():
        print(f"{admin.table_name} already holds the key secret's keys: nothing to do.", file=sys.stderr)
        return
    secret_id = args.secret_id or str(_outputs(args.outputs).get(SECRET_OUTPUT) or "")
    if not secret_id:
        raise KeyAdminError(f"no {SECRET_OUTPUT} in {args.outputs}: pass --secret-id (nothing to migrate otherwise)")
    try:
        text = secrets_client(secret_id).get_secret_value(SecretId=secret_id)["SecretString"]
        document = KeyRing.from_document(text)
    except (ClientError, BotoCoreError) as exc:
        raise KeyAdminError(f"cannot read {secret_id}: {exc}") from None
    except KeyDocumentError as exc:
        raise KeyAdminError(f"{secret_id} does not hold a key document: {exc}") from None
    copied, kept = admin.import_keys(document)
    print(f"Copied {len(copied)} keys into {admin.table_name}" + (f"; {len(kept)} were there already "
          f"({', '.join(kept)})" if kept else "") + ". The function reads the table only from its next refresh "
          "(API_KEYS_REFRESH_SECONDS); the stack keeps the secret, unused.", file=sys.stderr)


def _outputs(path: Path) -> dict[str, object]:
    return client.stack_outputs(
        path, TABLE_OUTPUT, "deploy with -c auth=api_key first, or pass --table",
        f"no stack in {path} has an {TABLE_OUTPUT} output: is the deployment's auth api_key?")


def dynamodb_client() -> DynamoDBClient:
    return boto3.client("dynamodb")


def secrets_client(secret_id: str) -> SecretsManagerClient:
    """A client in the secret's own region when its ARN names one (else the default region)."""
    parts = secret_id.split(":")
    region = parts[3] if secret_id.startswith("arn:") and len(parts) > 3 else None
    return boto3.client("secretsmanager", region_name=region)


def caller_identity() -> str:
    """Who is making changes, for the audit trail: the caller's AWS identity (its ARN)."""
    try:
        return str(boto3.client("sts").get_caller_identity()["Arn"])
    except (ClientError, BotoCoreError) as exc:
        raise KeyAdminError(f"cannot tell who you are (sts:GetCallerIdentity): {exc}") from None


def _print_keys(admin: KeyAdmin, now: datetime) -> None:
    rows = [("NAME", "CREATED", "EXPIRES", "STATUS", "LIMITS", "MODELS")]
    for item in admin.items():
        record = item.record
        if record is None:
            rows.append((item.name, "", "", "revoked", "", ""))
            continue
        status = "expired" if record.expired(now) else "active"
        if record.previous_sha256 and record.previous_expires_at and now < record.previous_expires_at:
            status += f" (previous key until {show_time(record.previous_expires_at)})"
        expires = show_time(record.expires_at) if record.expires_at else "never"
        rows.append((record.name, show_time(record.created_at), expires, status, describe_limits(record),
                     describe_models(record.allowed_models)))
    print("\n".join(aligned_columns(rows)))
    if len(rows) == 1:
        print("(no keys: create one with `python -m stream_client keys create NAME`)", file=sys.stderr)
