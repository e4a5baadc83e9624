"""Function calling: OpenAI's ``tools`` and ``tool_choice``, served through the container's ``grammar``.

The function builds the grammar and the tool prompt itself, following TGI's own construction
(``router/src/infer/tool_grammar.rs`` ``ToolGrammar::apply`` and ``chat_template.rs``): one schema per
function, its parameters plus a ``_name`` constant, under ``$functions``; the answer is
``{"function": {"_name": <name>, ...arguments}}``; with ``auto`` a ``no_tool`` function whose ``content`` is an
ordinary reply is one of the choices; the tool list and an instruction are appended to the last turn. Doing it
here (not through TGI's Messages API) lets the choices mean what OpenAI means: ``required`` is any function
(TGI reads it as a function's name), a named function is that one, ``none`` is a plain answer; and it works
on the ``/invocations`` generate route every pinned TGI serves.

One call per answer (as TGI); the call is known once the answer is whole, so a tool answer's text is held
back and sent when it ends (``answer_shapes.py``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .answer_shapes import Settled, ToolCall
from .errors import ApiError
from .output_formats import require_grammar
from .schema_rules import SchemaBudget, check_schema, first_problem
from .settings import Settings
from .tokens import StreamError

#: The function a model picks under ``auto`` to answer in words (TGI's own name for it).
NO_TOOL = "no_tool"
MAX_TOOLS = 128
#: OpenAI's rule for a function's name.
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
#: The functions' own definitions move to the grammar's top (``ToolChoice.schema``): their references must
#: point there.
_DEFINITIONS = "#/$defs/"
_NO_TOOL_PARAMETERS = {"type": "object", "properties": {"content": {"type": "string", "description":
                       "the reply, when no function fits"}}, "required": ["content"]}


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolChoice:
    """The functions the answer may call (``NO_TOOL`` among them under ``auto``)."""

    callable: tuple[Function, ...]
    holds_text = True

    @property
    def grammar(self) -> dict[str, Any]:
        """TGI's ``json`` grammar: the answer is one of the callable functions, named by ``_name``."""
        return {"type": "json", "value": self.schema}

    @property
    def schema(self) -> dict[str, Any]:
        """The whole grammar; the functions' own ``$defs`` are moved to its top, where their ``#/$defs/...``
        references point (``tool_choice`` refused two functions defining one name differently)."""
        definitions = {name: definition for function in self.callable
                       for name, definition in function.parameters.get("$defs", {}).items()}
        return {"type": "object",
                "$functions": {function.name: _function_schema(function) for function in self.callable},
                "properties": {"function": {"anyOf": [{"$ref": f"#/$functions/{function.name}"}
                                                      for function in self.callable]}},
                "required": ["function"], **({"$defs": definitions} if definitions else {})}

    def prompt(self) -> str:
        """What is appended to the last turn: the functions, and how to answer."""
        listed = json.dumps([{"name": f.name, "description": f.description, "parameters": f.parameters}
                             for f in self.callable], ensure_ascii=False)
        words = " or name `no_tool` with your reply as `content`" if any(
            f.name == NO_TOOL for f in self.callable) else ""
        return (f"\n\nFunctions you can call:\n{listed}\nAnswer with a JSON object whose `function` names the "
                f"function in `_name` and gives its arguments{words}.")

    def settle(self, text: str, finish_reason: str | None) -> Settled:
        """The answer as a tool call, or the ``no_tool`` reply; ``invalid_json_output`` when it is neither. Cut at
        its token limit, it is no call at all: an empty answer with ``finish_reason: "length"``."""
        if finish_reason == "length":
            return Settled()
        try:
            called = json.loads(text)["function"]
            name = called.pop("_name")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return _failure("the answer is not a tool call; the container did not enforce the format")
        function = next((f for f in self.callable if f.name == name), None)
        if function is None:
            return _failure(f"the answer calls {str(name)[:64]!r}, which is not among the functions it may call")
        problem = first_problem(function.parameters, called)
        if problem is not None:
            return _failure(f"the arguments of {name!r} do not fit its parameters: {problem}")
        if name == NO_TOOL:
            return Settled(text=str(called.get("content", "")))
        arguments = json.dumps(called, ensure_ascii=False)
        return Settled(tool_calls=(ToolCall(f"call_{uuid.uuid4().hex[:24]}", name, arguments),))


def tool_choice(tools: Sequence[dict[str, Any]] | None, choice: str | dict[str, Any] | None, settings: Settings,
                *, nested: bool) -> ToolChoice | None:
    """The request's tools and choice (``nested``: chat's ``{"type": "function", "function": {...}}``; else the
    Responses API's flat ``{"type": "function", "name", ...}``); ``None`` when the answer calls nothing."""
    if len(tools or ()) > MAX_TOOLS:
        raise ApiError(400, "validation_error", f"`tools` lists {len(tools or ())}; at most {MAX_TOOLS}",
                       param="tools")
    budget = SchemaBudget()  # the functions' schemas make one grammar
    functions = tuple(_function(tool, index, nested, budget) for index, tool in enumerate(tools or ()))
    names = [function.name for function in functions]
    if len(set(names)) != len(names):
        raise ApiError(400, "validation_error", "`tools` names a function twice", param="tools")
    _check_definitions(functions)
    if not functions:
        if choice not in (None, "none", "auto"):
            raise ApiError(400, "validation_error", "`tool_choice` needs `tools`", param="tool_choice")
        return None
    if choice == "none":
        return None
    require_grammar(settings, "tools")
    if choice in (None, "auto"):
        callable_ = (*functions, Function(NO_TOOL, "reply in words", _NO_TOOL_PARAMETERS))
    elif choice == "required":
        callable_ = functions
    elif isinstance(choice, dict):
        callable_ = (_named(choice, functions, nested),)
    else:
        raise ApiError(400, "validation_error", "`tool_choice` must be \"none\", \"auto\", \"required\" or "
                       '{"type": "function", ...}', param="tool_choice")
    return ToolChoice(callable_)


