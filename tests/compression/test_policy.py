"""compression.policy: the GRU policy's shapes, sampling, log-probabilities and greedy choice."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from compression.policy import GRUPolicy
from compression.surgery import ACTIONS, layer_states
from networks.resnet import resnet_arch


def _states(t: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.rand(t, 5, generator=torch.Generator().manual_seed(seed))


def _policy(seed: int = 0, **kwargs: int) -> GRUPolicy:
    torch.manual_seed(seed)
    return GRUPolicy(**kwargs)


def test_forward_gives_one_logit_row_per_layer_of_a_real_teacher() -> None:
    arch = resnet_arch(18, in_channels=1, num_classes=10, width=8, input_size=(8, 8))
    states = torch.from_numpy(layer_states(arch))
    logits = _policy()(states)
    assert logits.shape == (17, len(ACTIONS))  # ResNet-18: stem + 8 blocks x 2 convs
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("shape", [(7,), (7, 4), (0, 5), (2, 7, 5)])
def test_forward_rejects_badly_shaped_states(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"states must have shape"):
        _policy()(torch.zeros(shape))


def test_constructor_rejects_non_positive_sizes() -> None:
    with pytest.raises(ValueError, match="hidden_size must be >= 1, got 0"):
        GRUPolicy(hidden_size=0)


def test_initial_policy_is_near_uniform() -> None:
    # The small-gain head means early rollouts explore every action about equally.
    states = _states(t=9)
    probs = F.softmax(_policy()(states), dim=1)
    assert torch.allclose(probs, torch.full_like(probs, 1 / 6), atol=0.01)
    _, _, entropy = _policy().sample(states)
    assert entropy.item() == pytest.approx(9 * math.log(6), rel=1e-3)


def test_sample_log_prob_is_the_sum_of_per_layer_log_softmax() -> None:
    policy, states = _policy(hidden_size=16), _states()
    actions, log_prob, _ = policy.sample(states, generator=torch.Generator().manual_seed(3))
    assert actions.shape == (7,) and actions.dtype == torch.int64
    assert int(actions.min()) >= 0 and int(actions.max()) < len(ACTIONS)
    by_hand = F.log_softmax(policy(states), dim=1).gather(1, actions.view(-1, 1)).sum()
    assert log_prob.item() == pytest.approx(by_hand.item(), abs=1e-5)
    assert log_prob.requires_grad  # REINFORCE differentiates through it
    assert policy.log_prob(states, actions).item() == pytest.approx(log_prob.item(), abs=1e-5)


def test_sampling_is_reproducible_with_a_seeded_generator() -> None:
    policy, states = _policy(), _states(t=30)
    first = policy.sample(states, generator=torch.Generator().manual_seed(11))[0]
    again = policy.sample(states, generator=torch.Generator().manual_seed(11))[0]
    other = policy.sample(states, generator=torch.Generator().manual_seed(12))[0]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_greedy_takes_the_argmax_and_a_dominant_action_is_always_sampled() -> None:
    policy, states = _policy(), _states()
    with torch.no_grad():
        policy.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 20.0, 0.0, 0.0]))
    assert torch.equal(policy.greedy(states), torch.full((7,), 3))
    actions, _, entropy = policy.sample(states, generator=torch.Generator().manual_seed(0))
    assert torch.equal(actions, torch.full((7,), 3))
    assert entropy.item() < 0.01


def test_log_prob_rejects_a_wrong_number_of_actions() -> None:
    with pytest.raises(ValueError, match=r"actions must have shape \(7,\), got \(6,\)"):
        _policy().log_prob(_states(), torch.zeros(6, dtype=torch.int64))
