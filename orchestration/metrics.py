"""Prometheus series of a device's orchestrator: its choices and rewards, by tier and variant.

Added to the edge agent's registry (one per app), next to the runtime's `edgecloud_model_*`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.metrics import SECONDS_BUCKETS

REWARD_EWMA = 0.05
"""Weight of the newest reward in the exported moving average (about the last 20 requests)."""


class OrchestratorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.choices = Counter("edgecloud_orchestrator_choices", "requests the orchestrator sent, by tier and variant",
                               ["tier", "variant"], registry=registry)
        # A counter cannot go down, and every reward is negative: count the cost (minus the reward).
        self.cost = Counter("edgecloud_orchestrator_cost",
                            "sum of minus the rewards received (response/100 ms plus the accuracy penalty), by "
                            "tier and variant; divided by choices it is the mean cost", ["tier", "variant"],
                            registry=registry)
        self.reward = Gauge("edgecloud_orchestrator_reward", "moving average of the reward received (all choices)",
                            registry=registry)
        self.response = Histogram("edgecloud_orchestrator_response_seconds",
                                  "response time of an orchestrated request, by the tier that answered",
                                  ["tier"], buckets=SECONDS_BUCKETS, registry=registry)
        self.fallbacks = Counter("edgecloud_orchestrator_fallbacks",
                                 "requests a server failed, answered by the device's own variant, by reason",
                                 ["reason"], registry=registry)
        self.epsilon = Gauge("edgecloud_orchestrator_epsilon", "current exploration rate (Q-learning)",
                             registry=registry)
        self.changes = Counter("edgecloud_orchestrator_changes",
                               "changes the learner's detector signalled (exploration restarted)", registry=registry)
        self._avg: float | None = None

    def record(self, *, tier: str, variant: str, reward: float, response_s: float) -> None:
        self.choices.labels(tier=tier, variant=variant).inc()
        self.cost.labels(tier=tier, variant=variant).inc(max(0.0, -reward))
        self._avg = reward if self._avg is None else REWARD_EWMA * reward + (1 - REWARD_EWMA) * self._avg
        self.reward.set(self._avg)
        self.response.labels(tier=tier).observe(response_s)
