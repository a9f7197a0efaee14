"""The RL compression's view of layer surgery: one action per prunable layer, whatever the family.

Zhang et al. §IV: a per-layer action φ ∈ Φ (eq. 3) removes or shrinks a layer (eq. 4). What a family
allows and how its weights are inherited is the family's own (networks/family.py's seam, e.g.
networks/resnet_edits.py); the search, the budget and the variant builder call only these.
"""

from __future__ import annotations

from networks.edits import ACTIONS, SurgeryError, scaled_kernel, scaled_width
from networks.family import derive_arch, layer_states, prunable_layers, shrink

__all__ = ["ACTIONS", "SurgeryError", "derive_arch", "layer_states", "prunable_layers", "scaled_kernel",
           "scaled_width", "shrink"]
