"""The one client to a server of the next tier: OIP infer requests with a deadline, under a failure policy.

One shared keep-alive `httpx.AsyncClient` per server posts to `{base_url}/v2/models/{model}/infer`.
It works against any Open Inference Protocol server (ours, Triton, KServe, MLServer): the reply is
parsed with `shared.oip.decode_response`, JSON or binary, and read by output name (`label`, else the
argmax of `logits`), with the server's `X-Edgecloud-Load` report when it sends one. Every way a call
can fail ends in an `OffloadError` whose `reason` is one of `FallbackReason`; the caller then answers
on its own. Unlike Sedna's client, the deadline we compute is actually sent (`X-Deadline-Ms`) and
enforced on our side too.

How a client fails is its `ClientPolicy`, one typed value: the default budget, connect and read
timeouts, how many retries (after a connect error or a 503) with what backoff, a circuit breaker or
none, how many calls in flight, binary or JSON tensors. Its users:

- the edge agent's cloud client (`CloudClient(settings, ...)`): the policy from EdgeSettings
  (`ClientPolicy.from_settings`), bounded retries and a breaker; `infer` sends the sample as the edge
  got it, an encoded image (BYTES: its file's bytes) or raw pixels (UINT8), plus a small JSON header,
  to the cloud teacher;
- the split model (edge_agent/split.py), through the same client: `infer_model` sends any tensors
  (and request parameters) to any model of the next tier, e.g. packed features to a server's `tail_p`;
- the orchestrator (orchestration/agent.py), one client per remote tier with its own policy: no
  retry and no breaker (`orchestration.agent.offload_policy`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any

import httpx
import numpy as np

from edge_agent.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from edge_agent.settings import EdgeSettings
from shared.names import FallbackReason
from shared.oip import DEADLINE_HEADER, KEEPALIVE_S, ProtocolError, decode_response, encode_request, parse_load

__all__ = ["STATUS_REASONS", "ClientPolicy", "CloudAnswer", "CloudClient", "FallbackReason", "OffloadError",
           "wire_pixels"]

log = logging.getLogger(__name__)

STATUS_REASONS: Mapping[int, FallbackReason] = MappingProxyType({
    503: FallbackReason.OVERLOADED, 429: FallbackReason.OVERLOADED, 401: FallbackReason.UNAUTHORIZED,
    403: FallbackReason.UNAUTHORIZED, 408: FallbackReason.TIMEOUT, 504: FallbackReason.TIMEOUT})
"""Why a call failed, by the server's status; any other non-200 status is a bad response."""

RETRY_STATUS = 503
"""The one status worth another try (within the policy's retries): the server is busy right now."""


@dataclass(frozen=True, kw_only=True)
class ClientPolicy:
    """How a client to the next tier behaves when the server is slow, down or says no."""

    deadline_ms: float
    """A call's whole budget when its caller names none, retries included; sent as X-Deadline-Ms (> 0)."""
    connect_timeout_s: float
    """TCP/TLS connect timeout of one try (> 0)."""
    read_timeout_s: float
    """Longest wait for the server's answer to one try (> 0)."""
    retries: int
    """Extra tries after a connect error or a 503 (>= 0); other failures are never retried."""
    backoff_s: float
    """First retry delay; doubles each retry, with full jitter (>= 0)."""
    breaker: BreakerPolicy | None
    """The circuit breaker's settings; None: no breaker, every call goes out."""
    max_inflight: int
    """Most calls in flight at once (>= 1); a call waiting for a slot spends its own budget."""
    binary: bool
    """Tensors with the binary-tensor extension both ways; False sends and asks for JSON (MLServer)."""
    status_reasons: Mapping[int, FallbackReason] = field(default_factory=lambda: STATUS_REASONS, hash=False)
    """Why a call failed, by the server's non-200 status; a status not in it is a bad response."""

    def __post_init__(self) -> None:
        for name in ("deadline_ms", "connect_timeout_s", "read_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ClientPolicy.{name} must be > 0, got {getattr(self, name)}")
        if self.retries < 0:
            raise ValueError(f"ClientPolicy.retries must be >= 0, got {self.retries}")
        if not self.backoff_s >= 0:
            raise ValueError(f"ClientPolicy.backoff_s must be >= 0, got {self.backoff_s}")
        if self.max_inflight < 1:
            raise ValueError(f"ClientPolicy.max_inflight must be >= 1, got {self.max_inflight}")

    @classmethod
    def from_settings(cls, settings: EdgeSettings) -> ClientPolicy:
        """The edge agent's policy: bounded retries with backoff, and a breaker (its settings' defaults)."""
        return cls(deadline_ms=settings.deadline_ms, connect_timeout_s=settings.connect_timeout_s,
                   read_timeout_s=settings.read_timeout_s, retries=settings.retries, backoff_s=settings.backoff_s,
                   breaker=BreakerPolicy(failures=settings.breaker_failures, reset_s=settings.breaker_reset_s),
                   max_inflight=settings.max_inflight, binary=settings.cloud_binary)


