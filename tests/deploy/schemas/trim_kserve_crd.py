"""Rebuild kserve-inferenceservice-<version>.json from KServe's CRD file.

    python tests/deploy/schemas/trim_kserve_crd.py <kserve checkout> <tag>

reads ``config/crd/full/serving.kserve.io_inferenceservices.yaml`` at that tag (``git show``) and
writes the trimmed openAPIV3Schema next to this script. Trimmed means: descriptions dropped; every
property name the CRD declares is kept, but only the subtrees our manifests use keep their schema
(the rest become ``{}``, "anything"); and objects with declared properties get
``additionalProperties: false``, which is what the API server's strict field validation (kubectl's
default) does with an unknown field. The CRD's ``metadata`` is a bare object; ObjectMeta's name,
namespace, labels and annotations are added from the Kubernetes API so annotations are checked
as strings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

CRD_PATH = "config/crd/full/serving.kserve.io_inferenceservices.yaml"

# Which properties keep their schema, by path from the root; everything else becomes {}.
KEEP: dict[str, set[str] | None] = {
    "": {"apiVersion", "kind", "metadata", "spec"},
    "spec": {"predictor"},
    "spec.predictor": {
        "containers",
        "minReplicas",
        "maxReplicas",
        "scaleMetric",
        "scaleTarget",
        "tolerations",
        "volumes",
    },
    "spec.predictor.containers": {
        "name",
        "image",
        "ports",
        "env",
        "resources",
        "readinessProbe",
        "livenessProbe",
        "securityContext",
        "volumeMounts",
    },
    "spec.predictor.volumes": {"name", "emptyDir"},
}

OBJECT_META = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _strict(schema: Any) -> Any:
    """Drop descriptions; close every object that lists its properties."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items() if key != "description"}
    if "properties" in schema and "properties" in out:
        # "properties" maps names to schemas: undo the description filter on the names themselves.
        out["properties"] = {name: _strict(sub) for name, sub in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    return out


def _trim(schema: dict[str, Any], path: str) -> dict[str, Any]:
    if schema.get("type") == "array":
        return {**schema, "items": _trim(schema["items"], path)}
    keep = KEEP.get(path)
    if keep is None:
        return _strict(schema)
    properties = {}
    for name, sub in schema["properties"].items():
        child = f"{path}.{name}" if path else name
        properties[name] = _trim(sub, child) if name in keep else {}
    out = {key: _strict(value) for key, value in schema.items() if key not in ("description",)}
    out["properties"] = properties
    out.setdefault("additionalProperties", False)
    return out


def main(checkout: str, tag: str) -> None:
    commit = subprocess.run(
        ["git", "-C", checkout, "rev-parse", f"{tag}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    text = subprocess.run(
        ["git", "-C", checkout, "show", f"{commit}:{CRD_PATH}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    crd = yaml.safe_load(text)
    (version,) = (v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = _trim(version["schema"]["openAPIV3Schema"], "")
    schema["properties"]["metadata"] = OBJECT_META
    document = {
        "$comment": (
            f"Trimmed from kserve/kserve {tag} (commit {commit}), {CRD_PATH}, "
            "spec.versions[v1beta1].schema.openAPIV3Schema, by trim_kserve_crd.py in this folder."
        ),
        "x-source": {"repository": "kserve/kserve", "tag": tag, "commit": commit, "path": CRD_PATH},
        **schema,
    }
    out = Path(__file__).with_name(f"kserve-inferenceservice-{tag}.json")
    out.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(out, len(out.read_text()), "bytes")


if __name__ == "__main__":
    main(*sys.argv[1:])
