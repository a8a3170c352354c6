#!/usr/bin/env python3
"""Validates custom resources against the OpenAPI schemas of their CRDs.

Usage: scripts/check-crds.py CRD_SOURCE... -- MANIFEST...

CRD_SOURCE: a CRD YAML file, or ZIP:PATH for a file inside a zip (a Go
module zip from the module proxy, as scripts/k8s-validate.sh downloads).
Each document of each MANIFEST whose apiVersion/kind a CRD defines is
checked against that version's openAPIV3Schema with jsonschema, strictly:
an object schema that lists properties and neither allows others nor sets
x-kubernetes-preserve-unknown-fields rejects unknown fields (what
`kubectl apply --validate=strict` asks of the API server). Documents of
other kinds are skipped (kubernetes-validate checks the built-in ones).
Exits 1 if a custom resource fails or a CRD kind is never checked.
"""
import sys
import zipfile

import jsonschema
import yaml


def load(source):
    if ":" in source and source.split(":", 1)[0].endswith(".zip"):
        archive, path = source.split(":", 1)
        return zipfile.ZipFile(archive).read(path).decode()
    return open(source).read()


def strict(schema):
    """The schema with unknown fields rejected where Kubernetes would prune."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        if schema.get("x-kubernetes-int-or-string"):
            schema.pop("type", None)
            schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        return schema
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    return schema


def main():
    if "--" not in sys.argv:
        sys.exit(__doc__)
    split = sys.argv.index("--")
    schemas = {}
    for source in sys.argv[1:split]:
        crd = yaml.safe_load(load(source))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schema = strict(v["schema"]["openAPIV3Schema"])
            # metadata is checked by the API server itself, not the CRD.
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            schemas[(f"{group}/{v['name']}", kind)] = schema
    failed = 0
    seen = set()
    for manifest in sys.argv[split + 1:]:
        for doc in yaml.safe_load_all(open(manifest)):
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key not in schemas:
                continue
            seen.add(key)
            name = f"{manifest}: {key[1]}/{doc['metadata']['name']}"
            errors = list(jsonschema.Draft7Validator(schemas[key]).iter_errors(doc))
            for e in errors:
                print(f"check-crds: FAIL {name}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
            if errors:
                failed += 1
            else:
                print(f"check-crds: {name} passed against its CRD ({key[0]})")
    for key in {(a, k) for (a, k) in schemas} - seen:
        print(f"check-crds: note: no {key[1]} ({key[0]}) in the manifests")
    if not seen:
        print("check-crds: FAIL no custom resource was checked")
        failed += 1
    sys.exit(1 if failed else 0)


main()
