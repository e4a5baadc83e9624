"""Rebuild ``infra/catalog.json`` from recorded JumpStart specs, and check its pins with the ``sagemaker`` SDK.

    python -m infra.refresh_catalog [--specs FILE] [--check]
    python -m infra.refresh_catalog --live [--region us-east-1]
    python -m infra.refresh_catalog --live --update MODEL [--to VERSION] [--region us-east-1]

Without ``--live``: the catalog from the recorded specs (``infra/jumpstart-specs.json``, and
``jumpstart-specs-pinned.json`` where a model's newest recorded spec cannot be deployed); ``--check``
exits 1 when ``catalog.json`` differs from what they give (the tests run it).

``--live`` asks JumpStart itself, through the ``sagemaker`` SDK v2 in ``.venv-sagemaker`` (``make
refresh-catalog-live`` installs it): each model's pinned version is resolved as ``JumpStartModel`` builds
it (image, model data, environment) and compared with the container the endpoint stack gives it; the
versions newer than each pin are listed, with whether the SDK resolves them. It changes nothing: exit 1
when a pin cannot be resolved or the catalog disagrees with the SDK. ``--update MODEL`` moves that one pin
(to ``--to VERSION``, default the newest version the SDK resolves), and only when the recorded form of the
new spec gives the container the SDK builds; then it rewrites the specs and the catalog.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .catalog import CATALOG_PATH, PROJECT_ENVIRONMENT, Catalog, CatalogModel
from .jumpstart_sdk import SdkError, catalog_container, differences, resolve
from .live_specs import recorded_from_live
from .spec_mapping import SpecError, catalog_from_specs, model_from_spec

DEFAULT_SPECS = Path(__file__).with_name("jumpstart-specs.json")
#: Older, complete versions for models whose newest recorded spec carries no image data.
PINNED_SPECS = Path(__file__).with_name("jumpstart-specs-pinned.json")
DEFAULT_REGION = "us-east-1"


def build_catalog(specs_path: Path, pinned_path: Path = PINNED_SPECS) -> Catalog:
    return catalog_from_specs(json.loads(specs_path.read_text()), json.loads(pinned_path.read_text()))


def render(specs_path: Path, pinned_path: Path = PINNED_SPECS) -> str:
    return json.dumps(build_catalog(specs_path, pinned_path).to_json(), indent=2, sort_keys=True) + "\n"


def write_catalog(args: argparse.Namespace) -> int:
    rendered = render(args.specs, args.pinned)
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != rendered:
            print(f"{args.output} is out of date: run python -m infra.refresh_catalog", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(rendered)
    catalog = json.loads(rendered)
    print(f"wrote {args.output}: {len(catalog['models'])} models, {len(catalog['unavailable'])} unavailable")
    for model_id, reason in catalog["unavailable"].items():
        print(f"  unavailable: {model_id}: {reason}")
    for model_id, model in catalog["models"].items():
        if model["pin_note"]:
            print(f"  {model_id}: {model['pin_note']}")
    return 0


# -- --live: JumpStart's own answer, through the SDK ------------------------------------------------------


def disagreements(model: CatalogModel, region: str, resolved: dict[str, Any]) -> list[str]:
    """Where the endpoint stack's container for ``model`` differs from the SDK's (``resolved`` is ok)."""
    if region not in model.image.regions:
        return [f"the catalog has no image for {region}"]
    found = differences(catalog_container(model, region, model.default_instance_type), resolved["container"],
                        PROJECT_ENVIRONMENT)
    if resolved["network_isolation"] != model.network_isolation:
        found.append(f"network isolation: catalog {model.network_isolation}, SDK {resolved['network_isolation']}")
    return found


def describe_unresolved(resolved: dict[str, Any]) -> str:
    described = str(resolved["error"])
    if resolved.get("framework_image"):
        ecr = resolved["hosting_ecr_specs"]
        described += (f" (its spec names the image only by framework, {ecr['framework']} "
                      f"{ecr.get('framework_version')}; the SDK's framework table gives {resolved['framework_image']}, "
                      "which JumpStartModel no longer uses, so no pin moves to it)")
    return described


def report(catalog: Catalog, region: str) -> int:
    queries = [{"model_id": model_id, "pinned": model.spec_version, "instance_type": model.default_instance_type,
                "newer": True} for model_id, model in sorted(catalog.models.items())]
    answer = resolve(region, queries)
    print(f"JumpStart's resolution by the sagemaker SDK {answer['sdk_version']} in {region} "
          f"({len(queries)} pinned models, each on its default instance type)")
    problems = []
    for model_id, model in sorted(catalog.models.items()):
        resolved = answer["models"][model_id]
        pinned = resolved["pinned"]
        found = disagreements(model, region, pinned) if pinned["ok"] else [
            f"the SDK cannot resolve it: {describe_unresolved(pinned)}"]
        verdict = "agrees with the SDK (image, model data, environment)" if not found else "DISAGREES"
        print(f"{model_id} {model.spec_version}: {verdict}")
        for line in found:
            print(f"    {line}")
        problems += [model_id] if found else []
        for newer in resolved["newer"]:
            state = "the SDK resolves it" if newer["ok"] else f"not resolvable: {describe_unresolved(newer)}"
            print(f"    newer {newer['version']}: {state}")
        if not resolved["newer"]:
            print("    no newer version")
    if problems:
        print(f"{len(problems)} pinned models disagree with JumpStart's own resolution: {', '.join(problems)}",
              file=sys.stderr)
        return 1
    print("every pin agrees with JumpStart's own resolution; nothing was changed (--update MODEL moves a pin)")
    return 0


def update(catalog: Catalog, model_id: str, target: str | None, region: str, specs_path: Path,
           pinned_path: Path) -> int:
    model = catalog.get(model_id)
    query = {"model_id": model_id, "pinned": model.spec_version, "instance_type": model.default_instance_type,
             "newer": True}
    if target is None:
        resolvable = [newer["version"] for newer in resolve(region, [query])["models"][model_id]["newer"]
                      if newer["ok"]]
        if not resolvable:
            print(f"{model_id}: no version newer than {model.spec_version} that the SDK resolves; pin unchanged")
            return 0
        target = resolvable[0]
    resolved = resolve(region, [{**query, "pinned": target, "newer": False, "raw_spec_of": target}])
    answer = resolved["models"][model_id]
    if not answer["pinned"]["ok"]:
        print(f"{model_id} {target}: the SDK cannot resolve it: {describe_unresolved(answer['pinned'])}; "
              "pin unchanged", file=sys.stderr)
        return 1
    recorded = recorded_from_live(answer["raw_spec"])
    try:
        candidate = model_from_spec(recorded)
    except SpecError as exc:
        print(f"{model_id} {target}: the catalog cannot deploy its spec: {exc}; pin unchanged", file=sys.stderr)
        return 1
    found = disagreements(candidate, region, answer["pinned"])
    if found:
        print(f"{model_id} {target}: its recorded form would deploy another container than the SDK builds; pin "
              "unchanged:\n    " + "\n    ".join(found), file=sys.stderr)
        return 1
    for path, keep in ((specs_path, True), (pinned_path, False)):
        specs = json.loads(path.read_text())
        specs["models"].pop(model_id, None)
        if keep:
            specs["models"][model_id] = recorded
            specs["models"] = dict(sorted(specs["models"].items()))
        path.write_text(json.dumps(specs, indent=1, ensure_ascii=False) + "\n")
    print(f"{model_id}: pin moved from {model.spec_version} to {target} (the SDK's container and the catalog's "
          f"agree in {region}); {specs_path.name} updated")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.refresh_catalog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", type=Path, default=DEFAULT_SPECS)
    parser.add_argument("--pinned", type=Path, default=PINNED_SPECS)
    parser.add_argument("--output", type=Path, default=CATALOG_PATH)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--live", action="store_true", help="resolve the pins with the sagemaker SDK; report")
    parser.add_argument("--update", metavar="MODEL", help="with --live: move this model's pin")
    parser.add_argument("--to", metavar="VERSION", help="with --update: the version (default: the newest the SDK "
                                                        "resolves)")
    parser.add_argument("--region", default=DEFAULT_REGION, help="where JumpStart is asked (default: %(default)s)")
    args = parser.parse_args(argv)
    if (args.update or args.to) and not args.live:
        parser.error("--update and --to need --live")
    if args.to and not args.update:
        parser.error("--to needs --update MODEL")
    if not args.live:
        return write_catalog(args)
    catalog = build_catalog(args.specs, args.pinned)
    if args.update and args.update not in catalog.models:
        parser.error(f"--update {args.update!r} is not in the catalog; allowed: {', '.join(sorted(catalog.models))}")
    try:
        if not args.update:
            return report(catalog, args.region)
        status = update(catalog, args.update, args.to, args.region, args.specs, args.pinned)
    except SdkError as exc:
        print(f"refresh_catalog: {exc}", file=sys.stderr)
        return 1
    return status or write_catalog(args)


if __name__ == "__main__":
    sys.exit(main())
