"""Validation during a run: the fixed val clips scored by :func:`training.evaluation.evaluate.evaluate`,
optionally whole val videos through the runtime's tracker (:class:`TrackValidator`), a console line,
and the best score so far (which decides ``best.pt``)."""

from __future__ import annotations

import torch
from tqdm import tqdm

from pavenet.contract import TrackerThresholds
from pavenet.errors import PavenetError
from training.data.dataset import ClipDataset
from training.evaluation.evaluate import evaluate


class TrackValidator:
    """The runtime's tracker (streaming step, track lifecycle, fusion, thresholds) around the model
    being trained, over whole val videos, scored as ``pavenet-eval`` scores them.

    Per-frame validation can rise while the tracker falls (a model's poses improve while its track
    queries drift); this measures what ships. The videos are generated (or read) once and kept.
    """

    def __init__(self, data: str, videos: int, frames: int, thresholds: TrackerThresholds):
        from training.evaluation.track_eval import iter_videos
        from training.evaluation.tune import cache_videos

        kind = data.partition(":")[0]
        if kind == "synthetic":
            spec = "synthetic:test"  # the mixed suite, val split (pavenet-eval --split val)
        elif kind in ("posetrack18", "posetrack21"):
            spec = data
        else:
            raise PavenetError(f"val_track_videos needs video data (synthetic or PoseTrack), not {data!r}")
        self.thresholds = thresholds
        self.videos = cache_videos(iter_videos(spec, videos, frames, seed=0, split="val"))

    def __call__(self, model: torch.nn.Module) -> dict:
        """``track_ap``, ``track_mota``, ``track_idf1``, ``track_switches`` and ``track_mean`` (mean of
        AP, MOTA and IDF1) of ``model`` (a causal-window PAVENet) on the kept videos."""
        from pavenet.backends import TorchBackend
        from pavenet.tracker import Tracker
        from training.evaluation.track_eval import run_tracker, score
        from training.evaluation.tune import objective

        was_training = model.training
        try:
            with torch.no_grad():
                tracker = Tracker(TorchBackend.from_model(model, self.thresholds), self.thresholds)
                results, _ = run_tracker(tracker, iter(self.videos), progress=False)
        finally:
            model.train(was_training)
        m = score(results, self.thresholds.keypoint_thr)
        return {"track_ap": m["ap"], "track_mota": m["mota"], "track_idf1": m["idf1"],
                "track_switches": m["id_switches"], "track_mean": objective(m)}


class Validator:
    """Scores a model on ``val_set`` (and with ``tracks``, on whole videos through the tracker);
    :meth:`is_best` keeps the best ``track_mean`` when the tracker is validated, else the best F1 at
    OKS 0.5 (threshold-free enough: scores drift while a model trains)."""

    def __init__(self, val_set: ClipDataset, sigmas: torch.Tensor, device: torch.device, batch_size: int,
                 best: float = -1.0, tracks: TrackValidator | None = None):
        self.val_set, self.sigmas, self.device, self.batch_size = val_set, sigmas, device, batch_size
        self.best, self.tracks = best, tracks

    def __call__(self, model: torch.nn.Module, epoch: int) -> dict:
        m = evaluate(model, self.val_set, self.sigmas, self.device, self.batch_size)
        line = (f"val epoch {epoch}: mean OKS {m['mean_oks']:.3f}, recall@OKS0.5 {m['recall_oks50']:.3f}, "
                f"precision@OKS0.5 {m['precision_oks50']:.3f}, best-query OKS {m['best_query_oks']:.3f}, "
                f"best F1 {m['f1_best']:.3f} at score {m['thr_best']}")
        if self.tracks is not None:
            m.update(self.tracks(model))
            line += (f"; tracker on {len(self.tracks.videos)} val videos: AP {m['track_ap']:.3f}, MOTA "
                     f"{m['track_mota']:.3f}, IDF1 {m['track_idf1']:.3f}, {m['track_switches']} ID switches")
        tqdm.write(line)
        return m

    def is_best(self, metrics: dict) -> bool:
        value = metrics["track_mean"] if "track_mean" in metrics else metrics["f1_best"]
        if value > self.best:
            self.best = value
            return True
        return False
