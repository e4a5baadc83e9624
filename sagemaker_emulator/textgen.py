"""Deterministic, readable "generation" without model weights.

The same prompt (and seed) always gives the same answer. Answers are built
from a small corpus in the prompt's language and cut into pieces the way a
byte-level BPE tokenizer cuts text: words with their leading space, one or two
CJK characters, and emoji announced by an empty-text token (a partial UTF-8
byte sequence, as TGI sends it).
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

VOCAB_SIZE = 65024  # Falcon's


@dataclass(frozen=True)
class Token:
    id: int
    text: str
    special: bool = False
    logprob: float = -0.1


EOS = Token(id=11, text="<|endoftext|>", special=True, logprob=-0.01)

_CHINESE = (
    "建立网站可以是一个复杂的过程,但一般涉及以下步骤:",
    "1. 确定您网站的目的和目标。",
    "2. 选择域名和托管服务提供商。",
    "3. 使用HTML、CSS和JavaScript设计和开发您的网站。",
    "4. 向网站添加内容并针对搜索引擎进行优化。",
    "5. 测试和排错,以确保您的网站正常工作。",
    "6. 定期维护和更新网站,以保持其顺利运行。",
    "在线有许多资源可以引导您完成这些步骤,包括教程和模板。",
    "如果对其中任何一步不确定,寻求网页开发者或设计师的建议也会很有帮助。🚀",
)
_ENGLISH = (
    "Here is a short answer to your question.",
    "Start by stating the goal you want to reach and the constraints you have.",
    "Break the work into small steps, and finish each one before starting the next.",
    "Measure the result of every step, so that you know whether it helped.",
    "Write down what you learn; it saves time the next time the problem comes up.",
    "Ask someone with experience to review your plan before you commit to it.",
    "Keep the first version simple, then improve it where the numbers say it matters.",
    "Automate the steps you repeat, and test them as carefully as the rest.",
    "Good luck, and enjoy the process! 🚀",
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_PIECES = re.compile(r" ?[A-Za-z']{1,7}| ?\d{1,3}|[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]{1,2}|\s+|.", re.S)


def split_pieces(text: str) -> list[str]:
    """Cut text into token-sized pieces; ``"".join(split_pieces(t)) == t``."""
    return _PIECES.findall(text)


def count_tokens(text: str) -> int:
    return len(split_pieces(text))


def _token_id(text: str) -> int:
    return 100 + zlib.crc32(text.encode("utf-8")) % (VOCAB_SIZE - 100)


def _answer_text(prompt: str, seed: int | None) -> str:
    rng = random.Random(zlib.crc32(prompt.encode("utf-8")) if seed is None else seed)  # noqa: S311 (not a secret)
    if _CJK.search(prompt):
        # Keep the numbered steps in order: pick a contiguous, readable run.
        return "".join(_CHINESE[: rng.randint(6, len(_CHINESE))])
    first, rest = _ENGLISH[0], list(_ENGLISH[1:-1])
    rng.shuffle(rest)
    return " ".join([first, *rest[: rng.randint(3, len(rest))], _ENGLISH[-1]])


def answer_tokens(prompt: str, seed: int | None = None) -> Iterator[Token]:
    """The answer's tokens, ending with :data:`EOS`."""
    return text_tokens(_answer_text(prompt, seed))


def text_tokens(text: str) -> Iterator[Token]:
    """``text`` as generated tokens, ending with :data:`EOS`."""
    for piece in split_pieces(text):
        token_id = _token_id(piece)
        if len(piece) == 1 and ord(piece) > 0xFFFF:
            # A 4-byte character spans two byte-level tokens; the first decodes to nothing yet.
            yield Token(id=token_id - 1, text="", logprob=-0.5)
        yield Token(id=token_id, text=piece, logprob=-round(0.05 + (token_id % 40) / 100, 2))
    yield EOS
