"""Function-preserving widening of the light backbone (Net2WiderNet, Chen et al. 2016).

A checkpoint trained at ``backbone_width`` w continues at a larger width w' with the same outputs:
every channel group of the backbone (stem 1 and 2, the stride-8, -16 and -32 stages, and the inner
channels of each residual block) grows from C to C' channels, the new ones copies of randomly
chosen old ones (with their BatchNorm parameters and statistics), and every layer that reads a
group divides the weights of a copied channel among its copies. So the widened model computes
exactly what the checkpoint did, and training goes on from there with more capacity in the
features, where ``stride8_blocks`` adds blocks that start as the identity.

Copies of one channel would get equal gradients and stay equal, so each reader's share of a copied
channel gets zero-sum noise across the copies (``noise`` times the weight's spread): the sum over
the copies, hence the function, stays the same while the copies learn apart.

Only tensors of the light backbone and the neck's input side change; the rest of the state dict is
returned as it was.
"""

from __future__ import annotations

import torch

from pavenet.errors import PavenetError
from pavenet.model.config import ModelConfig


def light_channels(width: float) -> list[int]:
    """The light backbone's five channel counts at ``width`` (stem 1, stem 2, strides 8, 16, 32)."""
    return [max(8, int(round(v * width / 8)) * 8) for v in (24, 32, 64, 128, 192)]


class _Widener:
    def __init__(self, state: dict[str, torch.Tensor], noise: float, seed: int):
        self.state = dict(state)
        self.noise = noise
        self.gen = torch.Generator().manual_seed(seed)

    def mapping(self, old: int, new: int) -> torch.Tensor:
        """[new] old channel of every new channel: the old ones in place, then random copies."""
        extra = torch.randint(0, old, (new - old,), generator=self.gen)
        return torch.cat([torch.arange(old), extra])

    def produce(self, conv: str, bn: str, g: torch.Tensor) -> None:
        """Output channels of ``conv`` (and its BatchNorm ``bn``) follow mapping ``g``."""
        self.state[conv] = self.state[conv][g]
        for name in ("weight", "bias", "running_mean", "running_var"):
            key = f"{bn}.{name}"
            if key in self.state:
                self.state[key] = self.state[key][g]

    def consume(self, conv: str, g: torch.Tensor) -> None:
        """Input channels of ``conv`` follow ``g``: a channel copied n times gives each copy 1/n of
        its weights, plus zero-sum noise over the copies."""
        w = self.state[conv]
        old = w.shape[1]
        counts = torch.bincount(g, minlength=old).to(w.dtype)
        out = w[:, g] / counts[g].view(1, -1, *([1] * (w.dim() - 2)))
        copied = counts[g] > 1
        if self.noise > 0 and copied.any():
            eps = torch.randn(out.shape, generator=self.gen, dtype=torch.float32).to(w.dtype)
            eps = eps * copied.view(1, -1, *([1] * (w.dim() - 2))) * self.noise * w.float().std().to(w.dtype)
            mean = torch.zeros_like(w).index_add_(1, g, eps) / counts.view(1, -1, *([1] * (w.dim() - 2)))
            out = out + eps - mean[:, g]  # the copies of each channel share a zero-sum perturbation
        self.state[conv] = out

    def residual(self, prefix: str, g: torch.Tensor, inner_old: int, inner_new: int) -> None:
        """A ``_Residual`` block at ``prefix`` whose input and output follow ``g``."""
        gi = self.mapping(inner_old, inner_new)
        self.consume(f"{prefix}.body.0.0.weight", g)
        self.produce(f"{prefix}.body.0.0.weight", f"{prefix}.body.0.1", gi)
        self.consume(f"{prefix}.body.1.weight", gi)
        self.produce(f"{prefix}.body.1.weight", f"{prefix}.body.2", g)


def widen_light_backbone(state: dict[str, torch.Tensor], old: ModelConfig, new: ModelConfig,
                         noise: float = 0.1, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model ``state`` of config ``old`` widened to ``new.backbone_width`` (see the module
    docstring). Both configs must use the light backbone with the same ``stride8_blocks``, and the
    new width must not be smaller in any channel group."""
    if old.backbone != "light" or new.backbone != "light":
        raise PavenetError("widening applies to the light backbone only")
    if old.stride8_blocks != new.stride8_blocks or old.num_levels != new.num_levels:
        raise PavenetError("widen the backbone with the same stride8_blocks and num_levels (change one thing)")
    before, after = light_channels(old.backbone_width), light_channels(new.backbone_width)
    if any(b > a for b, a in zip(before, after)):
        raise PavenetError(f"backbone_width {new.backbone_width} is narrower than {old.backbone_width}")
    w = _Widener(state, noise, seed)
    g = [w.mapping(b, a) for b, a in zip(before, after)]
    w.produce("backbone.stem.0.0.weight", "backbone.stem.0.1", g[0])
    w.consume("backbone.stem.1.0.weight", g[0])
    w.produce("backbone.stem.1.0.weight", "backbone.stem.1.1", g[1])
    stages = (("stage3", 1 + old.stride8_blocks), ("stage4", 3), ("stage5", 2))
    for (stage, blocks), gin, gout, c_old, c_new in zip(stages, g[1:4], g[2:5], before[2:], after[2:]):
        w.consume(f"backbone.{stage}.0.0.weight", gin)
        w.produce(f"backbone.{stage}.0.0.weight", f"backbone.{stage}.0.1", gout)
        for k in range(1, blocks):
            w.residual(f"backbone.{stage}.{k}", gout, c_old, c_new)
    for level, gl in enumerate(g[2:5]):
        w.consume(f"neck.{level}.0.weight", gl)
    if old.num_levels == 4:
        w.consume("neck.3.0.weight", g[4])
    return w.state
