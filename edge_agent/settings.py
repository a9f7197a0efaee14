"""Edge agent settings: environment variables `EDGECLOUD_*`, overridden by CLI flags, validated at start."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AnyHttpUrl, Field, SecretStr, model_validator

from serving.settings import BundleDir, ExistingFile, ServerSettings
from shared.settings import read_token


class EdgeSettings(ServerSettings):
    """Everything the edge agent needs; a bad value stops start-up with a message naming it."""

    bundle: BundleDir = Field(description="bundle directory written by `edgecloud build` (student.onnx, offloader.pkl)")
    cloud_url: AnyHttpUrl | None = Field(
        default=None, description="base URL of an OIP server hosting the teacher; None = edge-only")
    cloud_model: str = Field(default="teacher", min_length=1, description="model name on the cloud server")
    cloud_binary: bool = Field(
        default=True,
        description="send pixels with the binary-tensor extension (Triton, KServe, our cloud); false sends "
                    "JSON, for servers without the extension such as MLServer")
    token: SecretStr | None = Field(default=None, description="bearer token sent to the cloud, if it needs one")
    token_file: ExistingFile | None = Field(default=None, description="file whose first line is the bearer token")
    ca_bundle: ExistingFile | None = Field(default=None, description="PEM file of CAs trusted for an HTTPS cloud")
    connect_timeout_s: float = Field(default=1.0, gt=0.0, le=60.0, description="TCP/TLS connect timeout")
    read_timeout_s: float = Field(default=2.0, gt=0.0, le=600.0, description="longest wait for the cloud's answer")
    deadline_ms: float = Field(
        default=3000.0, gt=0.0, le=600_000.0,
        description="end-to-end budget of one offload, retries included; sent as X-Deadline-Ms")
    retries: int = Field(default=2, ge=0, le=10, description="extra tries after a connect error or a 503")
    backoff_s: float = Field(
        default=0.05, ge=0.0, le=10.0, description="first retry delay; doubles each retry, with full jitter")
    breaker_failures: int = Field(
        default=5, ge=1, description="consecutive failed offloads that open the circuit breaker")
    breaker_reset_s: float = Field(
        default=5.0, gt=0.0, description="how long an open breaker refuses before it lets one probe through")
    fusion: bool = Field(
        default=False,
        description="answer offloaded samples by fusing the teacher's and the student's calibrated probabilities "
                    "(the bundle's operating_point.fusion, tuned on validation; beyond the paper), labelled "
                    "`fused`; off answers them with the teacher's label, the paper's rule")
    threshold: float | None = Field(
        default=None, allow_inf_nan=False, description="override of the bundle's operating-point threshold")
    batch_size: int = Field(default=64, ge=1, le=65536, description="samples per student forward pass (`edge run`)")
    threads: int = Field(default=1, ge=1, le=256, description="onnxruntime intra-op threads")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port `edge serve` listens on")
    max_queue_size: int = Field(
        default=8192, ge=1, le=10_000_000,
        description="most samples waiting for the student at once (`edge serve`); beyond it requests get 503")
    max_inflight: int = Field(default=8, ge=1, le=1024, description="most offload requests in flight at once")
    max_merged_samples: int = Field(
        default=1024, ge=1, le=65536,
        description="most samples of concurrent requests merged into one student pass (`edge serve`); a larger "
                    "single request runs in chunks of this size")
    ratio_window: int = Field(
        default=1000, ge=1, le=10_000_000, description="samples in the sliding window of the offload-ratio gauge")
    edge_server_url: AnyHttpUrl | None = Field(
        default=None,
        description="base URL of a shared edge server (a server of the runtime hosting variants); with it the "
                    "agent also hosts model `orchestrator`, which picks end, edge server or cloud per request")
    policy: str = Field(default="qlearning", min_length=1,
                        description="the orchestrator's policy: qlearning, linucb, greedy, all-end, all-edge, "
                                    "all-cloud or static:TIER:VARIANT; any of them with +hedge (for example "
                                    "qlearning+hedge) also runs the device's own variant at each offload and "
                                    "answers with whichever comes first")
    accuracy_req: float = Field(default=0.0, ge=0.0, le=1.0,
                                description="accuracy every orchestrated request requires, in [0, 1]")
    orchestrator_timeout_ms: float = Field(
        default=1000.0, gt=0.0, le=600_000.0,
        description="budget of one orchestrated request to a server; past it the device's own variant answers")
    device_slowdown: float = Field(
        default=1.0, ge=1.0, le=1000.0,
        description="emulate a slower end device (a Pi 4: k from `edgecloud profile --pi4`) for the split model's "
                    "segments and the orchestrator's own variants: the compute thread is held this many times as "
                    "long as each pass took (1 = this machine's speed)")
    orchestrator_seed: int = Field(default=0, ge=0, description="seeds the orchestrator's exploration")
    radio_trace: ExistingFile | None = Field(
        default=None,
        description="the device's own uplink trace (a trace file, as shared/traces.py reads it), for an emulated "
                    "radio report: the orchestrator's state then has its uplink's recent rate and stalls, read off "
                    "the trace its link replays (orchestration.links.Radio), as a modem reports its own link; "
                    "without it those features are unknown")
    radio_trace_start_unix: float | None = Field(
        default=None, description="wall-clock time (Unix seconds) of the radio trace's time 0; unset: when the "
                                  "agent starts")

    @model_validator(mode="after")
    def _edge_cross_checks(self) -> EdgeSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set either token or token_file, not both")
        if self.radio_trace_start_unix is not None and self.radio_trace is None:
            raise ValueError("radio_trace_start_unix is set but radio_trace is not")
        if self.ca_bundle is not None and (self.cloud_url is None or self.cloud_url.scheme != "https"):
            raise ValueError(f"ca_bundle {self.ca_bundle} is set but cloud_url {self.cloud_url} is not https://")
        return self

    @property
    def base_edge_server_url(self) -> str | None:
        """`edge_server_url` without a trailing slash."""
        return None if self.edge_server_url is None else str(self.edge_server_url).rstrip("/")

    @property
    def base_cloud_url(self) -> str | None:
        """`cloud_url` without a trailing slash (pydantic adds one to bare hosts)."""
        return None if self.cloud_url is None else str(self.cloud_url).rstrip("/")

    def bearer_token(self) -> str | None:
        """The token from `token` or `token_file` (re-read each call, so a rotated file is picked up)."""
        return read_token(self.token, self.token_file)


@lru_cache
def get_settings() -> EdgeSettings:
    """Settings from the environment, read once; tests and the CLI pass their own to create_app."""
    return EdgeSettings()  # type: ignore[call-arg]  # bundle comes from EDGECLOUD_BUNDLE
