"""The one forward pass every family's network shares: stem -> stages -> classify (networks/family.py).

A family subclasses `StagedModule`, builds `stem`, `stages` and whatever `classify` needs, and calls
`he_init`; `forward_features` (logits and every stage's output: what SP-KD matches and where a network
is cut) and `forward` are written once, here.
"""

from __future__ import annotations

from torch import Tensor, nn


class StagedModule(nn.Module):
    """stem -> stages (an nn.ModuleList) -> classify; subclasses define the three."""

    stem: nn.Module
    stages: nn.ModuleList

    def classify(self, h: Tensor) -> Tensor:
        """The last stage's output (B, C, H, W) -> logits (B, K)."""
        raise NotImplementedError

    def forward_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits (B, K) and every stage's output (B, C_s, H_s, W_s), in order."""
        h = self.stem(x)  # (B, C, H, W)
        feats: list[Tensor] = []
        for stage in self.stages:
            h = stage(h)
            feats.append(h)
        return self.classify(h), feats

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)[0]


def he_init(model: nn.Module, *, keep: tuple[nn.Module, ...] = ()) -> None:
    """He init for ReLU nets (convs fan_out, as torchvision's ResNet; hidden linears fan_in); BN starts as
    the identity. Modules in ``keep`` (a class layer) keep PyTorch's default init."""
    for m in model.modules():
        if any(m is k for k in keep):
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
