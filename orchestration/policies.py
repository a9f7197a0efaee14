"""Every way of picking (tier, variant) we compare, behind one interface (numpy only).

A policy sees the device's `Observation` (the request's own accuracy requirement included) and the
feasible actions (every tier with every variant that meets that requirement) and returns a
`Decision`; `update` hands it the reward when the answer arrives. Learners learn there; baselines
ignore it.

- `static:TIER:VARIANT`: always the same pair, whatever the request requires (a pair below a
  request's requirement misses it; the report counts the misses).
- `static-map`: a fixed (tier, variant) per requirement level (`StaticMapping`): the static policy
  the issue's target is measured against, since applications that need different accuracies would
  each be configured with their own pair. `experiment.best_mapping` finds the best one.
- `all-end`, `all-edge`, `all-cloud`: one tier, the variant its profile says is fastest there
  among those meeting the request's requirement (a mapping too: level -> that tier's fastest).
- `greedy`: the usual model-based rule: the lowest predicted latency from the latest measurements
  (wire time per tier, the load the server last reported, the variant's profiled compute time).
- `myopic-oracle` (`oracle` is its deprecated name): per request, the action whose response would be
  lowest given the true state of every queue and link at that instant (the simulator supplies it).
  Clairvoyant about the present, per request, and blind to what its choice does to the requests
  after it: a strong reference, **not** a bound on what a policy can do (the bound is
  `orchestration.bound`).
- `qlearning`, `linucb`: the online learners (orchestration.learners).

Any of them with `+hedge` (`all-edge+hedge`, `qlearning+hedge`, ...) **races** every offload against
the device: the device starts its fallback variant (its fastest variant meeting the requirement) on
its own core at the moment it sends the request, and the first answer wins. An offload then never
answers later than the device would have on its own (less the answer's own way back), and the
server's answer wins exactly when the link and the queue let it: the orchestration analogue of the
split planner's hedge (splitting/actions.py, `Placement.HEDGE`), after Dean and Barroso's hedged
requests ("The Tail at Scale", 2013). The price is the device pass every offload runs anyway (the
device's energy, and its core for the requests behind it) and the server work done for answers the
device no longer needs. A hedged static policy is still static, so the report keeps the best of
them apart (`report.best_static` with `hedged=True`) beside the issue's reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from orchestration.learners import Action, Decision, LinUCB, QConfig, QLearning
from orchestration.profiles import Profiles
from orchestration.state import Observation, StateSpace
from shared.names import Tier

LEARNERS: tuple[str, ...] = ("qlearning", "linucb")
MYOPIC_ORACLE = "myopic-oracle"
DEPRECATED_ORACLE = "oracle"
"""The myopic oracle's old name, still accepted (older reports and command lines use it)."""
BASELINES: tuple[str, ...] = ("greedy", "all-end", "all-edge", "all-cloud", MYOPIC_ORACLE)
STATIC_MAP = "static-map"
HEDGE_SUFFIX = "+hedge"
"""A policy name ending in it races each offload against the device's own pass (see above)."""


class PolicyError(ValueError):
    """An unknown policy name or an action the profile does not have; the message names it."""


class Policy:
    """Base: `choose` per request, `update` when its answer arrives (a no-op for fixed rules)."""

    name = "policy"
    hedge: bool = False
    """race every offload against the device's fallback variant; the first answer wins."""

    def choose(self, obs: Observation, actions: Sequence[Action]) -> Decision:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, decision: Decision, r: float, next_obs: Observation | None = None) -> None:
        return None


def feasible_actions(profiles: Profiles, accuracy_req: float) -> list[Action]:
    """Every tier with every variant meeting the requirement (the most accurate one if none does)."""
    return [(tier, name) for tier in Tier for name in profiles.meeting(accuracy_req)]


def fallback_variant(profiles: Profiles, accuracy_req: float) -> str:
    """The device's fastest variant meeting the requirement (the most accurate one if none does): what it
    answers with when an offload fails, and what a hedged offload races."""
    return min(profiles.meeting(accuracy_req), key=lambda n: profiles.variants[n].compute_ms(Tier.END))


def predicted_ms(profiles: Profiles, obs: Observation, action: Action, *, hedge: bool = False) -> float:
    """The greedy rule's latency model: wire + reported queue wait + profiled compute, per action.

    Hedged, an offload is predicted as the sooner of the server's answer and the device's own fallback pass.
    """
    tier, variant = action
    compute = profiles.variants[variant].compute_ms(tier)
    if tier is Tier.END:
        return obs.local_busy_ms + compute
    remote = obs.net_ms[tier] + obs.load[tier].expected_wait_ms + compute
    if not hedge:
        return remote
    local = obs.local_busy_ms + profiles.variants[fallback_variant(profiles, obs.accuracy_req)].compute_ms(Tier.END)
    return min(remote, local)


