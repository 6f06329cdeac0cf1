"""Paired comparison of two ``pavenet-eval --out`` runs on the same videos (``pavenet-eval --compare``).

Two trackers scored on the same videos differ far less from each other than two samples of
videos do (the synthetic val split's 16-video samples disagree by about +-0.03 for one model), so
a decision between two models or settings should rest on the *paired* difference. The videos are
scored in blocks of ``block`` videos (8 = the size of one test suite); each block gives the
difference of the objective (mean of OKS-AP, MOTA and IDF1) between B and A, and the mean of
those differences gets a Student-t 95 % interval over the blocks. Nothing is re-run: the ground
truth is regenerated (synthetic) or re-read (PoseTrack) and the stored predictions are re-scored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from pavenet.errors import PavenetError
from pavenet.layouts import get_layout
from training.evaluation.metrics import PredFrame
from training.evaluation.track_eval import iter_videos, score
from training.evaluation.tune import objective

OBJECTIVE = ("ap", "mota", "idf1")  # the columns of tune.objective, printed beside it
SAME = ("seed", "split", "videos", "frames")  # report fields that must agree between the two runs


def read_report(folder: str | Path) -> dict:
    """The ``report.json`` of a ``pavenet-eval --out`` folder (clear errors when it is not one)."""
    path = Path(folder) / "report.json"
    if not path.is_file():
        raise PavenetError(f"{folder}: no report.json (pass folders written by pavenet-eval --out)")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PavenetError(f"{path}: not a pavenet-eval report ({e})") from e
    if not isinstance(report, dict) or "results" not in report:
        raise PavenetError(f"{path}: not a pavenet-eval report (no results)")
    return report


def read_predictions(path: Path, frames: int, k: int) -> list[PredFrame]:
    """A video's predictions as written by ``write_predictions`` -> ``frames`` PredFrames."""
    if not path.is_file():
        raise PavenetError(f"{path}: missing (was the run written with --out?)")
    doc = json.loads(path.read_text())
    index = {img["id"]: int(img["frame_index"]) for img in doc["images"]}
    per_frame: list[list[dict]] = [[] for _ in range(frames)]
    for ann in doc["annotations"]:
        t = index[ann["image_id"]]
        if t < frames:
            per_frame[t].append(ann)
    preds = []
    for anns in per_frame:
        if not anns:
            preds.append(PredFrame.empty(k))
            continue
        kp = np.asarray([a["keypoints"] for a in anns], np.float32).reshape(len(anns), k, 3)
        preds.append(PredFrame(np.asarray([a["track_id"] for a in anns], np.int64), kp[..., :2], kp[..., 2],
                               np.asarray([a["score"] for a in anns], np.float32)))
    return preds


def compare_runs(folder_a: str | Path, folder_b: str | Path, block: int = 8, keypoint_thr: float | None = None,
                 keypoint_thr_b: float | Sequence[float] | None = None) -> list[dict]:
    """Score both runs' predictions in blocks of ``block`` videos, with the joint threshold each
    report recorded unless ``keypoint_thr`` (both runs) or ``keypoint_thr_b`` (run B only) is given:
    ``compare_runs(a, a, keypoint_thr_b=0.5)`` is one run re-scored at another ``keypoint_thr``,
    and a sequence of values re-scores B at each of them (the videos are loaded once).

    Returns one dict per (data, tracker) present in both runs (and per value of a sequence
    ``keypoint_thr_b``, in its order): ``data``, ``tracker``, ``keypoint_thr`` (A's, B's), pooled
    metrics ``a`` and ``b`` (over all videos), ``blocks`` (list of (objective A, objective B)),
    ``diff`` (mean block difference B - A), ``low`` / ``high`` (its 95 % interval; NaN with one
    block) and ``verdict``.
    """
    ra, rb = read_report(folder_a), read_report(folder_b)
    for name in SAME:
        if ra.get(name) != rb.get(name):
            raise PavenetError(f"the runs differ in {name} ({ra.get(name)} vs {rb.get(name)}): "
                               "compare runs on the same videos")
    if block < 1:
        raise PavenetError("--block must be >= 1")
    rows_b = {(r["data"], r["tracker"]): r for r in rb["results"]}
    out = []
    for row_a in ra["results"]:
        key = (row_a["data"], row_a["tracker"])
        if key not in rows_b:
            continue
        row_b = rows_b[key]
        spec = row_a["data"].split("@")[0]
        thr_a, thr_b = (keypoint_thr if keypoint_thr is not None else r.get("keypoint_thr") for r in (row_a, row_b))
        if keypoint_thr_b is not None:
            thrs_b = [keypoint_thr_b] if isinstance(keypoint_thr_b, (int, float)) else list(keypoint_thr_b)
        else:
            thrs_b = [thr_b]
        if thr_a is None or None in thrs_b:
            raise PavenetError(f"{spec}: the report does not record the keypoint threshold (older pavenet-eval): "
                               "pass --keypoint-thr")
        split = ra.get("split") or ("test" if spec.startswith("synthetic") else "val")
        sub = spec.replace(":", "-").replace("/", "_")
        res_a, res_b = [], []
        for video in iter_videos(spec, ra["videos"], ra["frames"], ra["seed"], split):
            for f in video.frames:
                f.image = None
            n, k = len(video.frames), len(get_layout(video.layout).sigmas)
            for folder, res in ((folder_a, res_a), (folder_b, res_b)):
                preds = read_predictions(Path(folder) / "predictions" / sub / key[1] / f"{video.name}.json", n, k)
                res.append((video, preds))
        if not res_a:
            raise PavenetError(f"{spec}: no videos")
        starts = range(0, len(res_a), block)
        blocks_a = [objective(score(res_a[s:s + block], thr_a)) for s in starts]
        metrics_a = score(res_a, thr_a)
        for thr_b in thrs_b:
            pairs = [(a, objective(score(res_b[s:s + block], thr_b))) for a, s in zip(blocks_a, starts)]
            out.append({"data": row_a["data"], "tracker": key[1], "keypoint_thr": (thr_a, thr_b), "a": metrics_a,
                        "b": score(res_b, thr_b), "blocks": pairs, **_interval(pairs)})
    if not out:
        raise PavenetError("the two runs share no (data, tracker) row")
    return out


