"""Choosing the tracker's thresholds on the val split (``pavenet-eval --tune``), never on test.

The thresholds that decide which queries become, stay and stop being tracks (``new_track_thr``,
``keep_thr``, the duplicate rules ``duplicate_oks``, ``duplicate_iou``, ``merge_dist``,
``merge_age``, ``revive_oks``, ``hold_merged``) and what each track is fed (``fuse_dist``,
``reseat_dist``, ``pair_ratio``) change what is fed back, so each candidate re-runs the tracker over the same cached
videos. They interact (a lower
``new_track_thr`` pays only with a stricter duplicate rule), so the search is coordinate descent:
each threshold in turn sweeps its candidates with the others at their best so far, in passes
until a pass changes nothing; then half steps around the best ``new_track_thr`` and ``keep_thr``.
``keypoint_thr`` only changes which joints are reported, so its candidates re-score the best run.
The objective is the mean of OKS-AP, MOTA and IDF1 (the project's three targets).
"""

from __future__ import annotations

from dataclasses import dataclass

from tqdm import tqdm

from pavenet.contract import TrackerThresholds
from training.evaluation.track_eval import EvalVideo, run_tracker, score

GRID = {"new_track_thr": (0.2, 0.3, 0.4, 0.5, 0.6), "keep_thr": (0.2, 0.3, 0.4, 0.5, 0.6),
        "duplicate_oks": (0.4, 0.5, 0.6, 0.7), "duplicate_iou": (0.5, 0.7, 1.0),
        "fuse_dist": (0.0, 0.1, 0.2, 0.3), "merge_dist": (0.0, 0.1, 0.14, 0.2), "merge_age": (5, 10, 30),
        "reseat_dist": (0.0, 0.03, 0.06), "revive_oks": (0.1, 0.2, 0.3, 0.4),
        "hold_merged": (False, True), "pair_ratio": (1.0, 1.5, 2.0, 3.0)}
FINE = {"new_track_thr": (-0.05, 0.05), "keep_thr": (-0.05, 0.05)}  # offsets around the best
MAX_PASSES = 3
KEYPOINT_GRID = (0.2, 0.3, 0.4, 0.45, 0.5, 0.55, 0.6)


def objective(metrics: dict) -> float:
    """What tuning maximises: mean of OKS-AP, MOTA and IDF1."""
    return (metrics["ap"] + metrics["mota"] + metrics["idf1"]) / 3


def cache_videos(videos) -> list[EvalVideo]:
    """Load every frame once, so each candidate re-runs on the same images without regenerating them."""
    out = []
    for v in videos:
        images = [v.load(t) for t in range(len(v.frames))]
        out.append(EvalVideo(v.name, v.frames, images.__getitem__, v.layout))
    return out


@dataclass
class Trial:
    thresholds: TrackerThresholds
    metrics: dict

    @property
    def value(self) -> float:
        return objective(self.metrics)


def tune(tracker, videos: list[EvalVideo], grid: dict | None = None, keypoint_grid=KEYPOINT_GRID,
         progress: bool = True, fine: dict | None = None) -> tuple[TrackerThresholds, list[Trial]]:
    """Coordinate descent over ``grid`` from ``tracker.thresholds``, then the half steps of ``fine``
    (``{}`` skips them), then ``keypoint_grid``; returns the best thresholds and every trial.

    ``keep_thr`` may exceed ``new_track_thr`` (a new track must then score higher in its next
    frames to stay: the shipped stage-4 setting was such a pair).
    """
    grid = GRID if grid is None else grid
    fine = FINE if fine is None else fine
    base = tracker.thresholds
    trials: list[Trial] = []
    best: Trial | None = None
    best_results = None
    bar = tqdm(desc="tune", unit="setting", disable=not progress, leave=False)

    def run(thresholds: TrackerThresholds) -> None:
        nonlocal best, best_results
        if any(t.thresholds == thresholds for t in trials):
            return
        tracker.thresholds = thresholds
        results, _ = run_tracker(tracker, videos, progress=False)
        trials.append(Trial(thresholds, score(results, thresholds.keypoint_thr)))
        bar.update(1)
        if best is None or trials[-1].value > best.value:
            best, best_results = trials[-1], results

    run(base)
    for _ in range(MAX_PASSES):
        before = best.thresholds
        for name, values in grid.items():
            for value in values:
                run(best.thresholds.override(**{name: value}))
        if best.thresholds == before:
            break
    for name, offsets in fine.items():
        start = getattr(best.thresholds, name)
        for off in offsets:
            value = round(start + off, 3)
            if 0 < value < 1:
                run(best.thresholds.override(**{name: value}))
    bar.close()
    for kthr in keypoint_grid:
        if kthr == best.thresholds.keypoint_thr:
            continue
        trials.append(Trial(best.thresholds.override(keypoint_thr=kthr), score(best_results, kthr)))
    tracker.thresholds = base
    return max(trials, key=lambda t: t.value).thresholds, trials
