"""Tests in three tiers: ``unit/`` (in-process), ``integration/`` (real sockets), ``e2e/`` (whole tools)."""

from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).resolve().parent.parent