def _interval(pairs: list[tuple[float, float]]) -> dict:
    """Mean block difference B - A of ``pairs`` (objective A, objective B), its Student-t 95 %
    interval and the verdict: ``{"diff", "low", "high", "verdict"}``."""
    diffs = np.array([b - a for a, b in pairs])
    mean = float(diffs.mean())
    if len(diffs) > 1:
        half = float(stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs)))
    else:
        half = float("nan")
    low, high = mean - half, mean + half
    verdict = ("B ahead" if low > 0 else "A ahead" if high < 0 else
               "no difference shown" if np.isfinite(half) else "one block: no interval")
    return {"diff": mean, "low": low, "high": high, "verdict": verdict}


def pool_blocks(rows: list[dict]) -> list[dict]:
    """The blocks of several :func:`compare_runs` results (e.g. the same two models on val samples
    of other seeds) pooled per (data, tracker): blocks of different samples are independent videos,
    so one interval over all of them is the pooled estimate of B - A. Returns one dict per (data,
    tracker): ``{"data", "tracker", "runs", "blocks", "positive", "diff", "low", "high", "verdict"}``."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["tracker"]), []).append(r)
    out = []
    for (data, tracker), group in groups.items():
        pairs = [p for r in group for p in r["blocks"]]
        out.append({"data": data, "tracker": tracker, "runs": len(group), "blocks": len(pairs),
                    "positive": sum(b > a for a, b in pairs), **_interval(pairs)})
    return out


def format_pooled(pooled: dict) -> str:
    """One line for a row of :func:`pool_blocks`."""
    return (f"\n{pooled['data']} / {pooled['tracker']} pooled over {pooled['runs']} comparisons ({pooled['blocks']} "
            f"blocks, {pooled['positive']} with B ahead): B - A {pooled['diff']:+.4f} (95 % interval "
            f"{pooled['low']:+.4f} .. {pooled['high']:+.4f}): {pooled['verdict']}")


def format_comparison(rows: list[dict], name_a: str, name_b: str) -> str:
    """Human-readable table of :func:`compare_runs`."""
    lines = [f"A = {name_a}", f"B = {name_b}", "objective = mean of AP, MOTA and IDF1"]
    for r in rows:
        a, b = r["a"], r["b"]
        lines.append(f"\n{r['data']} / {r['tracker']}")
        lines.append("      " + "".join(f"{m.upper():>8}" for m in OBJECTIVE) + "    IDsw  objective")
        for tag, m in (("A", a), ("B", b)):
            lines.append(f"  {tag}   " + "".join(f"{m[x]:8.3f}" for x in OBJECTIVE)
                         + f"{m['id_switches']:8d}{objective(m):11.3f}")
        blocks = ", ".join(f"{pb - pa:+.3f}" for pa, pb in r["blocks"])
        lines.append(f"  B - A per block of videos: {blocks}")
        lines.append(f"  B - A: {r['diff']:+.4f} (95 % interval {r['low']:+.4f} .. {r['high']:+.4f}, "
                     f"{len(r['blocks'])} blocks): {r['verdict']}")
    return "\n".join(lines)