def _function(tool: object, index: int, nested: bool, budget: SchemaBudget) -> Function:
    where = f"tools[{index}]"
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        shown = json.dumps(kind)[:64] if isinstance(kind, str) else "missing"
        raise ApiError(400, "unsupported_parameter", f"`{where}.type` is {shown}: this API serves function tools "
                       "only (no built-in tools)", param=f"{where}.type")
    defined = tool.get("function") if nested else tool
    if nested:
        where = f"{where}.function"
    if not isinstance(defined, dict):
        raise ApiError(400, "validation_error", f"`{where}` must be an object with `name`", param=where)
    name, description = defined.get("name"), defined.get("description") or ""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ApiError(400, "validation_error", f"`{where}.name` must be 1 to 64 letters (a-z, A-Z), digits, `_` "
                       "or `-`", param=f"{where}.name")
    if name == NO_TOOL:
        raise ApiError(400, "validation_error", f"`{where}.name` may not be {NO_TOOL!r}: the API uses that name "
                       "for an answer in words", param=f"{where}.name")
    if not isinstance(description, str):
        raise ApiError(400, "validation_error", f"`{where}.description` must be a string",
                       param=f"{where}.description")
    parameters = defined.get("parameters", {"type": "object", "properties": {}})
    _check_parameters(parameters, f"{where}.parameters", budget)
    return Function(name, description, parameters)


def _check_parameters(parameters: object, where: str, budget: SchemaBudget) -> None:
    """A function's parameters: an object schema the grammar can take, its references within its ``$defs``,
    without a property of the grammar's own ``_name``."""
    if not isinstance(parameters, dict) or parameters.get("type", "object") != "object" or not isinstance(
            parameters.get("properties", {}), dict):
        raise ApiError(400, "validation_error", f"`{where}` must be an object schema (`\"type\": \"object\"` with "
                       "`properties`)", param=where)
    if "_name" in parameters.get("properties", {}):
        raise ApiError(400, "unsupported_parameter", f"`{where}.properties._name` is the name the grammar gives the "
                       "function called: rename the parameter", param=f"{where}.properties._name")
    check_schema(parameters, where, top_level=False, budget=budget, references=_DEFINITIONS)


def _check_definitions(functions: Sequence[Function]) -> None:
    """The functions' ``$defs`` share one place in the grammar: one name, one definition."""
    seen: dict[str, object] = {}
    for index, function in enumerate(functions):
        if "definitions" in function.parameters:
            raise ApiError(400, "unsupported_parameter", f"`tools[{index}]` parameters: use `$defs` rather than "
                           "`definitions`", param="tools")
        for name, definition in function.parameters.get("$defs", {}).items():
            if seen.setdefault(name, definition) != definition:
                raise ApiError(400, "unsupported_parameter", f"two functions in `tools` define `$defs.{name[:64]}` "
                               "differently; give them distinct names", param="tools")


def _named(choice: dict[str, Any], functions: Sequence[Function], nested: bool) -> Function:
    named = choice.get("function") if nested else choice
    name = named.get("name") if isinstance(named, dict) else None
    if choice.get("type") != "function" or not isinstance(name, str):
        shape = '{"type": "function", "function": {"name": ...}}' if nested else '{"type": "function", "name": ...}'
        raise ApiError(400, "validation_error", f"`tool_choice` as an object must be {shape}", param="tool_choice")
    function = next((f for f in functions if f.name == name), None)
    if function is None:
        raise ApiError(400, "validation_error", f"`tool_choice` names {name[:64]!r}, which is not in `tools`",
                       param="tool_choice")
    return function


def _function_schema(function: Function) -> dict[str, Any]:
    parameters = function.parameters
    properties = {"_name": {"type": "string", "const": function.name}, **parameters.get("properties", {})}
    return {"type": "object", "description": function.description, "properties": properties,
            "required": ["_name", *parameters.get("required", [])], "additionalProperties": False}


@dataclass
class Conversation:
    """Earlier tool calls and their results, as a replayed conversation shows them to the model."""

    _names: dict[str, str] = field(default_factory=dict)

    def call(self, call_id: str, name: str, arguments: str, param: str) -> str:
        """An earlier call as the model wrote it; ``arguments`` must be a JSON object's text (``param``)."""
        try:
            called = json.loads(arguments)
        except (ValueError, RecursionError):
            called = None
        if not isinstance(called, dict) or "_name" in called:
            raise ApiError(400, "validation_error", f"`{param}` must be a JSON object's text, without `_name` (the "
                           "grammar's own)", param=param)
        self._names[call_id] = name
        return json.dumps({"function": {"_name": name, **called}}, ensure_ascii=False)

    def result(self, call_id: str, output: str) -> str:
        """A call's result as the next turn shows it to the model."""
        return f"The function {self._names.get(call_id, 'called')} returned: {output}"


def _failure(message: str) -> Settled:
    return Settled(failure=StreamError("invalid_json_output", message))