class StaticPolicy(Policy):
    def __init__(self, action: Action) -> None:
        self.action = action
        self.name = f"static:{action[0].value}:{action[1]}"

    def choose(self, obs: Observation, actions: Sequence[Action]) -> Decision:
        return Decision(action=self.action)


class TierPolicy(Policy):
    """All requests to one tier, on the fastest variant there that meets the requirement."""

    def __init__(self, tier: Tier, profiles: Profiles) -> None:
        self.tier = tier
        self.profiles = profiles
        self.name = f"all-{tier.value}"

    def choose(self, obs: Observation, actions: Sequence[Action]) -> Decision:
        mine = [a for a in actions if a[0] is self.tier]
        if not mine:
            raise PolicyError(f"no feasible action on tier {self.tier}")
        return Decision(action=min(mine, key=lambda a: self.profiles.variants[a[1]].compute_ms(self.tier)))


class GreedyPolicy(Policy):
    name = "greedy"

    def __init__(self, profiles: Profiles) -> None:
        self.profiles = profiles

    def choose(self, obs: Observation, actions: Sequence[Action]) -> Decision:
        return Decision(action=min(actions, key=lambda a: predicted_ms(self.profiles, obs, a, hedge=self.hedge)))


class MyopicOracle(Policy):
    """Picks with `truth(action) -> response ms`, which the simulator sets before each choice.

    Myopic: the lowest response for this request given every queue and link as they are now, with
    no thought for the requests its choice delays. Not an upper bound on what a policy can achieve:
    sending everyone to a queue that is short now can cost the next requests more than it saves.
    """

    name = MYOPIC_ORACLE

    def __init__(self) -> None:
        self.truth: Callable[[Action], float] | None = None

    def choose(self, obs: Observation, actions: Sequence[Action]) -> Decision:
        if self.truth is None:
            raise PolicyError("the myopic oracle needs the simulator's true state; it cannot run live")
        return Decision(action=min(actions, key=self.truth))


OraclePolicy = MyopicOracle
"""Deprecated name of MyopicOracle."""


class StaticMapping(Policy):
    """A fixed (tier, variant) per requirement level: what a static deployment configures per application.

    A request whose requirement is not a key gets the pair of the lowest level above it (the highest
    level if none is), so it is never answered below a level the mapping was chosen for.
    """

    name = STATIC_MAP

    def __init__(self, mapping: dict[float, Action]) -> None:
        if not mapping:
            raise PolicyError("a static mapping needs at least one level")
        self.mapping = dict(sorted(mapping.items()))

    def choose(self, obs: Observation, actions: Sequence[Action]) -> Decision:
        req = obs.accuracy_req
        if req in self.mapping:
            return Decision(action=self.mapping[req])
        above = [level for level in self.mapping if level >= req]
        return Decision(action=self.mapping[above[0] if above else max(self.mapping)])

    def describe(self) -> dict[str, str]:
        """The mapping as report.json shows it: level -> `TIER:VARIANT`."""
        return {f"{level:g}": f"{tier.value}:{variant}" for level, (tier, variant) in self.mapping.items()}


def fastest_per_tier(profiles: Profiles, actions: Sequence[Action]) -> list[Action]:
    """Per tier, the action with the fastest variant there (ties: the more accurate one).

    The reward (`learners.reward`) gives nothing for accuracy above the requirement, so among
    feasible variants on one tier a slower one can only cost: the learners choose the tier, on that
    tier's fastest feasible variant, and spend no exploration on pairs that cannot win (ours; the
    paper's agent picks among every pair).
    """
    def cost(action: Action) -> tuple[float, float]:
        variant = profiles.variants[action[1]]
        return variant.compute_ms(action[0]), -variant.accuracy

    return [min(mine, key=cost) for tier in Tier if (mine := [a for a in actions if a[0] is tier])]


class LearnerPolicy(Policy):
    """An online learner as a policy, choosing among `fastest_per_tier` of the feasible actions."""

    def __init__(self, learner: QLearning | LinUCB, profiles: Profiles) -> None:
        self.learner = learner
        self.profiles = profiles
        self.name = learner.name
        self._pruned: dict[tuple[Action, ...], list[Action]] = {}

    def choose(self, obs: Observation, actions: Sequence[Action]) -> Decision:
        key = tuple(actions)
        if key not in self._pruned:
            self._pruned[key] = fastest_per_tier(self.profiles, actions)
        return self.learner.choose(obs, self._pruned[key])

    def update(self, decision: Decision, r: float, next_obs: Observation | None = None) -> None:
        self.learner.update(decision, r, next_obs)


