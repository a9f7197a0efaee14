"""Everything a planner needs from a bundle, loaded once (numpy only: the live device uses it too).

`PlannerSpec` (artifact `split_planner`) records the conditions the planners were trained for: the
regime (splitting/regime.py: request period, deadline, RTT and overheads, bandwidth prior, trace
folders, what server-only uploads), the reward weights, the state layout, the training traces' mean
bandwidth (Neurosurgeon's) and the learning curves. `SplitSetup.load` verifies and reads the plan, the
profiles, the accuracy table, the per-sample correctness, the encoded input sizes and the trained
policies; `planner(name)` builds any strategy of `SplitStrategy` (the oracle only exists inside the
environment). A spec written before the regime existed (version 1) is read as the MNIST regime with
the old state layout, so its policies keep working; a policy that does not fit the spec's state or
the bundle's actions is refused with the command that retrains it.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from shared import bundle as B
from splitting import profile as P
from splitting.actions import ActionSpace
from splitting.baselines import DeviceOnly, Edgent, Greedy, Hedge, Learned, Neurosurgeon, Oracle, Planner, ServerOnly
from splitting.inputs import ARTIFACT_INPUT_BYTES, InputBytes, read_input_bytes
from splitting.latency import CostModel, LinkModel
from splitting.policy import MlpPolicy
from splitting.regime import MNIST, Regime, ServerPayload
from splitting.segments import SplitPlan
from splitting.state import StateConfig

SPLIT_DIR = "split"
ACCURACY_JSON = f"{SPLIT_DIR}/accuracy.json"
CORRECT_NPZ = f"{SPLIT_DIR}/correct_test.npz"
ARTIFACT_ACCURACY = "split_accuracy"
ARTIFACT_CORRECT = "split_correct"
ARTIFACT_SPEC = "split_planner"
SPEC_JSON = f"{SPLIT_DIR}/planner.json"
ARTIFACT_CONFIG = "split_config"
CONFIG_JSON = f"{SPLIT_DIR}/config.json"
"""The settings `edgecloud split train` ran with (splitting.config.SplitConfig), beside the planners."""
SPEC_VERSION = 2


class SplitStrategy(StrEnum):
    """A way of choosing (exit, partition, bits) per request; the value is its name in reports and requests."""

    SAC = "sac"
    DQN = "dqn"
    DEVICE_ONLY = "device_only"
    SERVER_ONLY_JPEG = "server_only_jpeg"  # the image file as the device holds it; the server decodes it
    SERVER_ONLY_RAW = "server_only_raw"    # raw pixels
    NEUROSURGEON = "neurosurgeon"
    EDGENT = "edgent"
    HEDGE = "hedge"  # server-only raced against the device's own pass; only where the regime has `hedge`
    GREEDY = "greedy"  # the learned planners' reward maximised per request from the last transfer's bandwidth
    ORACLE = "oracle"


LEGACY_STRATEGIES: dict[str, SplitStrategy] = {"server_only": SplitStrategy.SERVER_ONLY_RAW}
"""Names earlier reports, scripts and requests used, still accepted (and reported under that name):
`server_only` sent raw pixels."""
STRATEGIES: tuple[str, ...] = (*(s.value for s in SplitStrategy), *LEGACY_STRATEGIES)
"""Every name a command or a request may use; `SplitSetup.strategies()` is what runs by default."""
LEARNED: tuple[str, ...] = (SplitStrategy.SAC, SplitStrategy.DQN)
SERVER_ONLY_PAYLOAD: dict[str, ServerPayload] = {SplitStrategy.SERVER_ONLY_JPEG: ServerPayload.JPEG,
                                                 SplitStrategy.SERVER_ONLY_RAW: ServerPayload.RAW}
"""The server-only strategies upload this whatever the regime says; every other strategy's server-only
action uploads the regime's `server_payload`."""


