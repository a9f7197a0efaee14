"""Fixtures for the network tests: tiny seeded ResNets (tests/helpers/tiny_nets.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import tiny_nets


@pytest.fixture
def tiny_arch() -> Callable[..., dict[str, Any]]:
    return tiny_nets.tiny_arch


@pytest.fixture
def tiny_model() -> Callable[..., Any]:
    return tiny_nets.tiny_model
