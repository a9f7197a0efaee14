"""Everything a planner needs from a bundle, loaded once (numpy only: the live device uses it too).

`PlannerSpec` (artifact `split_planner`) records the conditions the planners were trained for: the
link model, the evaluation deadline and RTT, the reward weights, the state layout and the training
traces' mean bandwidth (Neurosurgeon's). `SplitSetup.load` verifies and reads the plan, the profiles,
the accuracy table, the per-sample correctness and the trained policies; `planner(name)` builds any
strategy of `STRATEGIES` (the oracle only exists inside the environment).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared import bundle as B
from splitting import profile as P
from splitting.actions import ActionSpace
from splitting.baselines import DeviceOnly, Edgent, Learned, Neurosurgeon, Oracle, Planner, ServerOnly
from splitting.latency import CostModel, LinkModel
from splitting.policy import MlpPolicy
from splitting.segments import SplitPlan
from splitting.state import StateConfig

SPLIT_DIR = "split"
ACCURACY_JSON = f"{SPLIT_DIR}/accuracy.json"
CORRECT_NPZ = f"{SPLIT_DIR}/correct_test.npz"
ARTIFACT_ACCURACY = "split_accuracy"
ARTIFACT_CORRECT = "split_correct"
ARTIFACT_SPEC = "split_planner"
SPEC_JSON = f"{SPLIT_DIR}/planner.json"
STRATEGIES: tuple[str, ...] = ("sac", "dqn", "device_only", "server_only", "neurosurgeon", "edgent", "oracle")
LEARNED: tuple[str, ...] = ("sac", "dqn")


def policy_artifact(name: str) -> str:
    return f"split_policy_{name}"


@dataclass
class PlannerSpec:
    """The conditions the planners were trained for, stored beside their weights."""

    link: LinkModel = field(default_factory=LinkModel)
    """RTT and per-request overheads of the modelled link"""
    deadline_ms: float = 100.0
    """the evaluation deadline"""
    period_s: float = 0.25
    """time between requests"""
    acc_weight: float = 20.0
    """reward weight of validation accuracy"""
    miss_penalty: float = 2.0
    """reward penalty of a missed deadline"""
    state: StateConfig = field(default_factory=StateConfig)
    """observation layout"""
    train_mean_mbit_s: float = 1.0
    """time-weighted mean throughput of the training traces (Neurosurgeon plans for it)"""
    train_traces: list[str] = field(default_factory=list)
    """folders the planners were trained on"""
    training: dict[str, Any] = field(default_factory=dict)
    """configs and learning curves of the trained planners"""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PlannerSpec:
        raw = dict(raw)
        raw["link"] = LinkModel(**raw.get("link", {}))
        raw["state"] = StateConfig(**raw.get("state", {}))
        return cls(**raw)


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

    @classmethod
    def load(cls, bundle: Path, *, need_spec: bool = True) -> SplitSetup:
        bundle = Path(bundle)
        manifest = B.load_manifest(bundle)
        plan = SplitPlan.from_manifest(manifest)
        space = ActionSpace(plan.n_stages, plan.bits)
        report = read_accuracy(bundle, manifest)
        val = np.zeros(len(space))
        for row in report["actions"]:
            val[row["index"]] = row["val_accuracy"]
        correct = None
        if ARTIFACT_CORRECT in manifest.artifacts:
            data = B.read_verified(bundle, manifest, manifest.artifacts[ARTIFACT_CORRECT])
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                correct = z["correct"]
        spec = PlannerSpec()
        if ARTIFACT_SPEC in manifest.artifacts:
            raw = B.read_verified(bundle, manifest, manifest.artifacts[ARTIFACT_SPEC])
            spec = PlannerSpec.from_json(json.loads(raw))
        elif need_spec:
            raise B.BundleError(f"{bundle}: no trained planners; run `edgecloud split train --bundle {bundle}`")
        policies = {name: MlpPolicy.from_bytes(B.read_verified(bundle, manifest, manifest.artifacts[art]))
                    for name in LEARNED if (art := policy_artifact(name)) in manifest.artifacts}
        return cls(bundle=bundle, manifest=manifest, plan=plan, space=space,
                   device=P.load(bundle, manifest, "device"), server=P.load(bundle, manifest, "server"),
                   val_accuracy=val, test_correct=correct, spec=spec,
                   policies=policies)

    def cost_model(self, link: LinkModel | None = None) -> CostModel:
        return CostModel(plan=self.plan, space=self.space, device=self.device, server=self.server,
                         link=link or self.spec.link)

    def planner(self, name: str, model: CostModel | None = None) -> Planner:
        model = model or self.cost_model()
        if name == "device_only":
            return DeviceOnly(model)
        if name == "server_only":
            return ServerOnly(model)
        if name == "neurosurgeon":
            return Neurosurgeon(model, mean_mbit_s=self.spec.train_mean_mbit_s, rtt_ms=self.spec.link.rtt_ms)
        if name == "edgent":
            return Edgent(model, self.val_accuracy, prior_mbit_s=self.spec.state.prior_mbit_s)
        if name == "oracle":
            return Oracle()
        if name in LEARNED:
            if name not in self.policies:
                raise B.BundleError(f"{self.bundle}: no trained {name} policy; run `edgecloud split train`")
            return Learned(name, self.policies[name])
        raise ValueError(f"unknown strategy {name!r}; choose from {list(STRATEGIES)}")


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


def store_artifact(bundle: Path, name: str, rel: str, data: bytes) -> None:
    """Write `data` to bundle/rel, list it as artifact `name`, rehash the manifest."""
    bundle = Path(bundle)
    (bundle / rel).parent.mkdir(parents=True, exist_ok=True)
    (bundle / rel).write_bytes(data)
    manifest = B.load_manifest(bundle, verify=False)
    B.write_manifest(bundle, manifest.model_copy(update={"artifacts": {**manifest.artifacts, name: rel}}))