def canonical_strategy(name: str) -> SplitStrategy:
    """`name` as a SplitStrategy (legacy names mapped); ValueError names the choices."""
    if name in LEGACY_STRATEGIES:
        return LEGACY_STRATEGIES[name]
    try:
        return SplitStrategy(name)
    except ValueError:
        raise ValueError(f"unknown strategy {name!r}; choose from {list(STRATEGIES)}") from None


def policy_artifact(name: str) -> str:
    return f"split_policy_{name}"


def default_regime(manifest: B.Manifest) -> Regime:
    """The regime of a bundle with no trained planners: MNIST's, except that a bundle whose dataset has
    encoded files (artifact split_input_bytes) is held as those files, so server-only uploads the JPEG."""
    if ARTIFACT_INPUT_BYTES in manifest.artifacts:
        return MNIST.override(server_payload=ServerPayload.JPEG)
    return MNIST


@dataclass(init=False)
class PlannerSpec:
    """The conditions the planners were trained for, stored beside their weights."""

    regime: Regime
    """request period, deadline, link, bandwidth prior, trace folders, server-only payload"""
    acc_weight: float
    """reward weight of validation accuracy"""
    miss_penalty: float
    """reward penalty of a missed deadline"""
    state: StateConfig
    """observation layout (its bandwidth prior is the regime's)"""
    train_mean_mbit_s: float
    """time-weighted mean throughput of the training uplink traces (Neurosurgeon plans for it)"""
    training: dict[str, Any]
    """configs and learning curves of the trained planners"""

    def __init__(self, regime: Regime | None = None, *, acc_weight: float = 20.0, miss_penalty: float = 2.0,
                 state: StateConfig | None = None, train_mean_mbit_s: float = 1.0,
                 training: dict[str, Any] | None = None, link: LinkModel | None = None,
                 deadline_ms: float | None = None, period_s: float | None = None,
                 train_traces: list[str] | None = None) -> None:
        # `link`, `deadline_ms`, `period_s` and `train_traces` are version 1's fields: folded into the regime,
        # so that callers written against it keep working.
        regime = regime or MNIST
        if link is not None:
            regime = regime.override(rtt_ms=link.rtt_ms, request_overhead_bytes=link.request_overhead_bytes,
                                     response_bytes=link.response_bytes)
        regime = regime.override(deadline_ms=deadline_ms, period_s=period_s,
                                 uplink_traces=tuple(train_traces) if train_traces is not None else None)
        self.regime = regime
        self.acc_weight, self.miss_penalty = acc_weight, miss_penalty
        self.state = replace(state or StateConfig(), prior_mbit_s=regime.bandwidth_prior)
        self.train_mean_mbit_s = train_mean_mbit_s
        self.training = dict(training or {})

    @property
    def link(self) -> LinkModel:
        return LinkModel.from_regime(self.regime)

    @property
    def deadline_ms(self) -> float:
        return self.regime.deadline_ms

    @property
    def period_s(self) -> float:
        return self.regime.period_s

    @property
    def train_traces(self) -> list[str]:
        return list(self.regime.uplink_traces)

    def with_regime(self, regime: Regime) -> PlannerSpec:
        return PlannerSpec(regime, acc_weight=self.acc_weight, miss_penalty=self.miss_penalty, state=self.state,
                           train_mean_mbit_s=self.train_mean_mbit_s, training=self.training)

    def to_json(self) -> dict[str, Any]:
        return {"version": SPEC_VERSION, "regime": self.regime.to_json(), "acc_weight": self.acc_weight,
                "miss_penalty": self.miss_penalty, "state": asdict(self.state),
                "train_mean_mbit_s": self.train_mean_mbit_s, "training": self.training}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PlannerSpec:
        raw = dict(raw)
        version = raw.pop("version", 1)
        if version == 1:
            return cls._from_v1(raw)
        if version != SPEC_VERSION:
            raise B.BundleError(f"split_planner version {version} is newer than this code ({SPEC_VERSION}); "
                                "update edgecloud or re-run `edgecloud split train`")
        state = StateConfig(**raw.pop("state", {}))
        return cls(Regime.from_json(raw.pop("regime")), state=state, **raw)

    @classmethod
    def _from_v1(cls, raw: dict[str, Any]) -> PlannerSpec:
        # Version 1 (MNIST): link, deadline and period beside the state; raw-pixel server-only; a state
        # without the stall features (its policies take history + 4 values).
        state_raw = dict(raw.get("state", {}))
        state_raw.setdefault("stall", False)
        link = LinkModel(**raw.get("link", {}))
        regime = Regime(period_s=raw.get("period_s", MNIST.period_s),
                        deadline_ms=raw.get("deadline_ms", MNIST.deadline_ms), rtt_ms=link.rtt_ms,
                        request_overhead_bytes=link.request_overhead_bytes, response_bytes=link.response_bytes,
                        prior_mbit_s=state_raw.get("prior_mbit_s"), uplink_traces=tuple(raw.get("train_traces", ())),
                        server_payload=ServerPayload.RAW)
        known = {f.name for f in fields(StateConfig)}
        return cls(regime, acc_weight=raw.get("acc_weight", 20.0), miss_penalty=raw.get("miss_penalty", 2.0),
                   state=StateConfig(**{k: v for k, v in state_raw.items() if k in known}),
                   train_mean_mbit_s=raw.get("train_mean_mbit_s", 1.0), training=raw.get("training", {}))


