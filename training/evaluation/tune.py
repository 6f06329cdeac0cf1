"""Choosing the tracker's thresholds on the val split (``pavenet-eval --tune``), never on test.

The thresholds that decide which queries become, stay and stop being tracks (``new_track_thr``,
``keep_thr``) change what is fed back, so each candidate pair re-runs the tracker over the same
cached videos; ``keypoint_thr`` only changes which joints are reported, so its candidates re-score
the best run. After the grid, each of ``new_track_thr`` and ``keep_thr`` tries half a step either
side of the best, then ``duplicate_oks`` and ``duplicate_iou`` their candidates (one threshold at
a time, keeping any improvement). The objective is the mean of OKS-AP, MOTA and IDF1 (the project's three targets).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from tqdm import tqdm

from pavenet.contract import TrackerThresholds
from training.evaluation.track_eval import EvalVideo, run_tracker, score

GRID = {"new_track_thr": (0.2, 0.3, 0.4, 0.5, 0.6), "keep_thr": (0.1, 0.2, 0.3, 0.4, 0.5)}
# Then, one threshold at a time from the grid's best: half steps around it, and the duplicate rules.
FINE = {"new_track_thr": (-0.05, 0.05), "keep_thr": (-0.05, 0.05)}
DUPLICATE_GRID = {"duplicate_oks": (0.4, 0.5, 0.6, 0.7), "duplicate_iou": (0.5, 0.7, 1.0)}
KEYPOINT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5)


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
         progress: bool = True, fine: dict | None = None,
         duplicate_grid: dict | None = None) -> tuple[TrackerThresholds, list[Trial]]:
    """Grid search, then the one-at-a-time refinements (``fine``, ``duplicate_grid``; ``{}`` skips
    them); returns the best thresholds (starting from ``tracker.thresholds``) and every trial.

    Pairs with ``keep_thr`` above ``new_track_thr`` are skipped (a new track would be lost at once).
    """
    grid = grid or GRID
    base = tracker.thresholds
    names = list(grid)
    candidates = [dict(zip(names, values)) for values in itertools.product(*grid.values())]
    candidates = [c for c in candidates if c.get("keep_thr", 0) <= c.get("new_track_thr", 1)]
    trials, best, best_results = [], None, None
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

    for c in candidates:
        run(base.override(**c))
    for name, offsets in (fine if fine is not None else FINE).items():
        start = getattr(best.thresholds, name)
        for off in offsets:
            candidate = best.thresholds.override(**{name: round(start + off, 3)})
            if 0 < getattr(candidate, name) < 1 and candidate.keep_thr <= candidate.new_track_thr:
                run(candidate)
    for name, values in (duplicate_grid if duplicate_grid is not None else DUPLICATE_GRID).items():
        for value in values:
            run(best.thresholds.override(**{name: value}))
    bar.close()
    for kthr in keypoint_grid:
        if kthr == best.thresholds.keypoint_thr:
            continue
        trials.append(Trial(best.thresholds.override(keypoint_thr=kthr), score(best_results, kthr)))
    tracker.thresholds = base
    return max(trials, key=lambda t: t.value).thresholds, trials
