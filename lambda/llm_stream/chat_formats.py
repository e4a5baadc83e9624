"""How a conversation becomes one prompt, per model family, so chat never depends on the container.

TGI's Messages API works only when the model's tokenizer files ship a chat template, which is not
established for the JumpStart artifacts; the function renders every conversation itself and sends a
plain ``inputs`` prompt. Each format names its source.

A message cannot forge turns: inside a message's text, the format's control tokens (which the model's
tokenizer reads as special tokens, such as ``</s>``), its newline symbol where it has one (``<NL>``),
and its role labels at the start of a line (``User:``) are broken by a zero-width space
(:data:`MARKER_BREAK`), so the model reads them as text, not as the end of a turn or the start of
another. The text is otherwise sent as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
#: Inserted into a marker found in a message (U+200B ZERO WIDTH SPACE: invisible, and no tokenizer's marker).
MARKER_BREAK = "\u200b"


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str


class ConversationError(ValueError):
    """The conversation cannot be written in this format (the message says why, for the caller)."""


@dataclass(frozen=True)
class ChatFormat:
    name: str
    #: Prefix of each role's turn; ``None``: the format has no such turn (see ``system_as``).
    prefixes: dict[Role, str | None]
    #: Where system text goes when the format has no system turn: ``"plain"`` (its own unprefixed
    #: paragraph first) or ``"user"`` (a user turn).
    system_as: Literal["plain", "user"]
    #: Between turns, and what newlines inside a turn become (a tokenizer that has no newline).
    separator: str
    newline: str
    #: What ends the prompt, so the model answers as the assistant.
    generation_prompt: str
    #: Where the model's answer ends: the next user turn it would otherwise invent.
    stop: tuple[str, ...]
    source: str
    #: What ends each role's turn, where something does.
    suffixes: Mapping[Role, str] = field(default_factory=dict)
    #: User and assistant turns must alternate, starting and ending with the user (Mistral's template
    #: refuses anything else): consecutive turns of one role are joined by a blank line, and system
    #: text opens the first user turn.
    alternating: bool = False
    #: Strings the tokenizer reads as special tokens (a turn's end, the sequence's end).
    control_tokens: tuple[str, ...] = ()

    def render(self, turns: Sequence[Turn]) -> str:
        """The prompt; raises :class:`ConversationError` when the turns do not fit the format."""
        parts: list[str] = []
        for turn in _alternating(turns) if self.alternating else turns:
            text = self.as_text(turn.content).replace("\n", self.newline)
            prefix = self.prefixes[turn.role]
            if prefix is None:  # a system turn in a format without one
                prefix = "" if self.system_as == "plain" else self.prefixes["user"]
            parts.append(f"{prefix}{text}{self.suffixes.get(turn.role, '')}")
        return self.separator.join([*parts, self.generation_prompt])

    def as_text(self, content: str) -> str:
        """``content`` with every marker of this format broken, so that it reads as text only."""
        markers = (*self.control_tokens, *((self.newline,) if self.newline != "\n" else ()))
        for marker in markers:
            content = content.replace(marker, marker[0] + MARKER_BREAK + marker[1:])
        labels = self._labels()
        # Every line break a tokenizer or a reader may take as one (\r, U+2028, U+0085, ...), not only \n.
        return "".join(MARKER_BREAK + line if line.lstrip().startswith(labels) else line
                       for line in content.splitlines(keepends=True))

    def _labels(self) -> tuple[str, ...]:
        """The role labels that open a turn (``User:``), as they would start a line."""
        return tuple({prefix.strip() for prefix in self.prefixes.values() if prefix and prefix.strip()}
                     | {self.generation_prompt.strip()} - {""})


def _alternating(turns: Sequence[Turn]) -> list[Turn]:
    system = "\n\n".join(turn.content for turn in turns if turn.role == "system")
    merged: list[Turn] = []
    for turn in turns:
        if turn.role == "system":
            continue
        if merged and merged[-1].role == turn.role:
            merged[-1] = Turn(turn.role, f"{merged[-1].content}\n\n{turn.content}")
        else:
            merged.append(turn)
    if not merged or merged[0].role != "user":
        raise ConversationError("this model's chat format needs the conversation to start with a user message "
                                "(after any system messages)")
    if merged[-1].role != "user":
        raise ConversationError("this model's chat format needs the conversation to end with a user message")
    if system:
        merged[0] = Turn("user", f"{system}\n\n{merged[0].content}")
    return merged


_FALCON_SOURCE = ("Falcon 7B/40B Instruct: TII's answer in tiiuae/falcon-7b-instruct discussion #1; vLLM's "
                  "examples/template_falcon.jinja (which drops system messages: here they lead, unprefixed)")
_FALCON_180B_SOURCE = "Falcon 180B Chat: vLLM's examples/template_falcon_180b.jinja, from TII's demo"
_RINNA_SOURCE = ("rinna/japanese-gpt-neox-3.6b-instruction-ppo model card, I/O Format: ユーザー/システム "
                 "utterances joined by <NL>, newlines written <NL>, the prompt ends with 'システム: '")
_MISTRAL_SOURCE = ("Mistral 7B Instruct: mistralai/Mistral-7B-Instruct-v0.2 tokenizer_config.json chat_template "
                   "('[INST] ' user ' [/INST]', the answer then eos '</s>'; roles must alternate user/assistant, and "
                   "that template refuses a system role); a system message and a blank line opening the first user "
                   "message is Mistral's documented convention (mistralai/cookbook, chat templates); the tokenizer "
                   "adds the BOS and reads '</s>' as the EOS token")
_RINNA_BILINGUAL_SOURCE = ("rinna/bilingual-gpt-neox-4b-instruction-ppo model card, I/O Format: the same speakers "
                           "and ending, utterances separated by a plain newline (its tokenizer has one: no <NL>)")

#: Falcon's tokenizer: its end-of-text token (tiiuae/falcon-7b-instruct tokenizer.json, special tokens).
_FALCON_CONTROL = ("<|endoftext|>",)
#: SentencePiece tokenizers (Mistral's, rinna's): the sequence's start and end tokens.
_SENTENCEPIECE_CONTROL = ("<s>", "</s>")

#: name, (system, user, assistant prefixes), system_as, separator and newline, generation prompt, stop, source
FORMATS: dict[str, ChatFormat] = {format_.name: format_ for format_ in (
    ChatFormat("falcon-instruct", {"system": None, "user": "User: ", "assistant": "Assistant: "}, "plain",
               "\n", "\n", "Assistant:", ("\nUser:",), _FALCON_SOURCE, control_tokens=_FALCON_CONTROL),
    ChatFormat("falcon-180b-chat", {"system": "System: ", "user": "User: ", "assistant": "Falcon: "}, "plain",
               "\n", "\n", "Falcon:", ("\nUser:",), _FALCON_180B_SOURCE, control_tokens=_FALCON_CONTROL),
    ChatFormat("rinna-instruction", {"system": None, "user": "ユーザー: ", "assistant": "システム: "}, "user",
               "<NL>", "<NL>", "システム: ", ("<NL>ユーザー:",), _RINNA_SOURCE, control_tokens=_SENTENCEPIECE_CONTROL),
    ChatFormat("rinna-bilingual-instruction", {"system": None, "user": "ユーザー: ", "assistant": "システム: "},
               "user", "\n", "\n", "システム: ", ("\nユーザー:",), _RINNA_BILINGUAL_SOURCE,
               control_tokens=_SENTENCEPIECE_CONTROL),
    # The model ends its answer with its EOS token: no stop sequence is needed.
    ChatFormat("mistral-instruct", {"system": None, "user": "[INST] ", "assistant": ""}, "user", "", "\n", "", (),
               _MISTRAL_SOURCE, suffixes={"user": " [/INST]", "assistant": "</s>"}, alternating=True,
               control_tokens=(*_SENTENCEPIECE_CONTROL, "[INST]", "[/INST]")),
)}


class NewlineRestorer:
    """Turns a format's newline symbol back into newlines in streamed text, whose tokens may split it."""

    def __init__(self, symbol: str) -> None:
        self._symbol = symbol
        self._held = ""

    def feed(self, text: str) -> str:
        symbol = self._symbol
        if symbol == "\n":
            return text
        text = (self._held + text).replace(symbol, "\n")
        # Hold back a tail that could be the start of the symbol, until the next token says.
        keep = next((n for n in range(min(len(symbol) - 1, len(text)), 0, -1) if symbol.startswith(text[-n:])), 0)
        self._held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep] if keep else text

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