class OffloadError(Exception):
    """An offload that produced no valid answer from the next tier.

    `tried` is False when no request was put on the wire (open breaker, deadline spent waiting for a
    slot); `bytes_sent` counts request bodies that left the device.
    """

    def __init__(self, reason: FallbackReason, message: str, *, tried: bool, bytes_sent: int = 0) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.tried = tried
        self.bytes_sent = bytes_sent


@dataclass(frozen=True)
class CloudAnswer:
    labels: np.ndarray  # (N,) int64, one per offloaded sample, in order
    logits: np.ndarray | None  # (N, K) float32 teacher logits when the reply has them (fusion needs them)
    rtt_s: float        # round trip of the request that succeeded
    tries: int          # requests sent, retries included
    bytes_sent: int     # request body bytes sent, retries included
    bytes_received: int = 0  # response body bytes of the request that succeeded
    load: tuple[int, float, float] | None = None  # the server's (depth, service_ms, server_ms); None: no report


@dataclass(frozen=True)
class _Request:
    """One infer call: where, what, and how many samples the answer must label."""

    url: str
    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any] | None
    outputs: Sequence[str]
    n: int


class _Retryable(Exception):
    """Internal: a failure worth another try (connect error, 503)."""

    def __init__(self, error: OffloadError, retry_after_s: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after_s = retry_after_s


def _ssl_context(settings: EdgeSettings, base_url: str) -> ssl.SSLContext | bool:
    """The settings' CA bundle for their cloud (what `ca_bundle` is for); the system's CAs otherwise."""
    if settings.ca_bundle is None or base_url != settings.base_cloud_url:
        return True
    return ssl.create_default_context(cafile=str(settings.ca_bundle))


def wire_pixels(x: np.ndarray) -> np.ndarray:
    """A batch as sent: encoded images (BYTES) and UINT8 as they are; float32 batches holding whole
    values in [0, 255] go as UINT8 (4x fewer bytes)."""
    if x.dtype in (np.uint8, object):
        return x
    if x.size and np.all((x >= 0) & (x <= 255)) and np.array_equal(x, np.rint(x)):
        return x.astype(np.uint8)
    return x


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None  # an HTTP date; rare from inference servers, so back off on our own schedule


class CloudClient:
    """Calls one server of the next tier under a ClientPolicy; use as `async with CloudClient(settings, ...)`.

    `settings` are the device's: its token, its cloud (`cloud_url`, `cloud_model`, `ca_bundle`) and
    the edge's policy. `base_url` names another server (default: the cloud), `policy` another policy
    (default: `ClientPolicy.from_settings(settings)`). `clock` times deadlines and the breaker.
    """

    def __init__(self, settings: EdgeSettings, *, num_classes: int, base_url: str | None = None,
                 policy: ClientPolicy | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 breaker: CircuitBreaker | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        base_url = settings.base_cloud_url if base_url is None else base_url.rstrip("/")
        if base_url is None:
            raise ValueError("CloudClient needs settings.cloud_url or a base_url; without one the edge runs edge-only")
        self.settings = settings
        self.policy = ClientPolicy.from_settings(settings) if policy is None else policy
        self.num_classes = num_classes
        self.base_url = base_url
        self._clock = clock
        if breaker is None and self.policy.breaker is not None:
            breaker = CircuitBreaker.from_policy(self.policy.breaker, clock=clock)
        self.breaker = breaker
        token = settings.bearer_token()
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._slots = asyncio.Semaphore(self.policy.max_inflight)
        self._rng = random.Random()
        p = self.policy
        limits = httpx.Limits(max_connections=p.max_inflight, max_keepalive_connections=p.max_inflight,
                              keepalive_expiry=KEEPALIVE_S)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(p.read_timeout_s, connect=p.connect_timeout_s),
            limits=limits, verify=_ssl_context(settings, base_url), transport=transport)
        self._last_sent = clock()  # when a request last went out (keep_warm's idle clock)

    @property
    def circuit_open(self) -> bool:
        """True while the breaker refuses every call: the server is known to be down (never without one)."""
        return self.breaker is not None and self.breaker.state is BreakerState.OPEN

    async def __aenter__(self) -> CloudClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def keep_warm(self, *, idle_s: float = KEEPALIVE_S / 2) -> None:
        """Keep a connection to the server open until cancelled: a readiness request (OIP
        `/v2/health/ready`) whenever nothing went out for `idle_s`. Without it a device that answered on its
        own for longer than the keep-alive pays a TCP (and TLS) handshake on its next offload, one RTT or
        more on the critical path, and a planner that reads its last transfer (Edgent) plans from that
        one slow sample. Its failures are not offloads: they touch neither the breaker nor the metrics."""
        while True:
            wait = idle_s - (self._clock() - self._last_sent)
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._last_sent = self._clock()
            try:
                await self._http.get(f"{self.base_url}/v2/health/ready", headers=self._auth,
                                     timeout=self.policy.connect_timeout_s + self.policy.read_timeout_s)
            except httpx.HTTPError as err:
                log.debug("keep-warm request to %s failed: %s", self.base_url, err)

    async def infer(self, x: np.ndarray) -> CloudAnswer:
        """Labels for a batch ((N, C, H, W) raw pixels or (N,) encoded images) from the teacher, or
        OffloadError with a reason."""
        return await self.infer_model(self.settings.cloud_model, {"input": wire_pixels(x)}, n=len(x))

    async def infer_model(self, model: str, inputs: dict[str, np.ndarray], *, n: int,
                          parameters: dict[str, Any] | None = None, outputs: Sequence[str] = (),
                          budget_s: float | None = None) -> CloudAnswer:
        """Labels for `n` samples from `model` given its input tensors and request parameters.

        `outputs` names the outputs asked for (all when empty). `budget_s` replaces the policy's
        `deadline_ms` as this call's whole budget (retries included).
        """
        budget = self.policy.deadline_ms / 1000.0 if budget_s is None else max(0.0, budget_s)
        deadline = self._clock() + budget
        request = _Request(url=f"{self.base_url}/v2/models/{model}/infer", inputs=inputs, parameters=parameters,
                           outputs=tuple(outputs), n=n)
        breaker = self.breaker
        if breaker is None:
            return await self._infer_in_slot(request, deadline)
        if not breaker.allow():
            raise OffloadError(FallbackReason.CIRCUIT_OPEN, f"breaker open after {breaker.failures_to_open} "
                               "consecutive failures; no request sent", tried=False)
        try:
            answer = await self._infer_in_slot(request, deadline)
        except OffloadError as err:
            if err.tried:
                breaker.record_failure()
            else:
                breaker.abandon()  # nothing reached the server, so this says nothing about it
            raise
        except BaseException:
            breaker.abandon()  # cancelled: the probe (if this was one) never reports
            raise
        breaker.record_success()
        return answer

    async def _infer_in_slot(self, request: _Request, deadline: float) -> CloudAnswer:
        try:
            async with asyncio.timeout(max(0.0, deadline - self._clock())):
                await self._slots.acquire()
        except TimeoutError:
            raise OffloadError(FallbackReason.TIMEOUT, f"deadline passed waiting for one of "
                               f"{self.policy.max_inflight} slots to {self.base_url}", tried=False) from None
        try:
            return await self._send_with_retries(request, deadline)
        finally:
            self._slots.release()

    async def _send_with_retries(self, request: _Request, deadline: float) -> CloudAnswer:
        p = self.policy
        body, headers = encode_request(request.inputs, binary=p.binary, outputs=request.outputs,
                                       binary_outputs=p.binary, parameters=request.parameters)
        headers.update(self._auth)
        tries, bytes_sent = 0, 0
        while True:
            tries += 1
            try:
                (labels, logits), rtt, response = await self._send_once(request.url, body, headers, deadline,
                                                                        n=request.n)
                return CloudAnswer(labels=labels, logits=logits, rtt_s=rtt, tries=tries,
                                   bytes_sent=bytes_sent + len(body), bytes_received=len(response.content),
                                   load=parse_load(response.headers))
            except _Retryable as retry:
                bytes_sent += retry.error.bytes_sent
                delay = p.backoff_s * 2 ** (tries - 1) * self._rng.random()  # full jitter
                if retry.retry_after_s is not None:
                    delay = max(delay, retry.retry_after_s)
                if tries > p.retries or self._clock() + delay >= deadline:
                    raise OffloadError(retry.error.reason, f"{retry.error} (after {tries} tries)", tried=True,
                                       bytes_sent=bytes_sent) from None
                log.debug("try %d to %s failed (%s); retrying in %.3f s", tries, self.base_url, retry.error, delay)
                await asyncio.sleep(delay)
            except OffloadError as err:
                err.bytes_sent += bytes_sent
                raise

    async def _send_once(self, url: str, body: bytes, headers: dict[str, str], deadline: float, *, n: int
                         ) -> tuple[tuple[np.ndarray, np.ndarray | None], float, httpx.Response]:
        """One POST within what is left of the deadline: ((labels, logits or None), round-trip seconds,
        the response)."""
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise OffloadError(FallbackReason.TIMEOUT, "deadline passed before the request could be sent",
                               tried=True)
        p = self.policy
        timeout = httpx.Timeout(connect=min(p.connect_timeout_s, remaining), read=min(p.read_timeout_s, remaining),
                                write=min(p.read_timeout_s, remaining), pool=remaining)
        # What is left of the budget, so the server drops work its caller has given up on (serving/batcher.py).
        sent_headers = {**headers, DEADLINE_HEADER: f"{remaining * 1000.0:.1f}"}
        started = time.monotonic()
        self._last_sent = self._clock()
        try:
            # asyncio.timeout is the hard stop: httpx's timeouts are per phase, the deadline is overall.
            async with asyncio.timeout(remaining):
                response = await self._http.post(url, content=body, headers=sent_headers, timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as err:
            raise _Retryable(OffloadError(FallbackReason.UNREACHABLE, f"cannot connect to {url}: "
                                          f"{type(err).__name__} {err}", tried=True)) from None
        except (httpx.TimeoutException, TimeoutError):
            raise OffloadError(FallbackReason.TIMEOUT, f"no answer from {url} within "
                               f"{remaining * 1000.0:.0f} ms", tried=True, bytes_sent=len(body)) from None
        except httpx.DecodingError as err:  # e.g. a Content-Encoding the body does not match
            raise OffloadError(FallbackReason.BAD_RESPONSE, f"{url}: undecodable body ({err})", tried=True,
                               bytes_sent=len(body)) from None
        except httpx.RequestError as err:  # connection reset or closed mid-request: the cloud went away
            raise OffloadError(FallbackReason.UNREACHABLE, f"connection to {url} lost: "
                               f"{type(err).__name__} {err}", tried=True, bytes_sent=len(body)) from None
        rtt = time.monotonic() - started
        self._check_status(response, len(body), url)
        return self._outputs(response, n, len(body), url), rtt, response

    def _check_status(self, response: httpx.Response, body_len: int, url: str) -> None:
        code = response.status_code
        if code == 200:
            return
        detail = f"{url} answered {code}: {response.text[:200]!r}"
        error = OffloadError(self.policy.status_reasons.get(code, FallbackReason.BAD_RESPONSE), detail, tried=True,
                             bytes_sent=body_len)
        if code == RETRY_STATUS:
            raise _Retryable(error, retry_after_s=_retry_after(response))
        raise error

    def _outputs(self, response: httpx.Response, n: int, body_len: int, url: str
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """(n,) int64 labels from `label`, else argmax of `logits`; anything else is a bad response.

        Also the (n, K) `logits` when the reply has them (our cloud and Triton send both), for fusion.
        """

        def bad(problem: str) -> OffloadError:
            return OffloadError(FallbackReason.BAD_RESPONSE, f"{url}: {problem}", tried=True,
                                bytes_sent=body_len)

        try:
            _, outputs = decode_response(response.content, response.headers)
        except ProtocolError as err:
            raise bad(f"unreadable response ({err})") from None
        logits: np.ndarray | None = None
        if "logits" in outputs:
            logits = outputs["logits"]
            if logits.dtype.kind != "f" or logits.shape != (n, self.num_classes) or not np.isfinite(logits).all():
                raise bad(f"output 'logits' has dtype {logits.dtype} shape {list(logits.shape)}, "
                          f"expected finite floats of shape [{n}, {self.num_classes}]")
            logits = logits.astype(np.float32, copy=False)
        if "label" in outputs:
            labels = outputs["label"]
            if labels.dtype.kind not in "iu" or labels.ndim not in (1, 2) or labels.size != n \
                    or labels.shape[0] != n:
                raise bad(f"output 'label' has dtype {labels.dtype} shape {list(labels.shape)}, "
                          f"expected integers of shape [{n}]")
            labels = labels.reshape(n).astype(np.int64)
        elif logits is not None:
            labels = logits.argmax(axis=1).astype(np.int64)
        else:
            raise bad(f"response has outputs {sorted(outputs)}, neither 'label' nor 'logits'")
        outside = labels[(labels < 0) | (labels >= self.num_classes)]
        if outside.size:
            raise bad(f"label {int(outside[0])} is outside the {self.num_classes} classes [0, {self.num_classes})")
        return labels, logits
