"""The key document's format, from the function's own module: one definition for its writer and its reader."""

from __future__ import annotations

from llm_stream import api_keys
from llm_stream.api_keys import KeyDocumentError, KeyRecord, KeyRing

__all__ = ["KeyDocumentError", "KeyRecord", "KeyRing", "api_keys"]
