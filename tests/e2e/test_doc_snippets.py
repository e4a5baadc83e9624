"""Every snippet the docs mark runnable (a fence such as `` ```python run ``) runs as pasted against the local
stack: the real function under uvicorn in front of the emulator, its address put where the docs say
``http://127.0.0.1:8080`` (``make dev``'s)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import ROOT

pytestmark = pytest.mark.clients

DOCS_URL = "http://127.0.0.1:8080"
_FENCE = re.compile(r"^```(?P<language>\w+) run\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
#: How each language is run, from the repository's root (so `openai` resolves in node_modules).
RUNNERS = {"sh": ["bash", "-euo", "pipefail", "-c"], "python": [sys.executable, "-c"],
           "js": ["node", "--input-type=module", "-e"]}


def snippets() -> list[tuple[str, str, str]]:
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for number, match in enumerate(_FENCE.finditer(page.read_text()), start=1):
            found.append((f"{page.relative_to(ROOT)}#{number}", match["language"], match["code"]))
    return found


SNIPPETS = snippets()


def test_every_snippet_that_calls_the_local_stack_is_marked_runnable() -> None:
    """A fence whose code calls ``make dev``'s address must be run by this test: none escapes it unmarked."""
    fences = re.compile(r"^```(?P<info>[^\n]*)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)
    unmarked = [f"{page.relative_to(ROOT)}: {match['code'].splitlines()[0]}"
                for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
                for match in fences.finditer(page.read_text())
                if DOCS_URL in match["code"] and not match["info"].endswith(" run")]
    assert unmarked == []
    assert {language for _, language, _ in SNIPPETS} == set(RUNNERS)  # each runner has a snippet to run


@pytest.mark.parametrize(("where", "language", "code"), SNIPPETS, ids=[where for where, _, _ in SNIPPETS])
def test_a_runnable_snippet_runs_as_pasted(function, where: str, language: str, code: str) -> None:
    assert DOCS_URL in code, f"{where} does not call the local stack at {DOCS_URL}"
    result = subprocess.run([*RUNNERS[language], code.replace(DOCS_URL, function.url)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, env=_environment())
    assert result.returncode == 0, f"{where}:\n{result.stderr}"
    assert result.stdout.strip(), f"{where} printed nothing"


def _environment() -> dict[str, str]:
    """The caller's environment, with this virtual environment's tools first (``python``, as an activated
    environment would have it)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
