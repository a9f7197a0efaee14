"""Fixtures for the compression tests: tiny ResNets and scikit-learn's digits (8x8, 1 channel).

Helpers are exposed as fixtures (factories), not imported, because this test folder is not a package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from networks.resnet import ResNet
from shared.datasets import Dataset, load_dataset
from tests.helpers import tiny_nets

ArchFactory = Callable[..., dict[str, Any]]
ModelFactory = Callable[..., ResNet]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # The suite shares two cores with other jobs; one thread keeps torch from oversubscribing them.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture
def tiny_arch() -> ArchFactory:
    """Factory: a digits-shaped arch (1 channel, 8x8, 10 classes), small enough for many surgeries."""
    return tiny_nets.tiny_arch


@pytest.fixture
def tiny_model() -> ModelFactory:
    """Factory: a seeded tiny ResNet in eval mode with randomised BN parameters and statistics."""
    return tiny_nets.tiny_model
