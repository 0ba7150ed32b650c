#!/usr/bin/env python3
"""Validates Kubernetes objects against the kept schemas (kinds/, definitions.json; see README.md).

    validate.py FILE...   each FILE holds one object, a List (its items are checked), or a JSON array of those

Every object is checked against the schema of its apiVersion and kind (x-kubernetes-group-version-kind):
required fields, types, enums, and no fields the schema does not name (strict). Prints one line per
violation ("Kind namespace/name: path: message") and "N objects valid"; exits 1 on any violation or on an
object whose kind has no kept schema.
"""
import json
import os
import sys

from jsonschema import Draft202012Validator, FormatChecker

HERE = os.path.dirname(os.path.abspath(__file__))


def validator_factory(defs):
    """A validator maker that resolves the kinds' "/api/_definitions.json#..." refs to the kept definitions:
    with `referencing` (jsonschema >= 4.18), else with RefResolver (Debian 12's python3-jsonschema 4.10)."""
    try:
        from referencing import Registry, Resource

        registry = Registry().with_resource(defs["$id"], Resource.from_contents(defs))
        return lambda schema: Draft202012Validator(schema, registry=registry, format_checker=FormatChecker())
    except ImportError:
        from jsonschema import RefResolver

        store = {defs["$id"]: defs}
        return lambda schema: Draft202012Validator(
            schema,
            resolver=RefResolver(base_uri=schema.get("$id", defs["$id"]), referrer=schema, store=store),
            format_checker=FormatChecker(),
        )


def load():
    with open(os.path.join(HERE, "definitions.json")) as f:
        defs = json.load(f)
    registry = validator_factory(defs)
    kinds = {}
    for name in sorted(os.listdir(os.path.join(HERE, "kinds"))):
        with open(os.path.join(HERE, "kinds", name)) as f:
            schema = json.load(f)
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            api = gvk["version"] if not gvk["group"] else gvk["group"] + "/" + gvk["version"]
            kinds[(api, gvk["kind"])] = schema
    return registry, kinds


def objects(value):
    if isinstance(value, list):
        for v in value:
            yield from objects(v)
    elif isinstance(value, dict) and isinstance(value.get("items"), list) and str(value.get("kind", "")).endswith("List"):
        for v in value["items"]:
            yield from objects(v)
    else:
        yield value


def main(paths):
    registry, kinds = load()
    checked, failures = 0, []
    for path in paths:
        with open(path) as f:
            value = json.load(f)
        for obj in objects(value):
            meta = obj.get("metadata") or {}
            who = f'{obj.get("kind")} {meta.get("namespace", "") + "/" if meta.get("namespace") else ""}{meta.get("name", "")}'
            schema = kinds.get((obj.get("apiVersion"), obj.get("kind")))
            if schema is None:
                failures.append(f"{who}: no kept schema for apiVersion {obj.get('apiVersion')!r} kind {obj.get('kind')!r}")
                continue
            validator = registry(schema)
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
                where = ".".join(str(p) for p in e.absolute_path) or "(root)"
                failures.append(f"{who}: {where}: {e.message}")
            checked += 1
    for line in failures:
        print(line)
    print(f"{checked} objects checked, {len(failures)} violations")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
