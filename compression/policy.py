"""GRU compression policy (Zhang et al. §IV-A, eqs. (2)-(3)).

A 2-layer GRU reads the teacher's per-layer states s_1..s_T (eq. 2) in order and emits, for every
prunable layer t, a categorical distribution over the action set Φ = {0, 0.2, ..., 1} (eq. 3).
What an action *means* (keep ratio, removal) belongs to ``compression.surgery``; the policy only
deals in action indices.

The GRU sees the states only, not its own previous action. Because the teacher's state sequence is
fixed for a whole search, the per-layer distributions are then a deterministic function of the
parameters, so one forward pass gives the exact log-probability of any action sequence
(``log_prob``), and the GRU's hidden state still lets each layer's choice depend on the layers
before it through their descriptions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Categorical


class GRUPolicy(nn.Module):
    """π(a_t | s_1..s_t): one categorical action per prunable layer."""

    def __init__(
        self, *, state_dim: int = 5, hidden_size: int = 64, num_layers: int = 2, num_actions: int = 6
    ) -> None:
        super().__init__()
        for name, value in (
            ("state_dim", state_dim),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
            ("num_actions", num_actions),
        ):
            if value < 1:
                raise ValueError(f"GRUPolicy {name} must be >= 1, got {value}")
        self.state_dim = state_dim
        self.num_actions = num_actions
        self.gru = nn.GRU(state_dim, hidden_size, num_layers=num_layers)
        self.head = nn.Linear(hidden_size, num_actions)
        # A small-std, zero-bias policy head starts the search near the uniform distribution, so
        # early rollouts explore Φ evenly (the same trick as cleanrl's actor head, std=0.01).
        nn.init.orthogonal_(self.head.weight, gain=0.01)
        nn.init.zeros_(self.head.bias)

    def _check_states(self, states: Tensor) -> None:
        if states.ndim != 2 or states.shape[1] != self.state_dim or states.shape[0] == 0:
            raise ValueError(
                f"states must have shape (T>0, {self.state_dim}), got {tuple(states.shape)}"
            )

    def forward(self, states: Tensor) -> Tensor:
        """Per-layer action logits: (T, state_dim) -> (T, num_actions)."""
        self._check_states(states)
        out, _ = self.gru(states.unsqueeze(1))  # (T, 1, H): the T layers are the time axis
        return self.head(out.squeeze(1))  # (T, A)

    def distribution(self, states: Tensor) -> Categorical:
        """The T independent-given-states categoricals of eq. (3)."""
        return Categorical(logits=self(states))

    def sample(
        self, states: Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Draw one action sequence.

        Returns (actions (T,) int64, log π(a_1..a_T) as a scalar sum, summed per-layer entropy);
        the log-probability keeps its graph so REINFORCE can differentiate it.
        """
        dist = self.distribution(states)
        actions = torch.multinomial(dist.probs.detach(), 1, generator=generator).squeeze(1)  # (T,)
        return actions, dist.log_prob(actions).sum(), dist.entropy().sum()

    def log_prob(self, states: Tensor, actions: Tensor) -> Tensor:
        """log π(a_1..a_T) of a given action sequence (T,), as a differentiable scalar."""
        if actions.shape != (states.shape[0],):
            raise ValueError(f"actions must have shape ({states.shape[0]},), got {tuple(actions.shape)}")
        return self.distribution(states).log_prob(actions).sum()

    @torch.no_grad()
    def greedy(self, states: Tensor) -> Tensor:
        """The most likely action per layer, (T,) int64."""
        return self(states).argmax(dim=1)
