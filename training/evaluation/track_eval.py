"""Run a streaming tracker over evaluation sequences and score it (``pavenet-eval``).

Sequences: ``synthetic:SUITE`` (the test split of a named suite: ``test`` = ``mixed``,
``crossing``, ``reentry``, ``crowd``; fixed seed, so anyone regenerates the same videos) or
``posetrack18:DIR`` / ``posetrack21:DIR`` (the dataset's ``val`` annotations by default; every frame is
tracked, the labelled ones are scored, predictions inside ignore regions are dropped).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pavenet.clip import Frame
from pavenet.errors import DataError, PavenetError
from pavenet.layouts import get_layout
from pavenet.synth import SynthConfig, generate_clip
from pavenet.synth.config import suite_config
from training.data.posetrack import read_posetrack_dir
from training.evaluation.metrics import PredFrame, coco_keypoint_ap, posetrack_metrics

SUITE_ALIASES = {"test": "mixed"}


@dataclass
class EvalVideo:
    name: str
    frames: list[Frame]  # ground truth; images may be None (then ``load`` reads them)
    load: object  # callable: frame index -> [H, W, 3] uint8 BGR
    layout: str


def iter_videos(spec: str, videos: int = 8, frames: int = 100, seed: int = 0, split: str = "test"
                ) -> Iterator[EvalVideo]:
    """The videos of ``spec`` (see the module docstring); ``split`` picks the synthetic split
    (``test`` for reported numbers, ``val`` for choosing thresholds) or the PoseTrack folder."""
    kind, _, arg = spec.partition(":")
    if kind == "synthetic":
        suite = SUITE_ALIASES.get(arg or "test", arg or "test")
        cfg = suite_config(suite, SynthConfig())
        for i in range(videos):
            clip = generate_clip(cfg, split, seed, i, frames)
            yield EvalVideo(f"{suite}-{i:03d}", clip.frames, lambda t, c=clip: c.frames[t].image, clip.layout)
        return
    if kind in ("posetrack18", "posetrack21"):
        root = Path(arg)
        subs = ("posetrack_data", "annotations")
        folder = next((root / s / split for s in subs if (root / s / split).is_dir()), None)
        if not arg or folder is None:
            raise DataError(arg or spec, f"needs a PoseTrack root with posetrack_data/{split} or annotations/{split}")
        for seq in read_posetrack_dir(folder, image_root=root)[:videos or None]:
            yield EvalVideo(seq.name, seq.frames, seq.load_image, seq.layout)
        return
    raise PavenetError(f"unknown evaluation data {spec!r}; use synthetic:test|crossing|reentry|crowd, "
                       "posetrack18:DIR or posetrack21:DIR")


def count_videos(spec: str, videos: int) -> int | None:
    return videos if spec.startswith("synthetic") else None


def outside_ignore(pred: PredFrame, frame: Frame, size: tuple[int, int]) -> PredFrame:
    """``pred`` without the poses centred inside ``frame``'s ignore regions; ``size`` (W, H)."""
    if not frame.ignore_regions or not len(pred.track_ids):
        return pred
    mask = frame.ignore_mask(size[1], size[0])
    centre = np.nanmean(pred.keypoints, 1).round().astype(int)
    x = centre[:, 0].clip(0, size[0] - 1)
    y = centre[:, 1].clip(0, size[1] - 1)
    keep = ~mask[y, x]
    return PredFrame(pred.track_ids[keep], pred.keypoints[keep], pred.keypoint_scores[keep], pred.scores[keep])


def run_tracker(tracker, videos: Iterator[EvalVideo], total: int | None = None,
                progress: bool = True) -> tuple[list[tuple[EvalVideo, list[PredFrame]]], dict]:
    """Track every video from a fresh state; returns (video, predictions) pairs and timing."""
    results, seconds, frames = [], 0.0, 0
    bar = tqdm(total=total, unit="video", disable=not progress, leave=False)
    for video in videos:
        tracker.reset()
        preds = []
        for t, frame in enumerate(video.frames):
            image = video.load(t)
            start = time.perf_counter()
            poses = tracker.update(image)
            seconds += time.perf_counter() - start
            frames += 1
            preds.append(outside_ignore(PredFrame.from_poses(poses), frame, (image.shape[1], image.shape[0])))
        for f in video.frames:
            f.image = None  # keep only annotations in memory
        results.append((video, preds))
        bar.update(1)
    bar.close()
    return results, {"frames": frames, "fps": frames / seconds if seconds else 0.0}


def score(results: list[tuple[EvalVideo, list[PredFrame]]], keypoint_thr: float) -> dict:
    """Every metric of :mod:`training.evaluation.metrics` over the tracked videos."""
    if not results:
        raise PavenetError("no videos to evaluate")
    layout = get_layout(results[0][0].layout)
    seqs = [(v.frames, p) for v, p in results]
    return {**coco_keypoint_ap(seqs, layout), **posetrack_metrics(seqs, layout, keypoint_thr)}


def write_predictions(results: list[tuple[EvalVideo, list[PredFrame]]], folder: Path) -> None:
    """One PoseTrack21-style JSON per video (images by frame index, annotations with track_id,
    keypoints as x, y, score triples), for external scorers (poseval, the PoseTrack21 kit)."""
    folder.mkdir(parents=True, exist_ok=True)
    for v, (video, preds) in enumerate(results):
        images, anns = [], []
        for t, pred in enumerate(preds):
            image_id = v * 100000 + t
            images.append({"id": image_id, "frame_id": image_id, "vid_id": video.name, "frame_index": t,
                           "is_labeled": video.frames[t].labelled})
            for j in range(len(pred.track_ids)):
                kp = np.concatenate([pred.keypoints[j], pred.keypoint_scores[j][:, None]], 1)
                lo, hi = pred.keypoints[j].min(0), pred.keypoints[j].max(0)
                anns.append({"image_id": image_id, "track_id": int(pred.track_ids[j]), "category_id": 1,
                             "keypoints": [round(float(x), 2) for x in kp.reshape(-1)],
                             "scores": [round(float(s), 4) for s in pred.keypoint_scores[j]],
                             "score": round(float(pred.scores[j]), 4),
                             "bbox": [round(float(x), 2) for x in (*lo, *(hi - lo))]})
        write_json(folder / f"{video.name}.json", {"images": images, "annotations": anns})


def write_json(path: Path, doc: dict) -> None:
    """Atomic JSON write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)