@dataclass
class SplitSetup:
    bundle: Path
    manifest: B.Manifest
    plan: SplitPlan
    space: ActionSpace
    device: P.Profile
    server: P.Profile
    val_accuracy: np.ndarray       # (A,), 0 for invalid actions
    test_correct: np.ndarray | None
    spec: PlannerSpec
    policies: dict[str, MlpPolicy]
    input_bytes: InputBytes        # encoded size of each test sample (split_input_bytes, else the default)

    @classmethod
    def load(cls, bundle: Path, *, need_spec: bool = True) -> SplitSetup:
        bundle = Path(bundle)
        manifest = B.load_manifest(bundle)
        plan = SplitPlan.from_manifest(manifest)
        spec = PlannerSpec(default_regime(manifest))
        if ARTIFACT_SPEC in manifest.artifacts:
            raw = B.read_verified(bundle, manifest, manifest.artifacts[ARTIFACT_SPEC])
            spec = PlannerSpec.from_json(json.loads(raw))
        elif need_spec:
            raise B.BundleError(f"{bundle}: no trained planners; run `edgecloud split train --bundle {bundle}`")
        grid = ActionSpace(plan.n_stages, plan.bits)
        report = read_accuracy(bundle, manifest)
        val = np.zeros(len(grid))
        for row in report["actions"]:
            val[row["index"]] = row["val_accuracy"]
        correct = None
        if ARTIFACT_CORRECT in manifest.artifacts:
            data = B.read_verified(bundle, manifest, manifest.artifacts[ARTIFACT_CORRECT])
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                correct = z["correct"]
        space, val, correct = _with_hedge(grid, val, correct, spec.regime)
        if spec.state.hint_actions not in (0, len(space)):
            raise B.BundleError(f"{bundle}: its planners' state holds greedy's choice over {spec.state.hint_actions} "
                                f"actions, but the bundle has {len(space)}; re-run `edgecloud split train --bundle "
                                f"{bundle}`")
        policies = {name: MlpPolicy.from_bytes(B.read_verified(bundle, manifest, manifest.artifacts[art]))
                    for name in LEARNED if (art := policy_artifact(name)) in manifest.artifacts}
        for name, policy in policies.items():
            if policy.obs_dim != spec.state.dim or policy.n_actions != len(space):
                raise B.BundleError(
                    f"{bundle}: the {name} policy takes {policy.obs_dim} state values and scores {policy.n_actions} "
                    f"actions, but this code's state for the bundle's spec has {spec.state.dim} values and the "
                    f"bundle {len(space)} actions; re-run `edgecloud split train --bundle {bundle}`")
        return cls(bundle=bundle, manifest=manifest, plan=plan, space=space,
                   device=P.load(bundle, manifest, "device"), server=P.load(bundle, manifest, "server"),
                   val_accuracy=val, test_correct=correct, spec=spec, policies=policies,
                   input_bytes=read_input_bytes(bundle, manifest, raw_shape=plan.raw_shape))

    @property
    def regime(self) -> Regime:
        return self.spec.regime

    def with_regime(self, regime: Regime) -> SplitSetup:
        """This setup under another regime (command-line flags over the bundle's); policies unchanged, except
        that turning `hedge` on or off (or changing its early exits) changes the actions, and the policies
        trained for the other set go."""
        if (regime.hedge, tuple(sorted(regime.hedge_exits))) == (self.space.hedge, self.space.hedge_exits):
            return replace(self, spec=self.spec.with_regime(regime))
        grid = ActionSpace(self.plan.n_stages, self.plan.bits)
        n = len(grid)
        space, val, correct = _with_hedge(grid, self.val_accuracy[:n],
                                          None if self.test_correct is None else self.test_correct[:n], regime)
        policies = {k: p for k, p in self.policies.items() if p.n_actions == len(space)}
        spec = self.spec.with_regime(regime)
        if spec.state.hint_actions not in (0, len(space)):
            # Greedy's one-hot was over the other actions, as were the planners that read it (dropped above).
            spec.state = replace(spec.state, hint_actions=0)
        return replace(self, spec=spec, space=space, val_accuracy=val, test_correct=correct, policies=policies)

    def cost_model(self, link: LinkModel | None = None, *, server_payload: ServerPayload | None = None) -> CostModel:
        return CostModel(plan=self.plan, space=self.space, device=self.device, server=self.server,
                         link=link or self.spec.link, server_payload=server_payload or self.regime.server_payload,
                         input_bytes=self.input_bytes)

    def strategies(self) -> list[str]:
        """Every strategy this bundle has: the learned ones only once trained (no legacy names)."""
        return [s.value for s in SplitStrategy if (s not in LEARNED or s in self.policies)
                and (s is not SplitStrategy.HEDGE or self.space.hedge)]

    def resolve_strategies(self, names: list[str] | None) -> list[str]:
        """`names` checked (order kept, duplicates dropped); None: every strategy the bundle has. An unknown
        name is a ValueError naming the choices, an untrained learned one a BundleError naming the command."""
        if names is None:
            return self.strategies()
        out = list(dict.fromkeys(names))
        for name in out:
            canonical_strategy(name)
        if SplitStrategy.HEDGE in out and not self.space.hedge:
            raise self._no_hedge()
        untrained = [n for n in out if n in LEARNED and n not in self.policies]
        if untrained:
            raise B.BundleError(f"{self.bundle}: no trained {untrained[0]} policy; run "
                                f"`edgecloud split train --bundle {self.bundle}`")
        return out

    def _no_hedge(self) -> B.BundleError:
        return B.BundleError(f"{self.bundle}: its planners were trained without the hedge action; run "
                             f"`edgecloud split train --bundle {self.bundle} --hedge`")

    def payload_of(self, name: str) -> ServerPayload:
        """What the server-only action uploads when strategy `name` runs."""
        return SERVER_ONLY_PAYLOAD.get(canonical_strategy(name).value, self.regime.server_payload)

    def planner(self, name: str, model: CostModel | None = None) -> Planner:
        model = model or self.cost_model()
        strategy = canonical_strategy(name)
        if strategy is SplitStrategy.DEVICE_ONLY:
            return DeviceOnly(model)
        if strategy in SERVER_ONLY_PAYLOAD:
            return ServerOnly(model, name=name)  # a legacy name is reported as asked
        if strategy is SplitStrategy.NEUROSURGEON:
            return Neurosurgeon(model, mean_mbit_s=self.spec.train_mean_mbit_s, rtt_ms=self.spec.link.rtt_ms)
        if strategy is SplitStrategy.EDGENT:
            return Edgent(model, self.val_accuracy, prior_mbit_s=self.spec.state.prior_mbit_s)
        if strategy is SplitStrategy.GREEDY:
            return Greedy(model, self.val_accuracy, prior_mbit_s=self.spec.state.prior_mbit_s,
                          acc_weight=self.spec.acc_weight, miss_penalty=self.spec.miss_penalty)
        if strategy is SplitStrategy.ORACLE:
            return Oracle()
        if strategy is SplitStrategy.HEDGE:
            if not self.space.hedge:
                raise self._no_hedge()
            return Hedge(model)
        if strategy.value not in self.policies:
            raise B.BundleError(f"{self.bundle}: no trained {strategy.value} policy; run `edgecloud split train`")
        return Learned(strategy.value, self.policies[strategy.value])


