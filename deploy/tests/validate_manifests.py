"""Schema-validate every object of rendered manifests, custom resources included.

    python deploy/tests/validate_manifests.py --kubernetes-version 1.32.0 FILE.yaml ...

Built-in kinds: kubernetes-validate's OpenAPI schemas for that Kubernetes version, in strict
mode (an unknown field is an error, as with `kubectl apply --validate=strict`).

Custom resources (KEDA ScaledObject, Prometheus operator ServiceMonitor and PrometheusRule):
JSON schemas generated from the upstream CRDs (the cloudcoil-models-* packages are generated
from them), checked with jsonschema. CRD schemas leave unknown fields open (the API server
prunes them silently), which would hide a misspelt field, so every object schema that lists
its properties is closed here, as strict field validation does on a real server.

A kind with neither schema is an error: nothing rendered goes unchecked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml


def _custom_models() -> dict[tuple[str, str], Any]:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
    from cloudcoil.models.prometheus_operator.v1 import PodMonitor, PrometheusRule, ServiceMonitor

    return {
        ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
        ("keda.sh/v1alpha1", "TriggerAuthentication"): TriggerAuthentication,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): ServiceMonitor,
        ("monitoring.coreos.com/v1", "PodMonitor"): PodMonitor,
        ("monitoring.coreos.com/v1", "PrometheusRule"): PrometheusRule,
    }


def _close(node: Any) -> None:
    """additionalProperties: false on every object schema with a property list (in place)."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


def custom_schema(model: Any) -> dict[str, Any]:
    schema: dict[str, Any] = model.model_json_schema(by_alias=True)
    _close(schema)
    # A status is written by the controller, never by us: refuse one in a manifest.
    schema["properties"].pop("status", None)
    return schema


def _deepest(err: jsonschema.ValidationError) -> tuple[int, int]:
    # best_match's key: larger is better; prefer the error deepest in the document.
    return (len(err.absolute_path), -len(err.message))


def _describe(err: jsonschema.ValidationError) -> str:
    # anyOf (every optional field is "X or null") reports the whole value; the branch that
    # got furthest says what is really wrong.
    while err.context:
        real = [
            e for e in err.context if not (e.validator == "type" and e.validator_value == "null")
        ]
        err = jsonschema.exceptions.best_match(real or err.context, key=_deepest)
    path = "/".join(str(p) for p in err.absolute_path) or "(root)"
    message = err.message if len(err.message) <= 300 else err.message[:300] + " …"
    return f"{path}: {message}"


def validate_custom(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    return [_describe(err) for err in errors]


def validate_builtin(obj: dict[str, Any], version: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [_describe(exc)]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubernetes-version", default="1.32.0")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()

    models = _custom_models()
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    failures = 0
    counts: dict[str, int] = {}
    for path in args.files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if not docs:
            print(f"{path}: no objects rendered")
            failures += 1
        for obj in docs:
            key = (obj.get("apiVersion", ""), obj.get("kind", ""))
            name = f"{path.name}: {key[1]}/{obj.get('metadata', {}).get('name', '?')}"
            if key in models:
                if key not in schemas:
                    schemas[key] = custom_schema(models[key])
                errors = validate_custom(obj, schemas[key])
            else:
                try:
                    errors = validate_builtin(obj, args.kubernetes_version)
                except kubernetes_validate.SchemaNotFoundError:
                    errors = [f"no schema for {key[0]} {key[1]}"]
            counts[key[1]] = counts.get(key[1], 0) + 1
            for error in errors:
                print(f"{name}: {error}")
            failures += bool(errors)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    total = sum(counts.values())
    print(f"{total - failures} of {total} objects valid ({kinds})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
