"""EdgeSettings: environment with the EDGECLOUD_ prefix, validated at start, errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_agent.settings import EdgeSettings


def test_environment_is_read_with_the_prefix(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGECLOUD_BUNDLE", str(tiny_bundle))
    monkeypatch.setenv("EDGECLOUD_CLOUD_URL", "http://cloud.example:8001/")
    monkeypatch.setenv("EDGECLOUD_DEADLINE_MS", "750")
    monkeypatch.setenv("EDGECLOUD_THRESHOLD", "0.25")
    settings = EdgeSettings()  # type: ignore[call-arg]
    assert settings.bundle == tiny_bundle
    assert settings.base_cloud_url == "http://cloud.example:8001"  # no trailing slash to double up
    assert settings.deadline_ms == 750.0
    assert settings.threshold == 0.25
    # An explicit value (a CLI flag) beats the environment.
    assert EdgeSettings(deadline_ms=100.0).deadline_ms == 100.0  # type: ignore[call-arg]


@pytest.mark.parametrize(("field", "value"), [
    ("connect_timeout_s", 0.0), ("read_timeout_s", -1.0), ("deadline_ms", 0.0), ("retries", -1),
    ("breaker_failures", 0), ("batch_size", 0), ("threads", 0), ("port", 70000), ("max_inflight", 0),
    ("ratio_window", 0), ("threshold", float("nan")), ("cloud_url", "ftp://cloud"),
])
def test_bad_values_fail_naming_the_field(tiny_bundle: Path, field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        EdgeSettings(bundle=tiny_bundle, **{field: value})
    assert field in str(info.value)


def test_missing_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        EdgeSettings(bundle=tmp_path / "nope")
    with pytest.raises(ValidationError, match=r"no manifest\.json"):
        EdgeSettings(bundle=tmp_path)


def test_cross_field_checks(tiny_bundle: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    with pytest.raises(ValidationError, match="either token or token_file"):
        EdgeSettings(bundle=tiny_bundle, token="a", token_file=token_file)
    ca = tmp_path / "ca.pem"
    ca.write_text("not used\n")
    with pytest.raises(ValidationError, match="not https"):
        EdgeSettings(bundle=tiny_bundle, cloud_url="http://cloud:8001", ca_bundle=ca)
    with pytest.raises(ValidationError, match="does not exist"):
        EdgeSettings(bundle=tiny_bundle, token_file=tmp_path / "missing")
    settings = EdgeSettings(bundle=tiny_bundle, token_file=token_file)
    assert settings.bearer_token() == "s3cret"
