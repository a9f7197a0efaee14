"""schemathesis against both services' OpenAPI schemas, on real processes: no 5xx, every answer as documented.

The cloud and the edge run as `edgecloud ... serve` subprocesses (the edge pointed at the cloud);
their /openapi.json, which describes the infer routes' JSON and binary bodies, headers and answers
(shared/oip_openapi.py), drives schemathesis through every operation in positive and negative
modes. Each answer must not be a 5xx, must use a documented status code and content type, and
must match the documented schema. Path parameters name the served model (a random name only ever
meets the 404), and each infer route also gets two valid requests, JSON and binary, built for the
tiny bundle's input shape, so the 200 path is validated against the schema too.
Afterwards both processes must still be alive with no traceback in their logs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shared.oip import encode_request
from testbed.services import Service, running

pytestmark = pytest.mark.slow

MAX_EXAMPLES_INFER = 30
"""Generated cases for `POST /v2/models/{model_name}/infer` per generation mode (positive: valid per the
schema; negative: not)."""
MAX_EXAMPLES_OTHER = 5
"""The same for every other operation: the versioned infer route shares the handler, and health,
metadata, metrics and the repository take little input."""
INFER = "/v2/models/{model_name}/infer"
MODEL = {"cloud": "teacher", "edge": "edge"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
# positive_data_acceptance is left out on purpose: a request can match the InferRequest schema and
# still be refused with a 4xx (an unknown datatype, a shape that is not the model's).

CASES: Counter[tuple[str, str, int]] = Counter()
"""(service, operation, status) -> cases sent, for the summary and the coverage assertions."""
INFER_BODIES: Counter[tuple[str, str]] = Counter()
"""(service, request content type) -> infer cases sent: both the JSON and the binary form must be fuzzed."""


@pytest.fixture(scope="module")
def services(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Service]]:
    with running(tiny_bundle, log_dir=tmp_path_factory.mktemp("schemathesis-logs"), cloud_args=["--threads", "1"],
                 edge_args=["--threads", "1", "--retries", "0"]) as (cloud, edge):
        yield {"cloud": cloud, "edge": edge}


def _schema(service: Service) -> Any:
    raw = httpx.get(f"{service.url}/openapi.json", timeout=30).json()
    infer_paths = [p for p in raw["paths"] if p.endswith("/infer")]
    assert infer_paths and all("requestBody" in raw["paths"][p]["post"] for p in infer_paths), \
        "the infer routes must describe their request bodies, or schemathesis cannot exercise them"
    return schemathesis.openapi.from_dict(raw)


def _served(service: Service, name: str) -> dict[str, str]:
    """Path parameters naming the served model, so generated bodies reach the decoder instead of a 404."""
    version = httpx.get(f"{service.url}/v2/models/{name}", timeout=10).json()["versions"][0]
    return {"model_name": name, "model_version": version}


def _valid_requests(tiny_bundle: Path) -> list[tuple[bytes, dict[str, str]]]:
    """One JSON and one binary request the served models accept: the success path gets checked too."""
    from shared.bundle import load_manifest

    shape = load_manifest(tiny_bundle, verify=False).input.shape
    x = np.arange(2 * int(np.prod(shape)), dtype=np.uint8).reshape(2, *shape)  # (2, C, H, W)
    return [encode_request({"input": x}, binary=False, binary_outputs=False), encode_request({"input": x})]


def _call(case: Any, service: Service, side: str, session: requests.Session) -> None:
    response = case.call_and_validate(base_url=service.url, session=session, checks=CHECKS, timeout=30)
    CASES[(side, f"{case.method} {case.path}", response.status_code)] += 1
    if case.path.endswith("/infer"):
        INFER_BODIES[(side, str(case.media_type))] += 1


@pytest.mark.parametrize("side", ["cloud", "edge"])
def test_every_operation_conforms(side: str, services: dict[str, Service], tiny_bundle: Path) -> None:
    service = services[side]
    schema = _schema(service)
    served = _served(service, MODEL[side])
    operations = [result.ok() for result in schema.get_all_operations()]
    with requests.Session() as session:
        for operation in operations:
            names = {p.name for p in operation.path_parameters}
            fixed = {k: v for k, v in served.items() if k in names}
            is_infer = operation.path.endswith("/infer")
            examples = MAX_EXAMPLES_INFER if operation.path == INFER else MAX_EXAMPLES_OTHER
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)

                @settings(max_examples=examples, deadline=None,
                          suppress_health_check=list(HealthCheck), derandomize=True, database=None)
                @given(case=strategy)
                def exercise(case: Any) -> None:
                    _call(case, service, side, session)

                try:
                    exercise()
                except Unsatisfiable:
                    # Nothing to break (no parameters, no body, or only fixed ones): no negative cases.
                    assert mode is GenerationMode.NEGATIVE, operation.label
            if is_infer:
                for body, headers in _valid_requests(tiny_bundle):
                    case = operation.Case(path_parameters=fixed, body=body, headers=headers,
                                          media_type=headers["Content-Type"])
                    _call(case, service, side, session)


def test_both_survived_and_the_infer_routes_were_exercised(services: dict[str, Service]) -> None:
    total = sum(CASES.values())
    by_status: Counter[int] = Counter()
    for (_, _, status), n in CASES.items():
        by_status[status] += n
    summary = "\n".join(f"  {side:5s} {op:55s} {status}: {n}" for (side, op, status), n in sorted(CASES.items()))
    print(f"\nschemathesis: {total} cases; by status {dict(sorted(by_status.items()))}\n{summary}\n"
          f"  infer bodies by content type: {dict(sorted(INFER_BODIES.items()))}")
    assert not [key for key in CASES if key[2] >= 500]
    for side in ("cloud", "edge"):
        statuses = {status for (s, op, status) in CASES if s == side and op == f"POST {INFER}"}
        assert 200 in statuses and statuses & {400, 422}, (side, statuses)  # answers and refusals both seen
        assert INFER_BODIES[(side, "application/json")] > 10 and INFER_BODIES[(side, "application/octet-stream")] > 10
    for service in services.values():
        assert service.process.poll() is None, f"{service.name} died:\n{service.log_tail()}"
        assert "Traceback" not in service.log_path.read_text(errors="replace"), service.log_tail()
    metrics = httpx.get(f"{services['cloud'].url}/metrics", timeout=10).text
    assert 'edgecloud_model_requests_total{code="5' not in metrics
