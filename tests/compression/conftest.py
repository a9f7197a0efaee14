"""Fixtures for the compression tests: tiny ResNets and scikit-learn's digits (8x8, 1 channel).

Helpers are exposed as fixtures (factories), not imported, because this test folder is not a package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from networks.resnet import ResNet, build_model, resnet_arch
from shared.datasets import Dataset, load_dataset

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


def _tiny_arch(depth: int = 18, *, width: int = 8) -> dict[str, Any]:
    return resnet_arch(depth, in_channels=1, num_classes=10, width=width, input_size=(8, 8))


def _tiny_model(depth: int = 18, *, width: int = 8, seed: int = 0) -> ResNet:
    torch.manual_seed(seed)
    model = build_model(_tiny_arch(depth, width=width))
    # Non-trivial BN parameters and statistics, so a test notices if surgery drops or misplaces them.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def tiny_arch() -> ArchFactory:
    """Factory: a digits-shaped arch (1 channel, 8x8, 10 classes), small enough for many surgeries."""
    return _tiny_arch


@pytest.fixture
def tiny_model() -> ModelFactory:
    """Factory: a seeded tiny ResNet in eval mode with randomised BN parameters and statistics."""
    return _tiny_model