def _with_hedge(grid: ActionSpace, val: np.ndarray, correct: np.ndarray | None, regime: Regime
                ) -> tuple[ActionSpace, np.ndarray, np.ndarray | None]:
    """The action space, validation accuracies and per-sample correctness with the regime's hedge actions:
    each hedge's row is server-only's, as both answer with the teacher when the server answers (a hedge
    the device wins answers with its exit, the device-only row the environment reads then, `Cost.fallback`).
    An early exit the network does not have is a BundleError naming the exits it has."""
    if not regime.hedge:
        return grid, val, correct
    try:
        space = ActionSpace(grid.n_stages, grid.bits, hedge=True, hedge_exits=regime.hedge_exits)
    except ValueError as err:
        raise B.BundleError(str(err)) from err
    hedges = len(space) - len(grid)
    server = grid.server_only()
    val = np.append(val, np.full(hedges, val[server]))
    if correct is not None:
        correct = np.concatenate([correct, np.repeat(correct[server][None], hedges, axis=0)], axis=0)
    return space, val, correct


def read_accuracy(bundle: Path, manifest: B.Manifest) -> dict[str, Any]:
    """The split accuracy report of a bundle (verified against the manifest)."""
    name = manifest.artifacts.get(ARTIFACT_ACCURACY)
    if name is None:
        raise B.BundleError(f"{bundle}: no split accuracy; run `edgecloud split build` first")
    return json.loads(B.read_verified(bundle, manifest, name))


