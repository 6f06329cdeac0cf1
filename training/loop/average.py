"""An exponential moving average of the weights (``ema_decay``), as YOLO, RTMPose and DINO train.

After every optimizer step each floating-point parameter and buffer of the average moves by
``1 - decay`` towards the trained model's (``torch._foreach_lerp_``: one fused op, no host sync);
integer buffers (BatchNorm's step counters) are copied. The average starts at the model's weights
when the run starts (the ``--load-from`` checkpoint, or the random initialisation: at decay 0.999
its share is 0.999^t, 0.7 % after 5,000 steps). Validation, ``best.pt`` and every checkpoint's
``model`` are the average's, so export, evaluation and ``--load-from`` use it; the trained weights
are kept as ``train_model`` for ``--resume``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """EMA of ``model``'s state; :attr:`model` is a frozen copy in eval mode."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError("decay must be in (0, 1)")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (same architecture)."""
        avg, cur = self.model.state_dict(), model.state_dict()
        floats = [k for k, v in avg.items() if v.is_floating_point()]
        torch._foreach_lerp_([avg[k] for k in floats], [cur[k].to(avg[k].dtype) for k in floats], 1.0 - self.decay)
        for k, v in avg.items():
            if not v.is_floating_point():
                v.copy_(cur[k])
