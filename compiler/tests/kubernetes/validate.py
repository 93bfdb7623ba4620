#!/usr/bin/env python3
"""Validate SeccompProfile documents against the vendored CRD's v1beta1 schema.

usage: validate.py CRD.yaml PROFILE.yaml   (exit 0 valid, 1 invalid, 2 usage)

An independent check of capsulec's output (python3-jsonschema and python3-yaml, from
Debian). Stricter than the API server in one way: a field the schema does not declare
is an error here, where the server would silently drop it. Integers are also checked
against their int32/int64 format, which jsonschema does not do.
"""
import sys

import jsonschema
import yaml

API_VERSION = "security-profiles-operator.x-k8s.io/v1beta1"


def strict(schema):
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def integer_ranges(schema, value, path, errors):
    if isinstance(value, dict) and isinstance(schema, dict):
        for key, sub in value.items():
            integer_ranges(schema.get("properties", {}).get(key, {}), sub, path + [key], errors)
    elif isinstance(value, list) and isinstance(schema, dict):
        for i, sub in enumerate(value):
            integer_ranges(schema.get("items", {}), sub, path + [i], errors)
    elif isinstance(value, int) and not isinstance(value, bool):
        bits = {"int32": 32, "int64": 64}.get(schema.get("format"))
        if bits and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            errors.append(f"{'.'.join(map(str, path))}: {value} is out of {schema['format']} range")


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    crd = yaml.safe_load(open(sys.argv[1]))
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    schema = strict(versions["v1beta1"]["schema"]["openAPIV3Schema"])
    validator = jsonschema.Draft4Validator(schema)
    errors = []
    documents = list(yaml.safe_load_all(open(sys.argv[2])))
    if not documents:
        errors.append("no document")
    for n, doc in enumerate(documents):
        where = f"document {n + 1}"
        if not isinstance(doc, dict):
            errors.append(f"{where}: not a mapping")
            continue
        if doc.get("apiVersion") != API_VERSION or doc.get("kind") != crd["spec"]["names"]["kind"]:
            errors.append(f"{where}: apiVersion/kind are {doc.get('apiVersion')}/{doc.get('kind')}")
        name = (doc.get("metadata") or {}).get("name", "")
        import re
        if not (0 < len(name) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name)):
            errors.append(f"{where}: metadata.name {name!r} is not an RFC 1123 subdomain")
        for error in validator.iter_errors(doc):
            errors.append(f"{where}: {'.'.join(map(str, error.absolute_path))}: {error.message}")
        integer_ranges(schema, doc, [], errors)
    for error in errors:
        print(error)
    print(f"{len(documents)} document(s), {len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
