"""The model containers the function speaks to: what differs between them, one module per family.

A family (TGI, DJL/LMI) owns everything that differs between serving containers: the ``parameters`` a
caller may send (its request model), the body sent upstream, the stream it is asked for (``Accept``;
the token iterator reads every dialect, ``tokens.py``), how a stop sequence shows in its answer, the
environment the catalog gives it, where a JumpStart spec keeps its token limits, and what each pinned
version can do (:class:`CapabilityRule`, recorded in the catalog with the source of each). The
emulator's container behaviour lives beside it in ``sagemaker_emulator/`` (the emulator stands for AWS
and imports nothing of the function).

Adding a family is one module here that defines ``FAMILY`` and its name in :data:`REGISTERED`
(``docs/extending.md`` lists the rest). Only the names are read on the way to ready; a family's module,
which builds its pydantic model, is imported when first asked for (:func:`family`: the preload does it).
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from pydantic import BaseModel

#: The registered families; each is the module ``llm_stream.families.<name>``, which defines ``FAMILY``.
REGISTERED: Final = ("tgi", "lmi")

#: What a container version may or may not do, as the catalog records it and later features read it.
CAPABILITIES: Final = ("grammar", "tools", "logprobs", "top_logprobs", "prompt_tokens")


@dataclass(frozen=True)
class CapabilityRule:
    capability: str
    #: The first version that has it; ``None``: no version of the family has it.
    since: str | None
    #: Where this was read (a release, a source file, a note in the reference's NOTES.md).
    source: str


@dataclass(frozen=True)
class ContainerFamily:
    name: str
    #: The stream's media type, sent as ``Accept`` (SageMaker passes it on to the container).
    accept: str
    #: The ``parameters`` key that holds stop sequences.
    stop_parameter: str
    #: Finish reasons that may mean a stop sequence ended the answer (then a trailing stop is trimmed).
    stop_finish_reasons: frozenset[str]
    #: Whether ``return_full_text: false`` must be sent (TGI's default is true; LMI's is false).
    send_return_full_text: bool
    #: The ``parameters`` a caller may send in the container's own payload.
    parameters_model: type[BaseModel]
    #: The image repository JumpStart names for it (how a spec's image says which family it is).
    image_repository: str
    #: A regular expression whose one group is the container's version in an image tag.
    version_pattern: str
    #: What each version can do; every capability in :data:`CAPABILITIES` has one rule.
    capability_rules: tuple[CapabilityRule, ...]
    #: The versions whose capabilities were checked against the rules' sources: the catalog refuses others.
    checked_versions: frozenset[str]
    #: The spec environment keys that hold the input and total token limits; ``None``: specs carry none
    #: (the catalog's own table has them, ``infra/spec_mapping.py``).
    spec_token_limits: tuple[str, str] | None = None
    #: Spec environment keys the container cannot start without.
    required_spec_environment: tuple[str, ...] = ()
    #: The variable that tells the container its token window, where the project sets it; ``None``: the
    #: spec's own limits apply and cannot be changed by a setting.
    window_variable: str | None = None
    #: Text an image tag must hold to be this family's server (a repository may also hold other servers).
    serving_tag_marker: str = ""
    #: The variable that tells the container over how many GPUs to shard the model (an inference component's
    #: copy sees only the GPUs it asked for).
    gpus_variable: str = ""

    def __post_init__(self) -> None:
        if sorted(rule.capability for rule in self.capability_rules) != sorted(CAPABILITIES):
            raise ValueError(f"family {self.name}: one rule for each of {', '.join(CAPABILITIES)}")

    def upstream_body(self, prompt: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """The streamed generate request the container takes."""
        return {"inputs": prompt, "parameters": parameters, "stream": True}

    def window_environment(self, max_total_tokens: int) -> dict[str, str]:
        """The environment that tells the container the window the function assumes."""
        return {self.window_variable: str(max_total_tokens)} if self.window_variable else {}

    def serves(self, image_tag: str) -> bool:
        return self.serving_tag_marker in image_tag

    def version(self, image_tag: str) -> str | None:
        match = re.search(self.version_pattern, image_tag)
        return match.group(1) if match else None

    def capabilities(self, image_tag: str) -> dict[str, dict[str, Any]]:
        """What the container with this tag can do: ``{capability: {"supported", "source"}}``. A version
        nobody has checked is refused, so a catalog refresh that brings a new one asks for a look."""
        version = self.version(image_tag)
        if version not in self.checked_versions:
            raise ValueError(f"{self.name} image {image_tag}: version {version} has no checked capabilities "
                             f"(checked: {', '.join(sorted(self.checked_versions))}); check the rules' sources "
                             f"in llm_stream/families/{self.name}.py and add it")
        return {rule.capability: {"supported": rule.since is not None and _at_least(version, rule.since),
                                  "source": rule.source}
                for rule in self.capability_rules}


def _at_least(version: str, since: str) -> bool:
    return tuple(int(part) for part in version.split(".")) >= tuple(int(part) for part in since.split("."))


@functools.cache
def family(name: str) -> ContainerFamily:
    """The registered family of that name (its module imported on first use; every request asks for it)."""
    if name not in REGISTERED:
        raise KeyError(f"unknown container family {name!r}; registered: {', '.join(REGISTERED)}")
    defined = importlib.import_module(f"{__name__}.{name}").FAMILY
    if not isinstance(defined, ContainerFamily) or defined.name != name:
        raise TypeError(f"llm_stream.families.{name}.FAMILY must be the ContainerFamily named {name!r}")
    return defined


def all_families() -> list[ContainerFamily]:
    return [family(name) for name in REGISTERED]
