"""Training samples: clips from a source, augmented, as tensors + normalised targets.

Every sample is a pure function of (seed, index), so a resumed run sees exactly the samples an
uninterrupted run would have seen, whatever the number of workers.

Sources (``--data``): ``synthetic`` (the embedded generator), ``posetrack18:DIR``,
``posetrack21:DIR`` (dataset roots), ``coco:DIR`` (a COCO root with
``annotations/person_keypoints_train2017.json`` and ``train2017/``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from pavenet.clip import Clip, Frame
from pavenet.errors import DataError, PavenetError
from pavenet.geometry import letterbox_matrix
from pavenet.synth import SynthConfig, generate_clip
from training.data.augment import AugmentConfig, augment_clip, transform_clip
from training.data.coco import CocoKeypoints
from training.data.posetrack import read_posetrack_dir
from training.data.sampling import clip_starts
from training.objective.matcher import TargetBatch


class SyntheticSource:
    layout = "coco17"

    def __init__(self, cfg: SynthConfig, split: str, seed: int):
        self.cfg, self.split, self.seed = cfg, split, seed

    def clip(self, index: int, length: int, rng: np.random.Generator) -> Clip:
        return generate_clip(self.cfg, self.split, self.seed, index, length)


class PoseTrackSource:
    """Clips of PoseTrack videos whose last frame is labelled."""

    def __init__(self, root: Path, split: str, stride: int = 1):
        folder = next((root / sub / split for sub in ("posetrack_data", "annotations")
                       if (root / sub / split).is_dir()), None)
        if folder is None:
            raise DataError(root, f"no PoseTrack annotation folder posetrack_data/{split} or annotations/{split}")
        self.videos = read_posetrack_dir(folder, image_root=root)
        self.layout = self.videos[0].layout
        self.stride = stride

    def clip(self, index: int, length: int, rng: np.random.Generator) -> Clip:
        for _ in range(100):
            video = self.videos[int(rng.integers(len(self.videos)))]
            starts = clip_starts(video.labelled, length, self.stride, "last")
            if len(starts):
                s = int(rng.choice(starts))
                return video.clip([s + i * self.stride for i in range(length)])
        raise DataError("posetrack", f"no video has {length} frames ending on a labelled frame")


class CocoSource:
    layout = "coco17"

    def __init__(self, root: Path, split: str):
        name = "train2017" if split == "train" else "val2017"
        self.data = CocoKeypoints(root / "annotations" / f"person_keypoints_{name}.json", root / name)

    def clip(self, index: int, length: int, rng: np.random.Generator) -> Clip:
        return self.data.pseudo_clip(int(rng.integers(len(self.data))), length, rng)


def build_source(spec: str, split: str, seed: int, synth: SynthConfig | None = None):
    """``synthetic`` | ``posetrack18:DIR`` | ``posetrack21:DIR`` | ``coco:DIR``."""
    kind, _, path = spec.partition(":")
    if kind == "synthetic":
        return SyntheticSource(synth or SynthConfig(), split, seed)
    if kind in ("posetrack18", "posetrack21", "coco"):
        root = Path(path)
        if not path or not root.is_dir():
            raise DataError(path or spec, f"--data {kind}:DIR needs an existing dataset folder")
        return CocoSource(root, split) if kind == "coco" else PoseTrackSource(root, split)
    raise PavenetError(f"unknown data source {spec!r}; use synthetic, posetrack18:DIR, posetrack21:DIR or coco:DIR")


def frame_targets(frame: Frame, width: int, height: int) -> dict[str, np.ndarray]:
    """Normalised targets of one frame; people without a labelled keypoint are left out."""
    vis = frame.keypoints[..., 2] > 0
    keep = vis.any(1)
    kp = (frame.keypoints[keep, :, :2] + 0.5) / np.array([width, height], np.float32)
    boxes = frame.boxes[keep]
    wh = boxes[:, 2:] - boxes[:, :2]
    pts_wh = np.array([np.ptp(k[v], 0) if v.any() else np.zeros(2) for k, v in
                       zip(frame.keypoints[keep, :, :2], vis[keep])]).reshape(-1, 2)
    wh = np.where(np.isfinite(wh) & (wh > 0), wh, pts_wh)  # files without boxes: the keypoints' extent
    area = np.maximum(wh[:, 0] * wh[:, 1], 1.0) / (width * height)
    size = np.array([width, height, width, height], np.float32)
    ignore = np.array([[*p.min(0), *p.max(0)] for p in frame.ignore_regions if len(p)], np.float32).reshape(-1, 4)
    return {"keypoints": kp.astype(np.float32), "visible": vis[keep], "area": area.astype(np.float32),
            "track_ids": frame.track_ids[keep].astype(np.int64), "ignore": (ignore + 0.5) / size}


class ClipDataset(Dataset):
    """Map-style dataset: sample ``i`` is a clip of ``length`` frames drawn with rng(seed, i).

    Returns ``{"images": uint8 [T, 3, H, W] RGB, "targets": T dicts of numpy arrays}``.
    """

    def __init__(self, source, length: int, width: int, height: int, seed: int,
                 augment: AugmentConfig | None, size: int = 10**9):
        self.source, self.length, self.width, self.height = source, length, width, height
        self.seed, self.augment, self.size = seed, augment, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        clip = self.source.clip(index, self.length, rng)
        if self.augment is not None:
            clip = augment_clip(clip, self.augment, rng)
        else:
            out = (self.width, self.height)
            clip = transform_clip(clip, letterbox_matrix(clip.size, out), out)
        images = np.stack([f.image[..., ::-1].transpose(2, 0, 1) for f in clip.frames])  # BGR -> RGB, CHW
        return {"images": torch.from_numpy(np.ascontiguousarray(images)), "index": index,
                "targets": [frame_targets(f, self.width, self.height) for f in clip.frames]}


def collate(samples: list[dict]) -> dict:
    """-> images uint8 [B, T, 3, H, W]; index [B] sample indices; targets: T :class:`TargetBatch`
    (one per frame; ``targets[t][b]`` is image b's :class:`training.objective.matcher.Targets`)."""
    images = torch.stack([s["images"] for s in samples])
    frames = len(samples[0]["targets"])
    targets = [TargetBatch.stack([s["targets"][t] for s in samples]) for t in range(frames)]
    return {"images": images, "index": torch.tensor([s["index"] for s in samples]), "targets": targets}


class StepSampler(Sampler[int]):
    """Sample indices of a run from global step ``start_step`` on (one rank's share).

    Step s of rank r uses indices ``(s * world + r) * batch + [0, batch)``: independent of
    workers, and resumable at any step.
    """

    def __init__(self, batch: int, start_step: int, end_step: int, rank: int = 0, world: int = 1):
        self.batch, self.start, self.end, self.rank, self.world = batch, start_step, end_step, rank, world

    def __len__(self) -> int:
        return max(self.end - self.start, 0) * self.batch

    def __iter__(self):
        for step in range(self.start, self.end):
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)
