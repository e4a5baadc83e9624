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


def test_the_docs_have_runnable_snippets_in_every_language_they_show() -> None:
    assert {language for _, language, _ in SNIPPETS} == set(RUNNERS)


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
