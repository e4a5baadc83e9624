"""The key document's format, from the function's own module: one definition for its writer and its reader."""

from __future__ import annotations

import sys
from pathlib import Path

# The function's folder is not an importable package name (``lambda``): it joins the import path here.
if str(Path(__file__).resolve().parent.parent / "lambda") not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent.parent / "lambda"))

from llm_stream import api_keys
from llm_stream.api_keys import KeyDocumentError, KeyRecord, KeyRing

__all__ = ["KeyDocumentError", "KeyRecord", "KeyRing", "api_keys"]
