"""The KServe SDK's verdict on InferenceService manifests, in a process of its own.

    python -m tests.cloud_server.kserve_sdk < services.json      # {"label": manifest, ...} -> JSON verdicts

Why a separate process: importing `kserve` registers its own copy of the OIP gRPC protos (package
`inference`) in protobuf's default descriptor pool, and `tritonclient.grpc` (whose ModelConfig the
Triton export tests parse with) registers the same symbols from another file; protobuf refuses the
second, so the two cannot be imported into one pytest process.

Each manifest is built field by field into the SDK's generated models, strictly: the SDK's own
ApiClient would drop unknown keys silently, and it looks models up in kserve.models only, while an
InferenceService nests Kubernetes' own (V1ObjectMeta, V1Container) from kubernetes.client. The
verdict is the model's class and the model serialised back (equal to the manifest when every key
was a field), or the error.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

_PRIMITIVES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "bool": bool, "float": (int, float),
                                                   "object": object}
_LIST = re.compile(r"^[Ll]ist\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")


class NotInTheModel(ValueError):
    """A manifest key the SDK's model has no field for (a typo KServe's API server would reject)."""


def build(value: Any, type_name: str, where: str = "$") -> Any:
    """`value` as the SDK model `type_name`: an unknown key raises NotInTheModel, a wrong primitive TypeError, and
    the generated models' own checks (required fields, enums) their ValueError."""
    import kserve.models as kserve_models
    import kubernetes.client.models as k8s_models

    if (match := _LIST.match(type_name)) is not None:
        if not isinstance(value, list):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        return [build(item, match[1], f"{where}[{i}]") for i, item in enumerate(value)]
    if (match := _DICT.match(type_name)) is not None:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping, got {value!r}")
        return {key: build(item, match[1] or match[2], f"{where}.{key}") for key, item in value.items()}
    if type_name in _PRIMITIVES:
        if not isinstance(value, _PRIMITIVES[type_name]):
            raise TypeError(f"{where}: expected {type_name}, got {value!r}")
        return value
    cls = getattr(kserve_models, type_name, None) or getattr(k8s_models, type_name)
    by_json_key = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    kwargs = {}
    for key, item in value.items():
        if key not in by_json_key:
            raise NotInTheModel(f"{where}.{key}: {type_name} has no field {key!r}")
        attr = by_json_key[key]
        kwargs[attr] = build(item, cls.openapi_types[attr], f"{where}.{key}")
    return cls(**kwargs)


def verdict(service: dict[str, Any]) -> dict[str, Any]:
    from kserve.api_client import ApiClient

    try:
        model = build(service, "V1beta1InferenceService")
    except (ValueError, TypeError) as err:
        return {"ok": False, "error": f"{type(err).__name__}: {err}"}
    return {"ok": True, "type": type(model).__name__,
            "container_types": [type(c).__name__ for c in (model.spec.predictor.containers or [])],
            "back": ApiClient().sanitize_for_serialization(model)}


def main() -> int:
    services = json.load(sys.stdin)
    json.dump({label: verdict(service) for label, service in services.items()}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
