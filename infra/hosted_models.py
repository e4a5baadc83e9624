"""Several models on one endpoint (context ``models``): which models, how many copies of each, what one copy
needs of the endpoint's instance type, and how many instances the copies fill.

Each listed model becomes an inference component on the same endpoint, so every model must support the one
instance type. A copy asks for the GPUs the model shards over on that type (:func:`gpus_per_copy`) and a
proportional share of the instance's vCPUs and memory (``instance_types.copy_requirements``); SageMaker places
copies on instances with that much free, and managed instance scaling adds or removes instances as copies come
and go. How SageMaker places copies is its own; :func:`instances_for` counts the instances a first-fit-decreasing
packing needs, the fewest possible for the copy sizes the catalog has (1, 4 and 8 GPUs, each dividing the next;
a first real deployment confirms SageMaker's own placement).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .catalog import Catalog, CatalogError, CatalogModel
from .instance_types import INSTANCE_HARDWARE

#: Copies of one model (each a whole model on its GPUs); the same bound as ``max_instances``.
MAX_COPIES = 20
#: The catalog's ten models: more is a list with a model twice.
MAX_MODELS = 10
ENTRY_KEYS = ("id", "min_copies", "max_copies", "scale_to_zero")


class ModelsError(ValueError):
    """A ``models`` entry is not allowed; the message names it and what is allowed."""


@dataclass(frozen=True)
class HostedModel:
    """One listed model as its inference component runs it."""

    model: CatalogModel
    min_copies: int
    max_copies: int
    #: Its copies go to zero when idle and come back on the first request (``scale_to_zero.py``).
    scale_to_zero: bool
    #: GPUs one copy shards the model over on the deployment's instance type.
    gpus_per_copy: int

    @property
    def initial_copies(self) -> int:
        """Copies at deploy time: a model that scales to zero still loads once, so a broken container fails the
        deployment instead of the first request."""
        return max(self.min_copies, 1)

    @property
    def tracks_load(self) -> bool:
        """Copies beyond the first follow the load."""
        return self.max_copies > self.initial_copies

    def environment_for(self, instance_type: str) -> dict[str, str]:
        """The container's environment: its spec's, with the GPU count the copy asks for (a copy sees only its
        own GPUs; LMI's default would be all it sees, TGI's spec value may name the whole instance's)."""
        variable = self.model.family.gpus_variable
        return {**self.model.environment_for(instance_type), variable: str(self.gpus_per_copy)}


def gpus_per_copy(model: CatalogModel, instance_type: str) -> int:
    """The GPUs the model's spec shards it over on this type; where the spec leaves it to the container (LMI:
    every GPU), one when the model is also listed for a one-GPU type whose GPU has no more memory than this
    type's (it fits on one), else every GPU of the instance."""
    hardware = INSTANCE_HARDWARE[instance_type]
    named = model.environment_for(instance_type).get(model.family.gpus_variable, "")
    if named:
        if not named.isdigit() or int(named) < 1:
            raise ModelsError(f"{model.model_id}'s spec sets {model.family.gpus_variable}={named!r} on "
                              f"{instance_type}; allowed: a whole number of GPUs, 1 or more")
        return int(named)
    if any(other in INSTANCE_HARDWARE and INSTANCE_HARDWARE[other].gpus == 1
           and INSTANCE_HARDWARE[other].gpu_memory_gib <= hardware.gpu_memory_gib for other in model.instance_types):
        return 1
    return hardware.gpus


def instances_for(hosted: tuple[HostedModel, ...], instance_type: str,
                  copies: Callable[[HostedModel], int]) -> int:
    """Instances that hold ``copies(model)`` copies of every model, none split: first fit, largest first."""
    capacity = INSTANCE_HARDWARE[instance_type].gpus
    free: list[int] = []
    for size in sorted((h.gpus_per_copy for h in hosted for _ in range(copies(h))), reverse=True):
        spot = next((index for index, room in enumerate(free) if room >= size), None)
        if spot is None:
            free.append(capacity - size)
        else:
            free[spot] -= size
    return len(free)


#: A listed model: (model, min copies, max copies, scales to zero).
Listed = tuple[CatalogModel, int, int, bool]


def parse_models(value: Any, catalog: Catalog, default_scale_to_zero: bool) -> tuple[Listed, ...]:
    """``models`` as cdk.json (a list of ids or ``{"id", "min_copies", "max_copies", "scale_to_zero"}``
    objects) or the command line (``a,b``, or that JSON list) gives it: (model, min, max copies, scale to zero)
    per entry, the default model first. An empty value lists nothing (one model: context ``model``)."""
    entries = _entries(value)
    if not entries:
        return ()
    if len(entries) == 1:
        raise ModelsError(f"{_shown(value)} lists one model; allowed: two to {MAX_MODELS} (one model: context "
                          "'model', with scale_to_zero for an inference component)")
    if len(entries) > MAX_MODELS:
        raise ModelsError(f"{len(entries)} models; allowed: two to {MAX_MODELS}")
    parsed = tuple(_entry(entry, index, catalog, default_scale_to_zero) for index, entry in enumerate(entries))
    ids = [model.model_id for model, *_ in parsed]
    repeated = sorted({model_id for model_id in ids if ids.count(model_id) > 1})
    if repeated:
        raise ModelsError(f"{', '.join(repeated)} listed more than once; allowed: each model once")
    return parsed


def _entries(value: Any) -> list[Any]:
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ModelsError(f"{text!r} is not a JSON list ({exc.msg}); allowed: ids separated by commas, "
                                  "or a JSON list") from None
        else:
            return [part.strip() for part in text.split(",")]
    if not isinstance(value, list):
        raise ModelsError(f"{_shown(value)} is not a list; allowed: a list of model ids or objects, or ids "
                          "separated by commas")
    return value


def _entry(entry: Any, index: int, catalog: Catalog,
           default_scale_to_zero: bool) -> Listed:
    where = f"entry {index}"
    if isinstance(entry, str):
        entry = {"id": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or set(entry) - set(ENTRY_KEYS):
        raise ModelsError(f"{where} ({_shown(entry)}) is not allowed; allowed: a model id, or an object with "
                          f"\"id\" and optionally {', '.join(ENTRY_KEYS[1:])}")
    try:
        model = catalog.get(entry["id"].strip())
    except CatalogError as exc:
        raise ModelsError(f"{where}: {exc}") from None
    where = f"{where} ({model.model_id})"
    scale_to_zero = _flag(entry.get("scale_to_zero"), f"{where}: scale_to_zero", default_scale_to_zero)
    min_copies = _copies(entry.get("min_copies"), f"{where}: min_copies", 0 if scale_to_zero else 1)
    fewest_max = max(min_copies, 1)
    max_copies = _copies(entry.get("max_copies"), f"{where}: max_copies", fewest_max)
    if scale_to_zero and min_copies:
        raise ModelsError(f"{where}: min_copies {min_copies} does not apply with scale_to_zero (its copies go to "
                          "zero when idle); allowed: 0")
    if not scale_to_zero and not min_copies:
        raise ModelsError(f"{where}: min_copies 0 needs scale_to_zero (else nothing brings a copy back); allowed: "
                          f"1..{MAX_COPIES}, or scale_to_zero true")
    if max_copies < fewest_max:
        raise ModelsError(f"{where}: max_copies {max_copies} is below {fewest_max}; allowed: "
                          f"{fewest_max}..{MAX_COPIES}")
    return model, min_copies, max_copies, scale_to_zero


def hosted_on(parsed: tuple[Listed, ...], instance_type: str) -> tuple[HostedModel, ...]:
    """The models on ``instance_type``, each refused by name when the type is not among its supported ones or
    cannot hold one copy."""
    hosted = []
    for model, min_copies, max_copies, scale_to_zero in parsed:
        if instance_type not in model.instance_types:
            common = shared_instance_types([listed for listed, *_ in parsed])
            raise ModelsError(f"instance type {instance_type!r} is not supported by {model.model_id}; allowed for "
                              f"every listed model: {', '.join(common) or 'none (no type serves them all)'}")
        gpus = gpus_per_copy(model, instance_type)
        if gpus > INSTANCE_HARDWARE[instance_type].gpus:
            raise ModelsError(f"{model.model_id} needs {gpus} GPUs a copy; {instance_type} has "
                              f"{INSTANCE_HARDWARE[instance_type].gpus}")
        hosted.append(HostedModel(model, min_copies, max_copies, scale_to_zero, gpus))
    return tuple(hosted)


def default_instance_type(parsed: tuple[Listed, ...]) -> str:
    """The first type every listed model supports, in the default model's order with its default first (that
    default when there is none: :func:`hosted_on` then names the types they share, none)."""
    first = parsed[0][0]
    shared = shared_instance_types([model for model, *_ in parsed])
    return first.default_instance_type if first.default_instance_type in shared or not shared else shared[0]


def shared_instance_types(models: list[CatalogModel]) -> list[str]:
    """The instance types every one of ``models`` supports, in the first one's order."""
    return [t for t in models[0].instance_types if all(t in model.instance_types for model in models)]


def _copies(value: Any, where: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COPIES:
        raise ModelsError(f"{where}: {value!r} is not allowed; allowed: a whole number 0..{MAX_COPIES}")
    return value


def _flag(value: Any, where: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ModelsError(f"{where}: {value!r} is not allowed; allowed: true, false")
    return value


def _shown(value: Any) -> str:
    return repr(value) if len(repr(value)) <= 120 else f"{repr(value)[:117]}..."

