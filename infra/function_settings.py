"""The function's settings module (``lambda/llm_stream/settings.py``), imported from the function's source.

It is the contract between the stack and the function: the stack builds the function's
:class:`Settings` and writes them as its environment, so names and defaults live in one place.
``lambda`` is not an importable package name, so its folder joins the import path here, once.
"""

from __future__ import annotations

import sys

from .bundling import LAMBDA_DIR

if str(LAMBDA_DIR) not in sys.path:
    sys.path.append(str(LAMBDA_DIR))

from llm_stream import settings as function_settings

FunctionSettings = function_settings.Settings

__all__ = ["FunctionSettings", "function_settings"]