def state_space(profiles: Profiles) -> StateSpace:
    """The tabular learner's state space for this variant family: one row set per set of variants a
    requirement leaves feasible (the variants' accuracies are the edges), the uplink binned as this
    family's request would cross it."""
    levels = sorted({round(v.accuracy, 6) for v in profiles.variants.values()})
    return StateSpace(accuracy_levels=tuple(levels), request_bytes=profiles.request_bytes)


def static_names(profiles: Profiles, accuracy_req: float | Sequence[float]) -> list[str]:
    """`static:TIER:VARIANT` for every pair meeting the requirement (the lowest level of several: a pair
    below every level can only miss)."""
    lowest = min(accuracy_req) if isinstance(accuracy_req, Sequence) else accuracy_req
    return [f"static:{t.value}:{v}" for t, v in feasible_actions(profiles, lowest)]


def static_action(name: str) -> Action:
    """(tier, variant) of a `static:TIER:VARIANT` name."""
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != "static":
        raise PolicyError(f"policy {name!r} is not static:TIER:VARIANT")
    return _tier_of(name, parts[1]), parts[2]


def _tier_of(policy: str, value: str) -> Tier:
    try:
        return Tier(value)
    except ValueError:
        raise PolicyError(f"unknown tier {value!r} in policy {policy!r}; tiers: {[t.value for t in Tier]}") from None


def is_hedged(name: str) -> bool:
    """Whether a policy name asks for hedged offloads (`...+hedge`)."""
    return name.endswith(HEDGE_SUFFIX)


def make_policy(name: str, profiles: Profiles, *, seed: int = 0, mapping: dict[float, Action] | None = None,
                qlearning: dict[str, Any] | None = None) -> Policy:
    """A fresh policy by name (each user gets its own: its own learner, its own exploration).

    `mapping` is the level -> (tier, variant) table of `static-map` (experiment.best_mapping finds one);
    `qlearning` overrides QConfig fields of the `qlearning` policy. `NAME+hedge` is NAME racing each
    offload against the device (module docstring).
    """
    if is_hedged(name):
        base = name.removesuffix(HEDGE_SUFFIX)
        if base in (MYOPIC_ORACLE, DEPRECATED_ORACLE):
            raise PolicyError(f"policy {name!r}: the myopic oracle cannot hedge (its view prices one action)")
        if is_hedged(base):
            raise PolicyError(f"policy {name!r}: {HEDGE_SUFFIX!r} once is enough")
        policy = _make(base, profiles, seed=seed, mapping=mapping, qlearning=qlearning, hedge=True)
        policy.hedge = True
        policy.name = f"{policy.name}{HEDGE_SUFFIX}"
        return policy
    return _make(name, profiles, seed=seed, mapping=mapping, qlearning=qlearning, hedge=False)


def _make(name: str, profiles: Profiles, *, seed: int, mapping: dict[float, Action] | None,
          qlearning: dict[str, Any] | None, hedge: bool) -> Policy:
    """The policy `name` names; `hedge` only where construction needs it (the caller sets `Policy.hedge`)."""
    if name == "qlearning":
        # Hedged, the model prior (and the actions worth exploring) price an offload as the race it is.
        return LearnerPolicy(QLearning(state_space(profiles), QConfig(seed=seed, **(qlearning or {})),
                                       predict=lambda obs, action: predicted_ms(profiles, obs, action, hedge=hedge)),
                             profiles)
    if name == "linucb":
        return LearnerPolicy(LinUCB(state_space(profiles)), profiles)
    if name == "greedy":
        return GreedyPolicy(profiles)
    if name in (MYOPIC_ORACLE, DEPRECATED_ORACLE):
        return MyopicOracle()
    if name == STATIC_MAP:
        if mapping is None:
            raise PolicyError(f"policy {STATIC_MAP!r} needs its level -> (tier, variant) mapping")
        for tier, variant in mapping.values():
            if variant not in profiles.variants:
                raise PolicyError(f"{STATIC_MAP}: unknown variant {variant!r} on {tier}; variants: {profiles.names}")
        return StaticMapping(mapping)
    if name.startswith("all-"):
        return TierPolicy(_tier_of(name, name.removeprefix("all-")), profiles)
    if name.startswith("static:"):
        parts = name.split(":")
        if len(parts) != 3 or parts[2] not in profiles.variants:
            raise PolicyError(f"policy {name!r} is not static:TIER:VARIANT with a variant in {profiles.names}")
        return StaticPolicy((_tier_of(name, parts[1]), parts[2]))
    raise PolicyError(f"unknown policy {name!r}; choose from {[*LEARNERS, *BASELINES, STATIC_MAP]} or "
                      f"static:TIER:VARIANT, each optionally with {HEDGE_SUFFIX!r}")
