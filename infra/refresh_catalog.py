"""Rebuild ``infra/catalog.json`` from JumpStart spec data.

    python -m infra.refresh_catalog [--specs FILE] [--check]
    python -m infra.refresh_catalog --live [--region us-east-1]

``--specs`` reads spec data in the recorded format (default: ``infra/jumpstart-specs.json``,
the latest specs of the blog's models). ``--live`` first fetches the newest specs from the
public JumpStart bucket (manifest + spec files; no credentials, no SDK) into that file, so the
catalog and the specs it came from are committed together. ``--check`` exits 1 when
``catalog.json`` differs from what the specs give (tests run it, so the two never drift apart).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .catalog import CATALOG_PATH
from .live_specs import fetch_recorded_specs
from .spec_mapping import BLOG_MODELS, catalog_from_specs

DEFAULT_SPECS = Path(__file__).with_name("jumpstart-specs.json")
#: Older, complete versions for models whose newest recorded spec carries no image data.
PINNED_SPECS = Path(__file__).with_name("jumpstart-specs-pinned.json")


def render(specs_path: Path) -> str:
    catalog = catalog_from_specs(json.loads(specs_path.read_text()), json.loads(PINNED_SPECS.read_text()))
    return json.dumps(catalog.to_json(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.refresh_catalog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--specs", type=Path, default=DEFAULT_SPECS)
    parser.add_argument("--output", type=Path, default=CATALOG_PATH)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--live", action="store_true", help="fetch the newest specs into --specs first")
    parser.add_argument("--region", default="us-east-1", help="bucket region for --live")
    parser.add_argument("--base-url", help="bucket URL for --live (default: the region's JumpStart bucket)")
    args = parser.parse_args(argv)
    if args.live:
        specs = fetch_recorded_specs(BLOG_MODELS, region=args.region, base_url=args.base_url)
        args.specs.write_text(json.dumps(specs, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {args.specs}: {len(specs['models'])} specs from {specs['_source']}")
    rendered = render(args.specs)
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


if __name__ == "__main__":
    sys.exit(main())
