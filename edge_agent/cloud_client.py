"""The edge's link to the cloud teacher: OIP infer requests with deadlines, bounded retries and a breaker.

One shared keep-alive `httpx.AsyncClient` sends raw pixels (UINT8: a sample costs its pixel bytes
plus a small JSON header) to `{cloud_url}/v2/models/{model}/infer`. It works against any Open
Inference Protocol server (ours, Triton, KServe, MLServer): the reply is parsed with
`shared.oip.decode_response`, JSON or binary, and read by output name (`label`, else the argmax of
`logits`). Every way an offload can fail ends in an `OffloadError` whose `reason` is one of
`FallbackReason`; the agent then answers from the student. `infer_model` sends any tensors (and
request parameters) to any model of the next tier through the same deadline, retries and breaker:
the split model sends packed features to a server's `tail_p` with it. Unlike Sedna's client, the deadline we
compute is actually sent (`X-Deadline-Ms`) and enforced on our side too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import numpy as np

from edge_agent.breaker import CircuitBreaker
from edge_agent.settings import EdgeSettings
from shared.names import FallbackReason
from shared.oip import DEADLINE_HEADER, ProtocolError, decode_response, encode_request

__all__ = ["CloudAnswer", "CloudClient", "FallbackReason", "OffloadError", "wire_pixels"]

log = logging.getLogger(__name__)


class OffloadError(Exception):
    """An offload that produced no valid cloud answer.

    `tried` is False when no request was put on the wire (open breaker, deadline spent waiting for a
    slot); `bytes_sent` counts request bodies that left the edge.
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


@dataclass(frozen=True)
class _Request:
    """One infer call: where, what, and how many samples the answer must label."""

    url: str
    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any] | None
    n: int


