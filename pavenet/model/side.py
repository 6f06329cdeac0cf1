"""Left/right side heads: a pose up to which joint of each left/right pair is which, plus the
probability that the slots are the wrong way round.

Measured on the synthetic data (``benchmarks/frame_ap.py``): where the image barely shows which
way a person faces, a regression loss puts both joints of a pair between the two true places
(left-right distances halved, legs collapsed onto one line), which is the worst pose for OKS. With
``side_heads`` each pose head also predicts, for every flip pair, a logit that its two joints are
swapped; the shown pose takes the likelier order, and the loss (:func:`training.objective.losses.
rle_sum`) is a two-component mixture over the two orders. The geometry no longer has to hedge: it
commits to two places, and the side question becomes a classification.
"""

from __future__ import annotations

import torch
from torch import nn

SIDE_PRIOR_LOGIT = -2.0  # a new head starts trusting the slots (12 % swapped)


class SideHead(nn.Module):
    """Swap logits of the flip pairs and the pose in the likelier order.

    ``pairs``: the layout's (left, right) slot pairs; ``k``: keypoints.
    """

    def __init__(self, d: int, pairs: tuple[tuple[int, int], ...], k: int):
        super().__init__()
        self.linear = nn.Linear(d, len(pairs))
        nn.init.zeros_(self.linear.weight)
        nn.init.constant_(self.linear.bias, SIDE_PRIOR_LOGIT)
        partner, pair_of = list(range(k)), [len(pairs)] * k
        for i, (a, b) in enumerate(pairs):
            partner[a], partner[b] = b, a
            pair_of[a] = pair_of[b] = i
        self.register_buffer("partner", torch.tensor(partner), persistent=False)
        self.register_buffer("pair_of", torch.tensor(pair_of), persistent=False)

    def forward(self, x: torch.Tensor, keypoints: torch.Tensor,
                sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [..., D], keypoints/sigmas [..., K, 2] in slot order -> (keypoints, sigmas in the
        likelier order, swap logits [..., P])."""
        logits = self.linear(x)
        return *apply_sides(keypoints, sigmas, logits, self.partner, self.pair_of), logits


def apply_sides(keypoints: torch.Tensor, sigmas: torch.Tensor, logits: torch.Tensor, partner: torch.Tensor,
                pair_of: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap each pair whose logit is positive: keypoints/sigmas [..., K, 2], logits [..., P],
    ``partner`` [K] (the other joint of k's pair, k when unpaired), ``pair_of`` [K] (k's pair; P
    when unpaired)."""
    never = logits.new_full((*logits.shape[:-1], 1), -1.0)
    swap = (torch.cat([logits, never], -1).index_select(-1, pair_of) > 0)[..., None]  # [..., K, 1]
    return (torch.where(swap, keypoints.index_select(-2, partner), keypoints),
            torch.where(swap, sigmas.index_select(-2, partner), sigmas))
