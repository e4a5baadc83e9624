"""The docs a newcomer reads: a short README, every module placed on the architecture page, links that lead
somewhere. (That every runnable snippet runs: ``tests/e2e/test_doc_snippets.py``.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_read_in_five_minutes() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES


def test_every_module_has_its_place_on_the_architecture_page() -> None:
    tracked = subprocess.run(["git", "ls-files", "*.py", "lambda/run.sh"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    modules = [path for path in tracked if not path.startswith("tests/")]
    page = (ROOT / "docs" / "architecture.md").read_text()
    assert len(modules) > 60
    assert [module for module in modules if f"`{module}`" not in page] == []


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation but hyphens and underscores dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_link_within_the_project_leads_somewhere(page: Path) -> None:
    broken = []
    for target in _LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and anchor not in anchors(linked)):
            broken.append(target)
    assert broken == []
