"""The function's contract modules, imported from the function's source, and what of them a model decides.

``lambda/llm_stream/settings.py`` is the contract between the stack and the function: the stack builds
the function's :class:`Settings` and writes them as its environment, so names and defaults live in one
place. ``api_keys.py`` defines the key document the stack's secret starts with.
The function's package is installed with the project (``pyproject.toml``: ``llm_stream`` from
``lambda/llm_stream``), so it imports like any other. This module needs no CDK: local runs use it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_stream import api_keys
from llm_stream import settings as function_settings
from llm_stream.families import CAPABILITIES
from llm_stream.limits_table import KEY_PARTITION
from llm_stream.limits_table import PK as TABLE_PARTITION_KEY
from llm_stream.limits_table import SK as TABLE_SORT_KEY
from llm_stream.limits_table import TIDY_ATTRIBUTE as TABLE_TIDY_ATTRIBUTE

from .catalog import CatalogModel

#: The function's folder: its package, ``run.sh`` and ``requirements.txt`` (what the bundle is built from).
LAMBDA_DIR = Path(__file__).resolve().parent.parent / "lambda"

FunctionSettings = function_settings.Settings
ServedModel = function_settings.ServedModel

__all__ = ["KEY_PARTITION", "TABLE_PARTITION_KEY", "TABLE_SORT_KEY", "TABLE_TIDY_ATTRIBUTE", "FunctionSettings",
           "ServedModel",
           "api_keys", "function_settings", "model_settings"]


def model_settings(model: CatalogModel) -> dict[str, Any]:
    """The function's settings a model decides: a deployment's defaults (its context may lower the caps)
    and what a local run as that model uses."""
    return {
        "model_id": model.model_id,
        "model_max_total_tokens": model.max_total_tokens,
        "max_new_tokens": model.max_total_tokens - model.max_input_tokens,
        "max_input_chars": function_settings.INPUT_CHARS_PER_TOKEN * model.max_input_tokens,
        "chat_format": model.chat_format or function_settings.NO_CHAT_FORMAT,
        "container_family": model.container_family,
        "container_capabilities": tuple(name for name in CAPABILITIES
                                        if model.capabilities.get(name, {}).get("supported")),
    }