class _Retryable(Exception):
    """Internal: a failure worth another try (connect error, 503)."""

    def __init__(self, error: OffloadError, retry_after_s: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after_s = retry_after_s


def _ssl_context(settings: EdgeSettings) -> ssl.SSLContext | bool:
    if settings.ca_bundle is None:
        return True  # the system's CAs
    return ssl.create_default_context(cafile=str(settings.ca_bundle))


def wire_pixels(x: np.ndarray) -> np.ndarray:
    """Raw pixels as sent: float32 batches holding whole values in [0, 255] go as UINT8 (4x fewer bytes)."""
    if x.dtype == np.uint8:
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
    """Offloads batches to the cloud teacher; use as `async with CloudClient(settings, ...) as cloud`."""

    def __init__(self, settings: EdgeSettings, *, num_classes: int,
                 transport: httpx.AsyncBaseTransport | None = None,
                 breaker: CircuitBreaker | None = None) -> None:
        if settings.base_cloud_url is None:
            raise ValueError("CloudClient needs settings.cloud_url; without one the edge runs edge-only")
        self.settings = settings
        self.num_classes = num_classes
        self.base_url = settings.base_cloud_url
        self.url = f"{settings.base_cloud_url}/v2/models/{settings.cloud_model}/infer"
        self.breaker = breaker or CircuitBreaker(failures=settings.breaker_failures,
                                                 reset_s=settings.breaker_reset_s)
        token = settings.bearer_token()
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._slots = asyncio.Semaphore(settings.max_inflight)
        self._rng = random.Random()
        limits = httpx.Limits(max_connections=settings.max_inflight,
                              max_keepalive_connections=settings.max_inflight, keepalive_expiry=30.0)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            limits=limits, verify=_ssl_context(settings), transport=transport)

    async def __aenter__(self) -> CloudClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def infer(self, x: np.ndarray) -> CloudAnswer:
        """Labels for a (N, C, H, W) raw-pixel batch from the teacher, or OffloadError with a reason."""
        return await self.infer_model(self.settings.cloud_model, {"input": wire_pixels(x)}, n=len(x))

    async def infer_model(self, model: str, inputs: dict[str, np.ndarray], *, n: int,
                          parameters: dict[str, Any] | None = None, budget_s: float | None = None) -> CloudAnswer:
        """Labels for `n` samples from `model` given its input tensors and request parameters.

        `budget_s` replaces `deadline_ms` as this call's whole budget (retries included).
        """
        budget = self.settings.deadline_ms / 1000.0 if budget_s is None else max(0.0, budget_s)
        deadline = time.monotonic() + budget
        request = _Request(url=f"{self.base_url}/v2/models/{model}/infer", inputs=inputs, parameters=parameters, n=n)
        if not self.breaker.allow():
            raise OffloadError(FallbackReason.CIRCUIT_OPEN, f"breaker open after {self.breaker.failures_to_open} "
                               "consecutive failures; no request sent", tried=False)
        try:
            answer = await self._infer_in_slot(request, deadline)
        except OffloadError as err:
            if err.tried:
                self.breaker.record_failure()
            else:
                self.breaker.abandon()  # nothing reached the cloud, so this says nothing about it
            raise
        except BaseException:
            self.breaker.abandon()  # cancelled: the probe (if this was one) never reports
            raise
        self.breaker.record_success()
        return answer

    async def _infer_in_slot(self, request: _Request, deadline: float) -> CloudAnswer:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._slots.acquire()
        except TimeoutError:
            raise OffloadError(FallbackReason.TIMEOUT, f"deadline of {self.settings.deadline_ms:.0f} ms passed "
                               f"waiting for one of {self.settings.max_inflight} offload slots", tried=False) from None
        try:
            return await self._send_with_retries(request, deadline)
        finally:
            self._slots.release()

    async def _send_with_retries(self, request: _Request, deadline: float) -> CloudAnswer:
        body, headers = encode_request(request.inputs, binary=self.settings.cloud_binary,
                                       binary_outputs=self.settings.cloud_binary, parameters=request.parameters)
        headers.update(self._auth)
        tries, bytes_sent = 0, 0
        while True:
            tries += 1
            try:
                (labels, logits), rtt, received = await self._send_once(request.url, body, headers, deadline,
                                                                        n=request.n)
                return CloudAnswer(labels=labels, logits=logits, rtt_s=rtt, tries=tries,
                                   bytes_sent=bytes_sent + len(body), bytes_received=received)
            except _Retryable as retry:
                bytes_sent += retry.error.bytes_sent
                delay = self.settings.backoff_s * 2 ** (tries - 1) * self._rng.random()  # full jitter
                if retry.retry_after_s is not None:
                    delay = max(delay, retry.retry_after_s)
                if tries > self.settings.retries or time.monotonic() + delay >= deadline:
                    raise OffloadError(retry.error.reason, f"{retry.error} (after {tries} tries)", tried=True,
                                       bytes_sent=bytes_sent) from None
                log.debug("cloud try %d failed (%s); retrying in %.3f s", tries, retry.error, delay)
                await asyncio.sleep(delay)
            except OffloadError as err:
                err.bytes_sent += bytes_sent
                raise

    async def _send_once(self, url: str, body: bytes, headers: dict[str, str], deadline: float, *, n: int
                         ) -> tuple[tuple[np.ndarray, np.ndarray | None], float, int]:
        """One POST within what is left of the deadline: ((labels, logits or None), round-trip seconds,
        response bytes)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise OffloadError(FallbackReason.TIMEOUT, "deadline passed before the request could be sent",
                               tried=True)
        s = self.settings
        timeout = httpx.Timeout(connect=min(s.connect_timeout_s, remaining), read=min(s.read_timeout_s, remaining),
                                write=min(s.read_timeout_s, remaining), pool=remaining)
        sent_headers = {**headers, DEADLINE_HEADER: f"{remaining * 1000.0:.0f}"}
        started = time.monotonic()
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
        return self._outputs(response, n, len(body), url), rtt, len(response.content)

    def _check_status(self, response: httpx.Response, body_len: int, url: str) -> None:
        code = response.status_code
        if code == 200:
            return
        detail = f"{url} answered {code}: {response.text[:200]!r}"
        if code == 503:
            raise _Retryable(OffloadError(FallbackReason.OVERLOADED, detail, tried=True, bytes_sent=body_len),
                             retry_after_s=_retry_after(response))
        reason = {429: FallbackReason.OVERLOADED, 401: FallbackReason.UNAUTHORIZED,
                  403: FallbackReason.UNAUTHORIZED, 408: FallbackReason.TIMEOUT,
                  504: FallbackReason.TIMEOUT}.get(code, FallbackReason.BAD_RESPONSE)
        raise OffloadError(reason, detail, tried=True, bytes_sent=body_len)

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
