"""`pavenet-eval`: score a tracker on synthetic suites or PoseTrack (AP, MOTA, IDF1, ID switches, FPS).

Examples:
    pavenet-eval                                                  # shipped weights, synthetic:test
    pavenet-eval --data synthetic:test --data synthetic:crossing --tracker pavenet --tracker baseline
    pavenet-eval --weights runs/my-run/best.pt --data posetrack21:/data/PoseTrack21 --out eval/pt21
    pavenet-eval --weights model.onnx --data synthetic:test --tune --write   # thresholds chosen on val, stored
    pavenet-eval --split val --videos 48 --seed 6 --out eval/a                 # then the same with --weights b.onnx
    pavenet-eval --compare eval/a eval/b                                        # paired B - A with a 95 % interval
    pavenet-eval --compare s1/a s1/b --compare s2/a s2/b                        # two samples, and pooled

Metrics (see training/evaluation/metrics.py): OKS keypoint AP/AP50/AP75 (pycocotools); PoseTrack per-joint
AP at PCKh@0.5 and MOTA (motmetrics, per joint then summed); person-level IDF1 and ID switches
(motmetrics, OKS >= 0.5 to match); FPS of the tracker's update() alone (decoding excluded).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pavenet.cli_utils import run_cli
from pavenet.contract import TrackerThresholds
from pavenet.errors import PavenetError
from pavenet.model.config import parse_set
from pavenet.track_cli import DEFAULT_WEIGHTS, load_tracker

TRACKERS = ("pavenet", "baseline")
COLUMNS = [("AP", "ap"), ("AP50", "ap50"), ("AP75", "ap75"), ("PCKh-AP", "pck_ap"), ("MOTA", "mota"),
           ("IDF1", "idf1"), ("IDsw", "id_switches"), ("FPS", "fps")]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pavenet-eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                   help=f"ONNX export or .pt checkpoint (default {DEFAULT_WEIGHTS.name}, the shipped model)")
    p.add_argument("--data", action="append", default=[],
                   help="synthetic:test|crossing|reentry|crowd, posetrack18:DIR or posetrack21:DIR (repeatable; "
                        "default synthetic:test)")
    p.add_argument("--tracker", action="append", choices=TRACKERS, default=[],
                   help="pavenet (query propagation, default) or baseline (same detections, Hungarian on OKS "
                        "with constant velocity); repeat for both")
    p.add_argument("--window", default="causal", choices=["causal", "centred"],
                   help="decoder window; streaming evaluation is causal (a centred window needs the next frame)")
    p.add_argument("--videos", type=int, default=8, help="synthetic videos per suite / max PoseTrack videos "
                                                         "(0 = all) (default 8)")
    p.add_argument("--frames", type=int, default=100, help="frames per synthetic video (default 100)")
    p.add_argument("--split", default=None, choices=["test", "val"],
                   help="synthetic split (default test: the reported numbers; choose thresholds on val) / "
                        "PoseTrack annotation folder (default val)")
    p.add_argument("--seed", type=int, default=0, help="synthetic test seed (default 0; the README's numbers)")
    p.add_argument("--keypoint-thr", type=float, default=None,
                   help="keypoint score for a joint to count in MOTA (default: the model's keypoint_thr)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="tracker threshold override, e.g. --set new_track_thr=0.4 --set max_lost=30")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs")
    p.add_argument("--tune", action="store_true",
                   help="choose new_track_thr, keep_thr, duplicate_oks, duplicate_iou, fuse_dist, merge_dist, "
                        "merge_age, reseat_dist, pair_ratio, revive_oks, hold_merged (coordinate descent) and "
                        "keypoint_thr on the val split (objective mean of AP, MOTA and IDF1) instead of reporting; "
                        "never tunes on test; thresholds given with --set stay fixed")
    p.add_argument("--write", action="store_true",
                   help="with --tune: store the chosen thresholds as the defaults in the --weights ONNX file (and in "
                        "the .pt checkpoint of the same name beside it, if there is one)")
    p.add_argument("--out", help="folder for report.json and predictions/<data>/<tracker>/*.json (PoseTrack format)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), action="append",
                   help="instead of running a tracker: compare two earlier --out folders scored on the same videos "
                        "(paired: B - A of the mean of AP, MOTA and IDF1 per block of videos, with a 95 %% interval); "
                        "repeat it for pairs scored on other samples (other --seed) and the blocks of all pairs are "
                        "also pooled into one interval")
    p.add_argument("--block", type=int, default=8,
                   help="with --compare: videos per block (default 8, the size of one test suite)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def format_table(rows: list[dict]) -> str:
    head = f"{'data':<22} {'tracker':<9} " + " ".join(f"{c:>7}" for c, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = [f"{r[k]:>7d}" if isinstance(r[k], int) else f"{r[k]:>7.3f}" if k != "fps" else f"{r[k]:>7.1f}"
                 for _, k in COLUMNS]
        lines.append(f"{r['data']:<22} {r['tracker']:<9} " + " ".join(cells))
    if all("joint_outcomes" in r for r in rows):  # where the labelled joints went (MOTA's budget)
        names = ("unpaired", "hidden_right", "hidden_wrong", "shown_wrong", "shown_right", "extra_shown")
        lines += ["", f"{'labelled joints':<32} " + " ".join(f"{n:>12}" for n in names)]
        lines += [f"{r['data']:<22} {r['tracker']:<9} " + " ".join(f"{r['joint_outcomes'][n]:>12.3f}" for n in names)
                  for r in rows]
    return "\n".join(lines)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from pavenet.baseline import BaselineTracker
    from pavenet.tracker import Tracker
    from training.evaluation.track_eval import (
        count_videos,
        iter_videos,
        run_tracker,
        score,
        write_json,
        write_predictions,
    )

    if args.window == "centred":
        raise PavenetError("--window centred needs the next frame, which the streaming contract does not carry; "
                           "the shipped models are causal (evaluate them with --window causal)")
    if args.videos < 0 or args.frames < 1:
        raise PavenetError("--videos must be >= 0 and --frames >= 1")
    datas, trackers = args.data or ["synthetic:test"], args.tracker or ["pavenet"]
    thresholds = parse_set(args.set)
    TrackerThresholds().override(**thresholds)  # names and types checked before anything loads
    if args.write and not args.tune:
        raise PavenetError("--write stores tuned thresholds: use it with --tune")
    if args.tune:
        return _tune(args, datas, thresholds)
    if args.compare:
        from training.evaluation.compare import compare_runs, format_comparison, format_pooled, pool_blocks

        all_rows = []
        for pair in args.compare:
            rows = compare_runs(*pair, block=args.block, keypoint_thr=args.keypoint_thr)
            print(format_comparison(rows, *pair))
            all_rows += rows
        summary = [f"{r['data']} {r['tracker']} B - A {r['diff']:+.3f} ({r['verdict']})" for r in all_rows]
        if len(args.compare) > 1:
            for pooled in pool_blocks(all_rows):
                print(format_pooled(pooled))
                summary.append(f"{pooled['data']} {pooled['tracker']} pooled B - A {pooled['diff']:+.3f} "
                               f"({pooled['verdict']})")
        print(f"compared {len(all_rows)} (data, tracker) row(s): " + "; ".join(summary))
        return 0
    rows, start = [], time.perf_counter()
    for name in dict.fromkeys(trackers):
        tracker = load_tracker(args.weights, args.device, False,
                               BaselineTracker if name == "baseline" else Tracker, **thresholds)
        kpt_thr = args.keypoint_thr if args.keypoint_thr is not None else tracker.thresholds.keypoint_thr
        for data in datas:
            if not args.no_progress:
                print(f"{name} on {data} ({tracker.provider}) ...", file=sys.stderr)
            split = args.split or ("test" if data.startswith("synthetic") else "val")
            results, timing = run_tracker(tracker, iter_videos(data, args.videos, args.frames, args.seed, split),
                                          count_videos(data, args.videos), not args.no_progress)
            metrics = score(results, kpt_thr)
            label = data if split == ("test" if data.startswith("synthetic") else "val") else f"{data}@{split}"
            rows.append({"data": label, "tracker": name, **metrics, **timing, "provider": tracker.provider,
                         "keypoint_thr": kpt_thr})
            if args.out:
                write_predictions(results, Path(args.out) / "predictions" / data.replace(":", "-").replace("/", "_")
                                  / name)
    print(format_table(rows))
    if args.out:
        write_json(Path(args.out) / "report.json", {"weights": str(args.weights), "seed": args.seed,
                                                    "split": args.split,
                                                    "videos": args.videos, "frames": args.frames,
                                                    "thresholds": thresholds, "results": rows})
    where = f"; report in {args.out}/report.json" if args.out else ""
    print(f"evaluated {len(trackers)} tracker(s) on {len(datas)} dataset(s) in "
          f"{time.perf_counter() - start:.0f} s{where}")
    return 0


def _tune(args, datas: list[str], fixed: dict) -> int:
    """``--tune``: threshold search on the val split; prints every trial and the choice, optionally stores it."""
    from pavenet.tracker import Tracker
    from training.evaluation.track_eval import iter_videos
    from training.evaluation.tune import FINE, GRID, cache_videos, objective, tune

    if (args.split or "val") != "val":
        raise PavenetError("--tune chooses thresholds on the val split only (test is for reporting)")
    if args.write and not str(args.weights).endswith(".onnx"):
        raise PavenetError("--write stores thresholds in an ONNX export; --weights is not one")
    if len(datas) != 1:
        raise PavenetError("--tune takes one --data")
    start = time.perf_counter()
    tracker = load_tracker(args.weights, args.device, False, Tracker, **fixed)
    def free(table: dict) -> dict:  # thresholds given with --set stay as given
        return {k: v for k, v in table.items() if k not in fixed}

    videos = cache_videos(iter_videos(datas[0], args.videos, args.frames, args.seed, "val"))
    best, trials = tune(tracker, videos, free(GRID), progress=not args.no_progress, fine=free(FINE))
    names = [*GRID, "keypoint_thr"]
    print(" ".join(f"{n:>13}" for n in names), f"{'AP':>6} {'MOTA':>7} {'IDF1':>6} {'IDsw':>5} {'objective':>9}")
    for t in sorted(trials, key=lambda t: -objective(t.metrics)):
        m = t.metrics
        print(" ".join(f"{getattr(t.thresholds, n):>13.2f}" for n in names),
              f"{m['ap']:>6.3f} {m['mota']:>7.3f} {m['idf1']:>6.3f} {m['id_switches']:>5d} {objective(m):>9.3f}")
    chosen = {n: getattr(best, n) for n in names}
    where = ""
    if args.write:
        from export.onnx_export import set_thresholds

        stored = [set_thresholds(args.weights, best)]
        twin = Path(args.weights).with_suffix(".pt")  # the export's checkpoint beside it, if any
        if twin.exists():
            stored.append(set_thresholds(twin, best))
        where = "; stored in " + " and ".join(str(p) for p in stored)
    print(f"tuned on {datas[0]}@val ({len(videos)} videos x {args.frames} frames, {len(trials)} trials, "
          f"{time.perf_counter() - start:.0f} s): {chosen}{where}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
