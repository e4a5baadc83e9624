"""Which instance types can host a set of models on one endpoint, and how many instances they fill.

    python -m infra.packing huggingface-llm-falcon-7b-instruct-bf16,huggingface-llm-mistral-7b-instruct

For each instance type every listed model supports: the GPUs one copy of each model holds there, and the
instances one copy of every model fills (every model awake). At zero (every model scaled to zero) the
endpoint runs none. The figures are the stack's own (``hosted_models.py``), so they are what ``-c models=...``
deploys; prices are not in the catalog (docs/deploying.md has a table, and the AWS price list the rest).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from .catalog import load_catalog
from .hosted_models import ModelsError, hosted_on, instances_for, parse_models, shared_instance_types
from .instance_types import INSTANCE_HARDWARE


@dataclass(frozen=True)
class Packing:
    instance_type: str
    instance_gpus: int
    #: Model id -> GPUs one copy holds.
    gpus_per_copy: dict[str, int]
    #: Instances one copy of every model fills.
    instances_awake: int


def packings(model_ids: str) -> list[Packing]:
    """Every type the listed models share, fewest instances awake first; raises :class:`ModelsError`."""
    parsed = parse_models(model_ids, load_catalog(), default_scale_to_zero=False)
    result = []
    for instance_type in shared_instance_types([model for model, *_ in parsed]):
        try:
            hosted = hosted_on(parsed, instance_type)
        except ModelsError:  # a copy larger than the instance
            continue
        result.append(Packing(instance_type, INSTANCE_HARDWARE[instance_type].gpus,
                              {h.model.model_id: h.gpus_per_copy for h in hosted},
                              instances_for(hosted, instance_type, lambda hosted_model: 1)))
    return sorted(result, key=lambda packing: (packing.instances_awake, packing.instance_gpus))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.packing", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", help="two or more catalog model ids, separated by commas")
    args = parser.parse_args(argv)
    try:
        found = packings(args.models)
    except ModelsError as exc:
        print(f"models: {exc}", file=sys.stderr)
        return 2
    if not found:
        print("no instance type supports every listed model: they need endpoints of their own", file=sys.stderr)
        return 1
    print(f"{'instance type':<18} {'GPUs':>4}  {'GPUs a copy':<24} instances awake (at zero: 0)")
    for packing in found:
        copies = ", ".join(str(gpus) for gpus in packing.gpus_per_copy.values())
        print(f"{packing.instance_type:<18} {packing.instance_gpus:>4}  {copies:<24} {packing.instances_awake}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
