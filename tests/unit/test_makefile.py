"""The Makefile's deploy and destroy: interactive by default, and usable without a terminal with APPROVE=1."""

from __future__ import annotations

import subprocess

import pytest

from tests import ROOT


def planned(*arguments: str) -> str:
    """The commands ``make`` would run (``-n``: nothing runs), after the install steps."""
    result = subprocess.run(["make", "--no-print-directory", "-n", *arguments], cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=60)
    return result.stdout


@pytest.mark.parametrize(("target", "interactive", "unattended"), [
    ("deploy", "--require-approval broadening", "--require-approval never"),
    ("destroy", "destroy --all", "destroy --all --force"),
])
def test_deploy_and_destroy_ask_unless_approved(target: str, interactive: str, unattended: str) -> None:
    for asking in (planned(target), planned(target, "APPROVE=0")):  # only a yes approves
        assert interactive in asking
        assert "--force" not in asking
        assert "never" not in asking
    assert unattended in planned(target, "APPROVE=1")
