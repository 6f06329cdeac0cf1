"""Backbones returning feature maps at strides 8, 16 and 32.

``ResNet`` uses torchvision's parameter names (``conv1``, ``bn1``, ``layer1.0.conv1`` ...), so
ImageNet weights saved from torchvision load with ``load_state_dict`` (torchvision itself
cannot be installed beside the CPU torch build used here). ``LightBackbone`` is a small plain
conv net for the CPU real-time model.
"""

from __future__ import annotations

import torch
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (as in DETR), same state-dict keys."""

    def __init__(self, n: int):
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((n,), value))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + 1e-5).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def _norm(n: int, frozen: bool) -> nn.Module:
    return FrozenBatchNorm2d(n) if frozen else nn.BatchNorm2d(n)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, frozen: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = _norm(planes, frozen)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _norm(planes, frozen)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, stride, frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, frozen: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = _norm(planes, frozen)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = _norm(planes, frozen)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = _norm(planes * 4, frozen)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes * 4, stride, frozen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _downsample(cin: int, cout: int, stride: int, frozen: bool) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout, frozen))


_RESNETS = {"resnet18": (BasicBlock, (2, 2, 2, 2)), "resnet34": (BasicBlock, (3, 4, 6, 3)),
            "resnet50": (Bottleneck, (3, 4, 6, 3))}


class ResNet(nn.Module):
    """ResNet-18/34/50 trunk (no classifier).

    forward: [B, 3, H, W] -> [C3 [B, c, H/8, W/8], C4 [.., H/16, ..], C5 [.., H/32, ..]]
    (``with_fine``: also C2 [B, fine_channels, H/4, W/4] first).
    """

    def __init__(self, depth: str = "resnet50", frozen_bn: bool = False):
        super().__init__()
        block, counts = _RESNETS[depth]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = _norm(64, frozen_bn)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), counts)):
            layers = []
            for j in range(n):
                layers.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1, frozen_bn))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.out_channels = tuple(c * block.expansion for c in (128, 256, 512))
        self.fine_channels = 64 * block.expansion

    def forward(self, x: torch.Tensor, with_fine: bool = False):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        feats = [c3, c4, self.layer4(c4)]
        return (c2, feats) if with_fine else feats

    def load_pretrained(self, path: str) -> None:
        """Load torchvision ImageNet weights (the classifier ``fc.*`` is ignored)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            from pavenet.errors import PavenetError

            raise PavenetError(f"{path}: not a torchvision ResNet state dict for this depth "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class LightBackbone(nn.Module):
    """Plain 3x3 conv net for CPU real time (about 1.3M parameters at width 1.0).

    forward: [B, 3, H, W] -> [C3 [B, 64w, H/8, W/8], C4 [B, 128w, H/16, ..], C5 [B, 192w, H/32, ..]]
    (``with_fine``: also the stem's output [B, 32w, H/4, W/4] first).

    ``stride8_blocks`` residual blocks refine the stride-8 map (the finest level the decoder
    samples). Blocks beyond the first start as the identity (their last BatchNorm scale is 0), so
    a checkpoint trained with fewer of them continues unchanged with more capacity.
    """

    def __init__(self, width: float = 1.0, stride8_blocks: int = 1):
        super().__init__()
        c = [max(8, int(round(v * width / 8)) * 8) for v in (24, 32, 64, 128, 192)]
        self.stem = nn.Sequential(conv_bn(3, c[0], 2), conv_bn(c[0], c[1], 2))
        down8 = conv_bn(c[1], c[2], 2)  # created first: the same random initialisation as before the option
        blocks8 = [_Residual(c[2]) for _ in range(stride8_blocks)]
        for block in blocks8[1:]:
            nn.init.zeros_(block.body[-1].weight)
        self.stage3 = nn.Sequential(down8, *blocks8)
        self.stage4 = nn.Sequential(conv_bn(c[2], c[3], 2), _Residual(c[3]), _Residual(c[3]))
        self.stage5 = nn.Sequential(conv_bn(c[3], c[4], 2), _Residual(c[4]))
        self.out_channels = (c[2], c[3], c[4])
        self.fine_channels = c[1]

    def forward(self, x: torch.Tensor, with_fine: bool = False):
        c2 = self.stem(x)
        c3 = self.stage3(c2)
        c4 = self.stage4(c3)
        feats = [c3, c4, self.stage5(c4)]
        return (c2, feats) if with_fine else feats


def build_backbone(name: str, width: float = 1.0, frozen_bn: bool = False, stride8_blocks: int = 1) -> nn.Module:
    return LightBackbone(width, stride8_blocks) if name == "light" else ResNet(name, frozen_bn)
