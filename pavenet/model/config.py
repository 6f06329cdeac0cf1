"""Model configurations as flat dataclasses (torch-free: the runtime reads them from metadata).

Two presets ship: ``pavenet-t`` (real-time on a CPU) and ``pavenet-r50`` (paper scale, as in
PAVE-Net: ResNet-50, D=256, 6 encoder layers, 3 decoder layers, 300 queries). Any field can be
overridden with ``key=value`` strings or a JSON/TOML file of such keys.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from pavenet.errors import PavenetError
from pavenet.layouts import get_layout

BACKBONES = ("light", "resnet18", "resnet34", "resnet50")
WINDOWS = {"current": (0,), "causal": (-1, 0), "centred": (-1, 0, 1)}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a PAVENet model.

    Attributes:
        name: preset the config started from.
        layout: keypoint layout name (sets K).
        input_width, input_height: the model's input size in pixels (frames are letterboxed).
        backbone: ``light`` (CPU real-time) or ``resnet18|34|50`` (torchvision-compatible keys).
        backbone_width: channel multiplier of the light backbone.
        frozen_bn: freeze backbone BatchNorm statistics (use with pretrained weights).
        stride8_blocks: residual blocks on the light backbone's stride-8 map (the finest level
            the decoder samples); blocks added to a trained model start as the identity, so it
            grows from a checkpoint with ``init_partial`` without changing its output.
        d_model: width D of the transformer.
        num_heads: attention heads.
        ffn_dim: hidden width of feed-forward blocks.
        num_levels: feature levels at strides 8, 16, 32 (and 64 when 4).
        encoder_levels: the encoder runs over the tokens of the coarsest this-many levels; finer
            levels are only sampled by the decoder (cheap high resolution for small people).
        encoder_layers, encoder_points: deformable encoder depth and points per head and level.
        decoder_layers: pose decoder depth (logged as d0, d1, ..., and the final layer).
        decoder_points: sampling points per keypoint, head and level in the pose decoder.
        num_queries: detect queries (top-k encoder proposals) per frame.
        window: frames the decoder looks at: ``current`` {t}, ``causal`` {t-1, t} (streaming) or
            ``centred`` {t-1, t, t+1} (offline, as in PAVE-Net).
        refine_layers, refine_points: keypoint refinement decoder depth (0 = none) and points per
            head, level and frame around each keypoint.
        refine_top: at run time (the streaming step) the refiner sees the track rows and only the
            ``refine_top`` best-scored detect rows (0 = all); the others keep the last decoder
            layer's pose. Rows below the new-track threshold are never shown, so this saves time
            without changing the tracks when fewer people than ``refine_top`` appear at once.
            Training refines the matched rows whatever its value.
        track_reanchor: track queries first look at the current frame around their last pose and
            move their reference before the first decoder layer.
        dropout: dropout in attention and feed-forward blocks.
        pose_embed: how a query's reference pose becomes its position embedding: ``sine`` (a sine
            embedding of every keypoint's coordinates, then an MLP, as DAB-DETR embeds boxes) or
            ``mlp`` (an MLP on the raw coordinates; the first shipped model).
        sigma_relative: RLE sigmas are relative to the person's size (as in mmpose's top-down
            crops), so keypoint scores mean the same for small and large people; ``false`` keeps
            sigmas in whole-image units (the first shipped model).
        align_centres: feature cells are centred where the stride-2 convolutions centre them
            (pixel ``s * j`` at stride ``s``) rather than at ``(j + 0.5) * s``.
        fine_grid: after the refiner, a stride-4 head (:class:`pavenet.model.fine.FineKeypointHead`)
            scores a ``fine_grid`` x ``fine_grid`` grid of stride-4 cells around each keypoint and
            moves it to their softmax-weighted mean (integral regression on the backbone's
            stride-4 features, which the stride-8+ levels cannot resolve for small people).
            Logged as one more ``dN.loss_kpt_refine``. 0 = none; odd sizes only.
        side_heads: every pose head also predicts, per left/right pair, whether its two joints
            are the wrong way round (:mod:`pavenet.model.side`); the pose comes out in the
            likelier order and the keypoint loss is a mixture over both orders, so the model
            commits to two places instead of hedging between them.
    """

    name: str = "pavenet-t"
    layout: str = "coco17"
    input_width: int = 256
    input_height: int = 256
    backbone: str = "light"
    backbone_width: float = 1.0
    frozen_bn: bool = False
    stride8_blocks: int = 1
    d_model: int = 128
    num_heads: int = 4
    ffn_dim: int = 512
    num_levels: int = 3
    encoder_levels: int = 2
    encoder_layers: int = 2
    encoder_points: int = 4
    decoder_layers: int = 3
    decoder_points: int = 1
    num_queries: int = 30
    window: str = "causal"
    refine_layers: int = 2
    refine_points: int = 2
    refine_top: int = 0
    track_reanchor: bool = True
    dropout: float = 0.0
    pose_embed: str = "sine"
    sigma_relative: bool = True
    align_centres: bool = True
    fine_grid: int = 0
    side_heads: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.backbone not in BACKBONES:
            problems.append(f"backbone must be one of {BACKBONES}")
        if self.stride8_blocks < 1 or (self.stride8_blocks != 1 and self.backbone != "light"):
            problems.append("stride8_blocks must be >= 1 and applies to the light backbone only")
        if self.d_model % self.num_heads:
            problems.append("d_model must be divisible by num_heads")
        if not 1 <= self.encoder_levels <= self.num_levels or self.num_levels not in (3, 4):
            problems.append("need num_levels in {3, 4} and 1 <= encoder_levels <= num_levels")
        if self.input_width % 32 or self.input_height % 32:
            problems.append("input size must be a multiple of 32")
        if self.decoder_layers < 1 or self.encoder_layers < 0:
            problems.append("need decoder_layers >= 1 and encoder_layers >= 0")
        if self.num_queries < 1 or self.num_queries > self.num_proposal_tokens:
            problems.append(f"num_queries must be in 1..{self.num_proposal_tokens} (encoder tokens)")
        if self.window not in WINDOWS:
            problems.append(f"window must be one of {', '.join(WINDOWS)}")
        if self.refine_layers < 0 or self.refine_top < 0:
            problems.append("refine_layers and refine_top must be >= 0")
        if self.fine_grid and (self.fine_grid < 3 or self.fine_grid % 2 == 0 or not self.refine_layers):
            problems.append("fine_grid must be 0 or an odd size >= 3, and needs refine_layers >= 1")
        if self.pose_embed not in ("sine", "mlp"):
            problems.append("pose_embed must be 'sine' or 'mlp'")
        if problems:
            raise PavenetError(f"invalid model config {self.name!r}: " + "; ".join(problems))
        get_layout(self.layout)

    @property
    def num_keypoints(self) -> int:
        return get_layout(self.layout).num_keypoints

    @property
    def side_pairs(self) -> tuple[tuple[int, int], ...]:
        """The layout's left/right pairs when ``side_heads`` is on, else ()."""
        return get_layout(self.layout).flip_pairs if self.side_heads else ()

    @property
    def window_offsets(self) -> tuple[int, ...]:
        """Frame offsets of the decoder's window, e.g. (-1, 0) for ``causal``."""
        return WINDOWS[self.window]

    @property
    def strides(self) -> tuple[int, ...]:
        return (8, 16, 32, 64)[: self.num_levels]

    @property
    def num_proposal_tokens(self) -> int:
        """Tokens of the encoded levels (each one proposes a person)."""
        return sum((self.input_width // s) * (self.input_height // s) for s in self.strides[-self.encoder_levels:])

    @property
    def aligned_size(self) -> tuple[int, int] | None:
        """(H, W) of the input when feature cells are aligned to the convolutions' centres
        (``align_centres``), else None (the attention modules' ``image_size``)."""
        return (self.input_height, self.input_width) if self.align_centres else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """A stored config; keys it predates take the values the model it describes was built with."""
        return cls().override(**{**LEGACY, **data})

    def override(self, **changes) -> ModelConfig:
        """A copy with ``changes``; unknown keys and wrong types are errors."""
        return override_fields(self, changes, "model config")


def override_fields(config, changes: dict, what: str):
    """A copy of the dataclass ``config`` with ``changes`` typed like its fields (strings parsed)."""
    known = [f.name for f in fields(config)]
    unknown = [k for k in changes if k not in known]
    if unknown:
        raise PavenetError(f"unknown {what} key {unknown[0]!r}; known: {', '.join(known)}")
    return replace(config, **{k: coerce_value(k, v, type(getattr(config, k))) for k, v in changes.items()})


def coerce_value(key: str, value, kind: type):
    if isinstance(value, str) and kind is not str:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise PavenetError(f"{key}: {value!r} is not a boolean")
            return value.lower() in ("true", "1", "yes")
        try:
            return kind(value)
        except ValueError:
            raise PavenetError(f"{key}: {value!r} is not a valid {kind.__name__}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind):
        raise PavenetError(f"{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


# Fields added after the first shipped model, with the behaviour that model had.
LEGACY = {"pose_embed": "mlp", "sigma_relative": False, "align_centres": False}

PRESETS: dict[str, ModelConfig] = {
    "pavenet-t": ModelConfig(),
    "pavenet-r50": ModelConfig(
        name="pavenet-r50", input_width=640, input_height=640, backbone="resnet50", frozen_bn=True,
        d_model=256, num_heads=8, ffn_dim=1024, num_levels=4, encoder_levels=4, encoder_layers=6,
        encoder_points=4, decoder_layers=3, decoder_points=1, num_queries=300, window="causal", refine_layers=2,
        refine_points=2, dropout=0.0,
    ),
}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise PavenetError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]


def parse_set(pairs: list[str]) -> dict[str, str]:
    """``["d_model=64", "backbone=resnet18"]`` -> dict of raw strings (typed by ``override``)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PavenetError(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def load_config_file(path: str | Path) -> dict:
    """A JSON or TOML file of config keys (flat, or with ``[model]`` / ``[train]`` tables)."""
    path = Path(path)
    if not path.exists():
        raise PavenetError(f"{path}: no such config file")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        return json.loads(text)
    except (ValueError, ImportError) as exc:
        raise PavenetError(f"{path}: not a valid config file ({exc})") from None