def has_split_planner(manifest: B.Manifest) -> bool:
    """Whether a bundle holds what the live `split` model needs: segments and both profiles (planners are
    optional: without `edgecloud split train` the fixed strategies and forced actions still work)."""
    needed = (ARTIFACT_ACCURACY, P.artifact_name("device"), P.artifact_name("server"))
    return all(name in manifest.artifacts for name in needed)


def remove_artifact(bundle: Path, name: str) -> bool:
    """Drop artifact `name` (its file and its manifest entry), rehash the manifest; whether it was there."""
    bundle = Path(bundle)
    manifest = B.load_manifest(bundle, verify=False)
    rel = manifest.artifacts.get(name)
    if rel is None:
        return False
    artifacts = {k: v for k, v in manifest.artifacts.items() if k != name}
    B.write_manifest(bundle, manifest.model_copy(update={"artifacts": artifacts}))
    (bundle / rel).unlink(missing_ok=True)
    return True


def store_artifact(bundle: Path, name: str, rel: str, data: bytes) -> None:
    """Write `data` to bundle/rel, list it as artifact `name`, rehash the manifest."""
    bundle = Path(bundle)
    (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
    (bundle / rel).write_bytes(data)
    manifest = B.load_manifest(bundle, verify=False)
    B.write_manifest(bundle, manifest.model_copy(update={"artifacts": {**manifest.artifacts, name: rel}}))
