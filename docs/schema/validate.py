#!/usr/bin/env python3
"""Validate pacc's JSON outputs against docs/schema/ with the independent validator
`jsonschema` (draft 2020-12).

    python3 docs/schema/validate.py DIR

DIR holds files named SCHEMA__CASE.json (e.g. discover__tampered.json); each is validated
against docs/schema/SCHEMA.schema.json. Exits 1 listing every failure.
"""

import json
import pathlib
import sys

import jsonschema
from referencing import Registry, Resource

HERE = pathlib.Path(__file__).resolve().parent


def registry():
    resources = []
    for f in sorted(HERE.glob("*.schema.json")):
        schema = json.loads(f.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def main(directory):
    reg = registry()
    failures = []
    files = sorted(pathlib.Path(directory).glob("*__*.json"))
    if not files:
        sys.exit(f"no SCHEMA__CASE.json files in {directory}")
    for f in files:
        name = f.name.split("__", 1)[0]
        schema_file = HERE / f"{name}.schema.json"
        if not schema_file.exists():
            failures.append(f"{f.name}: no schema {schema_file.name}")
            continue
        schema = json.loads(schema_file.read_text())
        validator = jsonschema.Draft202012Validator(schema, registry=reg)
        errors = sorted(validator.iter_errors(json.loads(f.read_text())), key=lambda e: list(e.path))
        for e in errors:
            failures.append(f"{f.name}: {'/'.join(str(p) for p in e.path) or '(top)'}: {e.message}")
        print(f"{'ok  ' if not errors else 'FAIL'} {f.name}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print(f"{len(files)} outputs valid")


if __name__ == "__main__":
    main(sys.argv[1])
