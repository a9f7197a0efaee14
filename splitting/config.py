"""The settings of `edgecloud split train` and `split eval`, one model for both (no torch, no numpy).

    edgecloud split train --bundle B --config split.json   # {"regime": {"deadline_ms": 300}, "train": {"steps": 2000}}
    EDGECLOUD_SPLIT__REGIME__RTT_MS=60 edgecloud split eval --bundle B --traces T --out O

Layers as every command has them (shared/run_config.py): the defaults, then `--config FILE`, then
`EDGECLOUD_SPLIT__...` variables, then flags. The regime's defaults are the bundle's (the regime its
planners were trained for, else the default for its data: splitting.setup.default_regime), exactly as
the flags alone had them. Training records what it trains on in the regime: its uplink folders are
`train.traces`, its downlink folders `regime.downlink_traces` as the layers set them (none: each uplink
file carries both directions), never an earlier training's. `split train` stores the settings it used
in the bundle (artifact split_config, next to the planners); `split eval` writes them to OUT/config.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from shared.run_config import ConfigModel, Layer, Scope, env_layer, file_layer, flag_layer, resolve, value_layer
from splitting.regime import Regime

TRACES = Path("../shared/data/traces")


class PlannerTraining(ConfigModel):
    """How `split train` fits the SAC and DQN planners."""

    traces: tuple[Path, ...] = (TRACES / "fcc", TRACES / "norway-hsdpa")
    """training trace folders of the uplink (a test folder is refused); the regime records them."""
    acc_weight: float = 20.0
    """reward per unit of accuracy."""
    miss_penalty: float = 2.0
    """reward penalty of a missed deadline."""
    steps: int = 30000
    """environment steps per planner."""
    target_entropy_ratio: float = 0.3
    """SAC target entropy as a fraction of log(#valid actions)."""
    gamma: float = 0.5
    """discount of both planners."""
    dqn: bool = True
    """train the DQN planner too (False: SAC only)."""
    seed: int = 0
    """seeds both planners and their environments."""
    greedy_hint: bool = False
    """add greedy's choice to the planners' state (splitting/hint.py)."""
    hint_acc_weight: float | None = None
    """greedy's accuracy weight in that hint (None: acc_weight); needs greedy_hint."""
    select_floor_points: float | None = None
    """keep the SAC checkpoint (every `select_every` steps) fastest on the training traces at expected
    accuracy at least the teacher's less this many points (None: the last one)."""
    select_every: int = Field(default=5000, ge=1)
    """steps between the checkpoints scored for select_floor_points."""

    @model_validator(mode="after")
    def _hint_weight_needs_the_hint(self) -> PlannerTraining:
        if self.hint_acc_weight is not None and not self.greedy_hint:
            raise ValueError("hint_acc_weight is greedy's weight in the greedy hint: give greedy_hint "
                             "(--greedy-hint) too")
        return self

    def sac(self) -> Any:
        """The SAC learner's settings (splitting.sac.SacConfig; torch)."""
        from splitting.sac import SacConfig

        return SacConfig(total_steps=self.steps, target_entropy_ratio=self.target_entropy_ratio, gamma=self.gamma,
                         seed=self.seed)

    def dqn_config(self) -> Any:
        """The DQN baseline's settings (splitting.dqn.DqnConfig; torch), None when it is not trained."""
        from splitting.dqn import DqnConfig

        return DqnConfig(total_steps=self.steps, gamma=self.gamma, seed=self.seed) if self.dqn else None


class SplitEval(ConfigModel):
    """What `split eval` replays, and how a live run (`live`) emulates the device."""

    traces: Path | None = None
    """folder of uplink trace files to evaluate on (required)."""
    downlink_traces: Path | None = None
    """downlink trace folder, paired by file name (None: each uplink file carries both directions)."""
    strategies: list[str] | None = None
    """strategies to run (None: every one the bundle has)."""
    duration_s: float | None = None
    """replay only the first seconds of each trace (None: all of it; a live run: 60)."""
    max_traces: int | None = None
    """use only the first N traces, by name (None: all)."""
    live: bool = False
    """run through the real services over the link testbed (root; deploy/testbed/README.md)."""
    device_cpus: str = "0"
    """live: cores of the emulated device (the edge)."""
    cpu_fraction: float | None = None
    """live: cap the device with a CFS quota instead (needs root; None: the compute-then-hold emulation)."""
    device_slowdown: float | None = None
    """live: hold every device segment K times its CPU time (None: the k of the bundle's device profile)."""
    cloud_cpus: str = "1"
    """live: cores of the server."""
    data_dir: Path | None = None
    """live: dataset folder (not needed for digits)."""
    kill_at_s: float | None = None
    """live: SIGKILL the server this far into every run (no request may be lost)."""


class SplitConfig(ConfigModel):
    """Everything `split train` and `split eval` use."""

    bundle: Path
    """bundle with split segments and both profiles (eval: and trained planners, for sac and dqn)."""
    regime: Regime = Field(default_factory=Regime)
    """request stream, deadline, link and payload (defaults: the bundle's)."""
    train: PlannerTraining = Field(default_factory=PlannerTraining)
    """`split train`: the planners' training."""
    eval: SplitEval = Field(default_factory=SplitEval)
    """`split eval`: what is replayed."""


TRAIN_FLAGS: dict[str, str] = {
    "bundle": "bundle", "train.traces": "traces", "train.acc_weight": "acc_weight",
    "train.miss_penalty": "miss_penalty", "train.steps": "steps", "train.target_entropy_ratio": "target_entropy_ratio",
    "train.gamma": "gamma", "train.dqn": "no_dqn", "train.seed": "seed", "train.greedy_hint": "greedy_hint",
    "train.hint_acc_weight": "hint_acc_weight", "train.select_floor_points": "select_floor_points",
    "train.select_every": "select_every",
    **{f"regime.{name}": name for name in ("period_s", "deadline_ms", "rtt_ms", "request_overhead_bytes",
                                           "response_bytes", "prior_mbit_s", "server_payload", "downlink_traces",
                                           "hedge", "hedge_exits")},
}
"""`split train`'s flags: the setting each sets (dotted path -> argparse dest)."""
EVAL_FLAGS: dict[str, str] = {
    "bundle": "bundle", "regime.deadline_ms": "deadline_ms",
    **{f"eval.{name}": name for name in ("traces", "downlink_traces", "strategies", "duration_s", "max_traces", "live",
                                         "device_cpus", "cpu_fraction", "device_slowdown", "cloud_cpus", "data_dir",
                                         "kill_at_s")},
}
"""`split eval`'s flags."""


def split_layers(args: Any, flags: dict[str, str]) -> list[Layer]:
    """--config, the EDGECLOUD_SPLIT__... variables and the flags given, lowest first."""
    return [file_layer(args.config), env_layer(Scope.SPLIT),
            flag_layer(args, flags, convert={"train.dqn": lambda no_dqn: not no_dqn})]


def resolve_split(layers: list[Layer], *, bundle_regime: Any) -> SplitConfig:
    """The settings: the layers over the defaults, whose regime is `bundle_regime(bundle)`, the bundle's own."""
    bundle = resolve(SplitConfig, Scope.SPLIT, layers).bundle  # the bundle the layers name, to read its regime
    base = value_layer({"regime": bundle_regime(bundle).to_json()}, f"{bundle}'s regime")
    return resolve(SplitConfig, Scope.SPLIT, [base, *layers])
