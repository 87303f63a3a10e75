"""How the converted JSON schemas in ./bin/schemas are named: written by hack/gen/schemas.py at build time
(`make schemas`), read through kubeconform's schema-location template by preflight/schema.py."""

SCHEMA_LOCATION = "{{ .ResourceKind }}_{{ .Group }}_{{ .ResourceAPIVersion }}.json"


def file_name(kind: str, api_version: str) -> str:
    """`<kind>_<group>_<version>.json`, lowercase kind; the core group is `v1`."""
    group, _, version = api_version.rpartition("/")
    return f"{kind.lower()}_{group or version}_{version}.json"
