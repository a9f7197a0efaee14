"""Names the deployment files must agree with: the metrics contract and the services' settings."""

from __future__ import annotations

import re

from pydantic_settings import BaseSettings

from tests.deploy.metric_catalog import MetricSpec
from tests.deploy.tools import ARCHITECTURE_MD

SETTINGS_PREFIX = "EDGECLOUD_"
_METRIC = re.compile(r"`(edgecloud_\w+)(?:\{([^}]*)\})?`")


def _section(title: str) -> str:
    text = ARCHITECTURE_MD.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def contract_metrics() -> dict[str, MetricSpec]:
    """The metrics docs/architecture.md promises, typed from the words on their line."""
    metrics: dict[str, MetricSpec] = {}
    for line in _section("Prometheus metrics").splitlines():
        found = _METRIC.findall(line)
        description = line.rsplit("`", 1)[-1].lower()
        for name, labels in found:
            if "histogram" in description:
                kind = "histogram"
            elif "gauge" in description:
                kind = "gauge"
            elif name.endswith("_total"):
                kind = "counter"
            else:
                raise ValueError(f"docs/architecture.md: cannot tell the type of {name!r} from {line!r}")
            label_set = frozenset(x.strip() for x in labels.split(",") if x.strip())
            metrics[name] = MetricSpec(name=name, type=kind, labels=label_set)
    return metrics


def settings_env_names(settings_class: type[BaseSettings]) -> frozenset[str]:
    """The environment variables pydantic-settings reads for SETTINGS_CLASS (prefix EDGECLOUD_)."""
    prefix = settings_class.model_config.get("env_prefix", "")
    if prefix != SETTINGS_PREFIX:
        raise ValueError(f"{settings_class.__name__} reads env prefix {prefix!r}, not {SETTINGS_PREFIX!r}")
    return frozenset(prefix + field.upper() for field in settings_class.model_fields)
