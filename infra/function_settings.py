"""The function's contract modules, imported from the function's source.

``lambda/llm_stream/settings.py`` is the contract between the stack and the function: the stack builds
the function's :class:`Settings` and writes them as its environment, so names and defaults live in one
place. ``api_keys.py`` defines the key document the stack's secret starts with.
``lambda`` is not an importable package name, so its folder joins the import path here, once.
"""

from __future__ import annotations

import sys

from .bundling import LAMBDA_DIR

if str(LAMBDA_DIR) not in sys.path:
    sys.path.append(str(LAMBDA_DIR))

from llm_stream import api_keys
from llm_stream import settings as function_settings

FunctionSettings = function_settings.Settings

__all__ = ["FunctionSettings", "api_keys", "function_settings"]
