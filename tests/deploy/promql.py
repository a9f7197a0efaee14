"""Just enough PromQL lexing to list the metric and label names an expression refers to.

Syntax itself is promtool's job (the tests run every expression through `promtool check rules`);
this only answers "which series does this query read, and which labels does it name?", so the
dashboard and the alert rules can be checked against deploy/metrics.txt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Grafana's variables ($edge, $__rate_interval, ${x}) are not PromQL; these stand in for them.
_GRAFANA_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\w+)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER_LABEL = re.compile(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_FUNCTION_CALL = re.compile(r"\b[a-zA-Z_]\w*\s*(?=\()")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?[smhdwy]?\b|\b(?:Inf|NaN)\b", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[a-zA-Z_:][\w:]*")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "group_left", "group_right"})


@dataclass(frozen=True)
class QueryNames:
    metrics: frozenset[str]                         # every metric name read
    matcher_labels: dict[str, frozenset[str]]       # metric -> labels in its {...} selector
    grouping_labels: frozenset[str]                 # labels in by/without/on/ignoring/group_*


def substitute_grafana_variables(expr: str) -> str:
    """Replace Grafana variables so the expression is plain PromQL ($__rate_interval -> 5m, else .*)."""
    return _GRAFANA_VARIABLE.sub(lambda m: "5m" if "interval" in m.group(0) else ".*", expr)


def names_in(expr: str) -> QueryNames:
    """The metric and label names that EXPR refers to."""
    text = substitute_grafana_variables(expr)
    # Label values may contain anything, braces included; blank them out before looking for names.
    text = _STRING.sub('""', text)

    matcher_labels: dict[str, set[str]] = {}
    metrics: set[str] = set()

    def take_selector(match: re.Match[str]) -> str:
        name = match.group(1)
        labels = set(_MATCHER_LABEL.findall(match.group(2)))
        if name is None or name in _KEYWORDS:
            # A bare {__name__=...} selector or `offset`-like keyword: keep the keyword, drop the braces.
            return f" {name or ''} "
        metrics.add(name)
        matcher_labels.setdefault(name, set()).update(labels)
        return " "

    text = _SELECTOR.sub(take_selector, text)
    grouping: set[str] = set()
    for group in _GROUPING.findall(text):
        grouping.update(label.strip() for label in group.split(",") if label.strip())
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _FUNCTION_CALL.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    metrics.update(name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS)
    return QueryNames(metrics=frozenset(metrics),
                      matcher_labels={m: frozenset(ls) for m, ls in matcher_labels.items()},
                      grouping_labels=frozenset(grouping))


def problems(expr: str, series: dict[str, frozenset[str]], *, target_labels: frozenset[str]) -> list[str]:
    """What EXPR names that SERIES (sample name -> labels) does not have; empty when it all exists.

    TARGET_LABELS are the labels Prometheus attaches to every scraped sample (job, instance).
    """
    names = names_in(expr)
    found: list[str] = [f"unknown metric {m!r}" for m in sorted(names.metrics - series.keys())]
    for metric, labels in names.matcher_labels.items():
        allowed = series.get(metric, frozenset()) | target_labels
        found += [f"{metric} has no label {label!r}" for label in sorted(labels - allowed)]
    in_scope = target_labels.union(*(series.get(m, frozenset()) for m in names.metrics))
    found += [f"grouping by {label!r}, which none of {sorted(names.metrics)} has"
              for label in sorted(names.grouping_labels - in_scope)]
    return found
