"""The split planners' reward, in one place for the environment that trains them and the baseline that
maximises it per request (splitting/baselines.py, `Greedy`).

Ours: Niu et al. do not publish theirs. Per request,

    r = acc_weight * accuracy - latency / deadline - miss_penalty * [latency > deadline]

where `accuracy` is the expected (validation) accuracy of whatever answered: the chosen action's, or
its fallback exit's when the offload was abandoned.
"""

from __future__ import annotations


def reward(*, accuracy: float, latency_ms: float, deadline_ms: float, acc_weight: float,
           miss_penalty: float) -> float:
    """The module docstring's reward of one answered request."""
    miss = latency_ms > deadline_ms
    return float(acc_weight * accuracy - latency_ms / deadline_ms - miss_penalty * miss)
