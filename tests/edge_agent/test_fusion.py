"""Fusion at serving time: offloaded samples answered from the student's and the teacher's logits."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_agent.agent import open_agent
from edge_agent.engine import EdgeEngine
from edge_agent.settings import EdgeSettings
from offloading.fusion import FusionParams, fuse
from shared.bundle import BundleError, load_manifest, write_manifest
from tests.edge_agent.helpers import StubBehaviour, metric, stub_labels, stub_logits

pytestmark = pytest.mark.anyio
Make = Callable[..., EdgeSettings]
PARAMS = FusionParams(student_weight=0.6, student_temperature=0.5, teacher_temperature=2.0)


@pytest.fixture(scope="module")
def fusion_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny bundle with fusion parameters in its operating point, as train-offloader writes them."""
    bundle = tmp_path_factory.mktemp("fusion") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = load_manifest(bundle)
    op = manifest.operating_point.model_copy(update={"fusion": {**PARAMS.__dict__, "method": "test"}})
    write_manifest(bundle, manifest.with_operating_point(op))
    return bundle


async def test_offloaded_samples_are_fused_labelled_and_counted(
        make_settings: Make, stub: tuple[str, StubBehaviour], fusion_bundle: Path,
        tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    url, behaviour = stub
    behaviour.reset("with_logits")
    x = tiny_test_split[0][:200]
    async with open_agent(make_settings(bundle=fusion_bundle, cloud_url=url, fusion=True)) as agent:
        out = agent.engine.run(x)
        answers = await agent.infer(x)
        exposition = agent.metrics.exposition().decode()
    flagged = out.offload
    assert flagged.any() and not flagged.all()
    assert set(answers.sources[flagged]) == {"fused"} and set(answers.sources[~flagged]) == {"edge"}
    expected = fuse(out.logits[flagged], stub_logits(x[flagged]), PARAMS)
    np.testing.assert_array_equal(answers.labels[flagged], expected)
    # The fusion is not the teacher's label in disguise: with these logits some answers differ from it.
    assert (expected != stub_labels(x[flagged])).any()
    assert metric(exposition, "edgecloud_edge_requests_total", {"source": "fused"}) == flagged.sum()
    assert metric(exposition, "edgecloud_edge_requests_total", {"source": "cloud"}) == 0


async def test_without_fusion_the_teacher_answers_even_when_it_sends_logits(
        make_settings: Make, stub: tuple[str, StubBehaviour], fusion_bundle: Path,
        tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    url, behaviour = stub
    behaviour.reset("with_logits")
    x = tiny_test_split[0][:200]
    async with open_agent(make_settings(bundle=fusion_bundle, cloud_url=url)) as agent:
        flagged = agent.engine.run(x).offload
        answers = await agent.infer(x)
    assert set(answers.sources[flagged]) == {"cloud"}
    np.testing.assert_array_equal(answers.labels[flagged], stub_labels(x[flagged]))


async def test_a_cloud_that_sends_only_labels_is_answered_as_cloud(
        make_settings: Make, stub: tuple[str, StubBehaviour], fusion_bundle: Path,
        tiny_test_split: tuple[np.ndarray, np.ndarray]) -> None:
    url, behaviour = stub
    behaviour.reset("ok")  # `label` only: nothing to fuse with
    x = tiny_test_split[0][:200]
    async with open_agent(make_settings(bundle=fusion_bundle, cloud_url=url, fusion=True)) as agent:
        flagged = agent.engine.run(x).offload
        answers = await agent.infer(x)
    assert set(answers.sources[flagged]) == {"cloud"}
    np.testing.assert_array_equal(answers.labels[flagged], stub_labels(x[flagged]))


def test_fusion_on_a_bundle_without_its_parameters_is_refused(tiny_bundle: Path) -> None:
    with pytest.raises(BundleError, match="no fusion parameters"):
        EdgeEngine.load(tiny_bundle, fusion=True)


def test_the_edge_has_a_fusion_flag() -> None:
    from edgecloud.cli import build_parser

    args = build_parser().parse_args(["edge", "serve", "--bundle", ".", "--fusion"])
    assert args.fusion is True
