"""Assertions shared by the reliability tests: every sample answered, every answer right, metrics agree."""

from __future__ import annotations

import logging

import numpy as np

from edge_agent.metrics import REASONS, SOURCES
from tests.reliability.services import delta
from tests.reliability.traffic import Outcome, Reference, tally, wrong_answers

log = logging.getLogger("reliability")


def summarise(fault: str, outcomes: list[Outcome]) -> None:
    """One log line of figures per fault (shown with `pytest -o log_cli=true --log-cli-level=INFO`)."""
    sources, reasons = tally(outcomes)
    sent = sum(len(o.idx) for o in outcomes)
    answered = sum(len(o.idx) for o in outcomes if o.ok)
    log.info("%s: %d samples in %d requests, %d answered, %d not; by source %s; fallbacks %s; slowest %.3f s",
             fault, sent, len(outcomes), answered, sent - answered, dict(sources), dict(reasons),
             max((o.latency for o in outcomes if o.ok), default=0.0))


def assert_all_answered_right(outcomes: list[Outcome], pool: np.ndarray, reference: Reference) -> int:
    """No request failed, and each answer is what its source must say; returns the samples answered."""
    failed = [(o.batch, o.status, o.error[:200]) for o in outcomes if not o.ok]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed, first: {failed[:3]}"
    problems = wrong_answers(outcomes, pool, reference)
    assert not problems, f"{len(problems)} wrong answers, first: {problems[:3]}"
    return sum(len(o.idx) for o in outcomes)


def assert_edge_metrics_agree(before: str, after: str, outcomes: list[Outcome]) -> None:
    """The edge's counters grew by exactly what the clients saw (scrapes taken with no request in flight)."""
    sources, reasons = tally(outcomes)
    for source in SOURCES:
        assert delta(before, after, "edgecloud_edge_requests_total", source=source) == sources[source], source
        assert delta(before, after, "edgecloud_edge_latency_seconds_count", source=source) == sources[source]
    for reason in REASONS:
        assert delta(before, after, "edgecloud_edge_fallbacks_total", reason=reason) == reasons[reason], reason
    success = delta(before, after, "edgecloud_edge_offload_success_total")
    assert success == sources["cloud"]
    # Attempts count samples with at least one request on the wire: every success, plus the failures
    # that got as far as the network (never an open-breaker refusal).
    attempts = delta(before, after, "edgecloud_edge_offload_attempts_total")
    assert success <= attempts <= success + sum(n for r, n in reasons.items() if r != "circuit_open")
