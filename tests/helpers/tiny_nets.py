"""Tiny seeded ResNets for tests of the networks and of the compression built on them."""

from __future__ import annotations

from typing import Any

import torch

from networks.resnet import ResNet, build_model, resnet_arch


def tiny_arch(depth: int = 18, *, width: int = 8) -> dict[str, Any]:
    """A digits-shaped arch (1 channel, 8x8, 10 classes), small enough for many surgeries."""
    return resnet_arch(depth, in_channels=1, num_classes=10, width=width, input_size=(8, 8))


def tiny_model(depth: int = 18, *, width: int = 8, seed: int = 0) -> ResNet:
    """A seeded tiny ResNet in eval mode with randomised BN parameters and statistics."""
    torch.manual_seed(seed)
    model = build_model(tiny_arch(depth, width=width))
    # Non-trivial BN parameters and statistics, so a test notices if surgery drops or misplaces them.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()
