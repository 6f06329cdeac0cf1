"""The exported graph's contract: metadata written by ``pavenet-export`` and checked by the runtime.

Torch-free. The tensors themselves are documented in :mod:`pavenet.model.step`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from pavenet.errors import PavenetError
from pavenet.layouts import KeypointLayout
from pavenet.model.config import ModelConfig, override_fields

FORMAT = "pavenet-onnx"
FORMAT_VERSION = 1
INPUTS = ("image", "track_queries", "track_keypoints", "prev_tokens", "prev_valid")
OUTPUTS = ("scores", "keypoints", "keypoint_scores", "hidden", "tokens")
RESET_RULE = "at a new stream or after reset(): track_queries with N = 0 and prev_valid = 0"


@dataclass(frozen=True)
class TrackerThresholds:
    """Named thresholds of the identity lifecycle (see :class:`pavenet.tracker.Tracker`).

    Attributes:
        new_track_thr: a detect query scoring at least this starts a new track.
        keep_thr: a track stays active while its track query scores at least this.
        max_lost: frames an inactive track is kept (and fed back) before its ID is retired.
        duplicate_oks: a new detection with OKS above this against an active track is a duplicate.
        duplicate_iou: a new detection whose pose box overlaps an active track's with IoU above
            this is a duplicate too (catches two imprecise poses of one person, whose OKS is low);
            1.0 = off.
        revive_oks: a new detection with OKS above this against a lost track takes that track's ID.
        keypoint_thr: keypoints below this score are not drawn and not used for boxes.
        fuse_dist: each track's pose is averaged with the detect row of the same step on the same
            person (median joint distance below this share of the pose's size), weighted by their
            keypoint scores; 0 = off (the track query's pose alone).
        merge_dist: two active tracks whose poses' median joint distance is below this share of
            the smaller pose's size, the newer born at most ``merge_age`` frames ago, show one
            person: the newer is retired (as with OKS >= ``duplicate_oks``,
            which small people's poses rarely reach); 0 = off.
        merge_age: ``merge_dist`` retires only tracks born at most this many frames ago (a
            duplicate is born on a tracked person; two established tracks this near are two
            people crossing).
        reseat_dist: a track whose detect row (see ``fuse_dist``) lies within this share of the
            pose's size goes on with that detect query's hidden state instead of its own (its
            query re-anchored where the image shows the person now); needs ``fuse_dist`` > 0;
            0 = off.
        pair_ratio: ``fuse_dist`` and ``reseat_dist`` use a detect row for a track only when every
            other track is at least this many times farther from it (two people overlapping: which
            one it shows is unclear); 1 = the one-to-one assignment alone.
        hold_merged: when two established tracks (both older than ``merge_age``) converge on one
            person (two people crossing, one hidden behind the other), the track that gives way is
            *held* instead of retired: no longer fed to the model or shown, it keeps the last pose
            it had apart from the other track for ``max_lost`` frames, and a detection with OKS
            >= ``revive_oks`` against that pose (the hidden person stepping out) takes its ID back.
    """

    new_track_thr: float = 0.5
    keep_thr: float = 0.35
    max_lost: int = 15
    duplicate_oks: float = 0.6
    duplicate_iou: float = 1.0
    revive_oks: float = 0.3
    keypoint_thr: float = 0.3
    fuse_dist: float = 0.2
    merge_dist: float = 0.14
    merge_age: int = 10
    reseat_dist: float = 0.0
    hold_merged: bool = False
    pair_ratio: float = 2.0

    def override(self, **changes) -> TrackerThresholds:
        """A copy with ``changes`` (strings are parsed; unknown names and wrong types are errors)."""
        return override_fields(self, changes, "tracker threshold")


def build_metadata(cfg: ModelConfig, layout: KeypointLayout, thresholds: TrackerThresholds,
                   num_tokens: int) -> dict[str, str]:
    """String metadata stored in the ONNX file."""
    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model_config": json.dumps(cfg.to_dict()),
        "keypoint_layout": layout.to_json(),
        "input": json.dumps({"width": cfg.input_width, "height": cfg.input_height, "layout": "NHWC",
                             "dtype": "uint8", "color": "RGB", "resize": "letterbox, centred, grey 114",
                             "normalisation": "inside the graph (ImageNet mean/std)"}),
        "state": json.dumps({"track_queries": [1, "N", cfg.d_model], "track_keypoints": [1, "N", cfg.num_keypoints, 2],
                             "prev_tokens": [1, num_tokens, cfg.d_model], "prev_valid": [1],
                             "fed_back_from": {"track_queries": "hidden", "track_keypoints": "keypoints",
                                               "prev_tokens": "tokens"}}),
        "reset_rule": RESET_RULE,
        "thresholds": json.dumps(asdict(thresholds)),
    }


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs from an exported model's metadata."""

    config: ModelConfig
    layout: KeypointLayout
    thresholds: TrackerThresholds
    num_tokens: int

    @property
    def input_size(self) -> tuple[int, int]:
        return self.config.input_width, self.config.input_height


def parse_metadata(meta: dict[str, str], path: str) -> ModelInfo:
    """Check and read the metadata of a PAVENet ONNX file; one-line errors otherwise."""
    if meta.get("format") != FORMAT:
        raise PavenetError(f"{path}: not a PAVENet tracker ONNX file (no '{FORMAT}' metadata); "
                           "export one with pavenet-export")
    version = int(meta.get("format_version", "0"))
    if version != FORMAT_VERSION:
        raise PavenetError(f"{path}: ONNX format version {version}, this PAVENet reads version {FORMAT_VERSION}; "
                           "re-export the checkpoint with this version's pavenet-export")
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["model_config"]))
        layout = KeypointLayout.from_json(meta["keypoint_layout"])
        thresholds = TrackerThresholds(**json.loads(meta.get("thresholds", "{}")))
        num_tokens = int(json.loads(meta["state"])["prev_tokens"][1])
    except (KeyError, ValueError, TypeError) as exc:
        raise PavenetError(f"{path}: PAVENet metadata is incomplete or malformed ({exc})") from None
    return ModelInfo(cfg, layout, thresholds, num_tokens)
