"""What an orchestration run is configured by, `sim` or `live`, declared once (pydantic, numpy-free).

    spec = SimSpec(bundle=Path("artifacts/bundle"), users=8, traces=Path(".../cellular-up-test"),
                   requirements=RequirementMix(levels=(0.80, 0.88, 0.92)))

`RunSpec` holds what both run: the bundle, the users and their traces, the requirement, the scenario
and its arrivals, the policies and the links (orchestration.links.NetworkConfig). `SimSpec` adds the
requirement mix, deadlines, seeds and the tiers' machines (orchestration.hardware.TierHardware);
`LiveSpec` the rounds, the dataset and the fault injection of real processes. `edgecloud orchestrate`
reads either from its layers (shared/run_config.py: the defaults here, `--config FILE`,
`EDGECLOUD_ORCHESTRATE__...` variables, flags) and writes it to OUT/config.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from orchestration.hardware import TierHardware
from orchestration.links import NetworkConfig
from orchestration.policies import BASELINES, LEARNERS, STATIC_MAP
from orchestration.scenario import SCENARIOS, RequirementMix
from shared.run_config import ConfigModel


class RunSpec(ConfigModel):
    """What every orchestration run has: who sends what over which links, and which policies decide."""

    bundle: Path
    """bundle with a variant family (`edgecloud variants`)."""
    users: int
    """end devices, each with its own orchestrator."""
    traces: Path
    """folder of uplink traces, one per device in turn (tune on cellular-up/, report on cellular-up-test/)."""
    accuracy_req: float = 0.0
    """every request's accuracy requirement in [0, 1] (SimSpec: when `requirements` is None)."""
    scenario: str = "change"
    """steady, change (users join at 1/3, bandwidth drops at 2/3) or churn (users join and leave)."""
    duration_s: float = 90.0
    """seconds of arrivals per run."""
    rate_per_user: float = 4.0
    """requests per second per active device."""
    arrivals: str = "poisson"
    """poisson or bursty."""
    policies: list[str] = Field(default_factory=lambda: [*LEARNERS, *BASELINES, "static", STATIC_MAP])
    """policy names; `static` expands to every (tier, variant) pair meeting the lowest level, `static-map`
    to the best pair per level (found on the static pairs' runs)."""
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    """the links between the tiers."""

    @model_validator(mode="after")
    def _check_run(self) -> Self:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {sorted(SCENARIOS)}, got {self.scenario!r}")
        if not 0.0 <= self.accuracy_req <= 1.0:
            raise ValueError(f"accuracy_req must be in [0, 1], got {self.accuracy_req}")
        return self


class QLearningSettings(ConfigModel):
    """The tabular learner's exploration and learning settings, for tuning it in simulation on training
    traces: orchestration.learners.QConfig's fields, with its defaults (a test keeps them equal; not
    imported here, so that this module stays numpy-free)."""

    alpha: float = 0.2
    """learning rate (constant)."""
    gamma: float = 0.0
    """discount of the next state's value."""
    epsilon_start: float = 0.3
    """exploration rate after a (re)start."""
    epsilon_min: float = 0.02
    """exploration floor."""
    epsilon_decay_steps: float = 20.0
    """decisions over which exploration decays."""
    explore_within: float | None = 2.0
    """explore only actions predicted within this factor of the best (None: every action)."""
    model_prior: bool = True
    """start untried actions from the latency model's prediction."""

    @model_validator(mode="after")
    def _check_q(self) -> Self:
        from orchestration.learners import QConfig

        QConfig(**self.model_dump())  # the learner's own checks, at start
        return self


class SimSpec(RunSpec):
    """What `edgecloud orchestrate sim` runs."""

    requirements: RequirementMix | None = None
    """the requirement levels requests carry, switching per user (None: every request `accuracy_req`)."""
    deadline_ms: float | None = 1000.0
    """each request's deadline (orchestration.scenario.Scenario.deadline_ms: why 1000 ms)."""
    seeds: int = 3
    """independent runs per policy (trace offsets, arrivals, noise); their requests are pooled."""
    hardware: TierHardware = Field(default_factory=TierHardware)
    """the tiers' machines: the emulated Pi 4, the edge server's cores, the cloud's cores and speed."""
    request_bytes: int | None = None
    """bytes of one request on the wire instead of the profile's (an input-size sweep: a larger image
    costs more to send, nothing else changes)."""
    qlearning: QLearningSettings = Field(default_factory=QLearningSettings)
    """the `qlearning` policy's settings (simulation only: a live device's learner uses the defaults)."""

    @model_validator(mode="after")
    def _check_sim(self) -> Self:
        if self.request_bytes is not None and self.request_bytes < 1:
            raise ValueError(f"request_bytes must be >= 1, got {self.request_bytes}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        return self

    @property
    def mix(self) -> RequirementMix:
        return self.requirements if self.requirements is not None else RequirementMix(levels=(self.accuracy_req,))


class LiveSpec(RunSpec):
    """What `edgecloud orchestrate live` runs."""

    accuracy_req: float
    """every device's accuracy requirement in [0, 1]."""
    out: Path
    """folder of report.json and the services' logs."""
    scenario: str = "steady"
    """steady, or change (users join at 1/3; the bandwidth drop is not emulated live)."""
    duration_s: float = 60.0
    """seconds of arrivals per round."""
    policies: list[str] = Field(default_factory=lambda: [*LEARNERS, "greedy", "all-edge"])
    """policy names (no `static` expansion live)."""
    rounds: int = 1
    """rounds per policy, interleaved (policy A, B, ..., A, B, ...)."""
    data_dir: Path | None = None
    """dataset folder for the test samples (not needed for digits)."""
    kill_edge_at_s: float | None = None
    """kill the edge server this many seconds into each round (fault test)."""
    end_cpu_share: float | None = None
    """the devices' share of a core (1/k), set outright (the simulator's --end-cpu-share)."""
    calibrate_device: bool = True
    """without `end_cpu_share`: calibrate k on this host at the start, as the device runs its passes
    (orchestration.live.calibrate_device), so that it emulates the published Pi 4 the simulator does
    (False: the profile's own end-device share)."""
    replay_traces: bool = True
    """each device's links replay its trace from `traces` as the simulator's same seed does (False: the
    RTTs at the loopback's rate, one shared proxy per server)."""
