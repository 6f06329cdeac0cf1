"""Re-score stored ``pavenet-eval --out`` runs at other ``keypoint_thr`` values, paired against the
threshold each run recorded (no model or tracker re-run: ``keypoint_thr`` only decides which joints
are reported, so it moves MOTA and the joint outcomes, never AP or the tracks).

    python benchmarks/keypoint_thr.py runs/ev/s20-48-40 runs/ev/s20-48-41 --grid 0.4 0.5 0.55

Prints, per threshold, the pooled AP / MOTA / IDF1 and joint outcomes over all runs, then the paired
block difference of the objective (mean of AP, MOTA and IDF1) against the recorded threshold with its
95 % interval (as ``pavenet-eval --compare``). Then, per joint, the threshold with the best MOTA and
the total MOTA those per-joint thresholds would give (each joint's MOTA counts only that joint's
shown scores, so the joints are independent; the total is their mean weighted by labelled joints).
Choose on val runs, never on test.
"""

from __future__ import annotations

import argparse

from training.evaluation.compare import compare_runs, pool_blocks
from training.evaluation.tune import objective

OUTCOMES = ("shown_right", "shown_wrong", "hidden_right", "hidden_wrong")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="pavenet-eval --out folders (val split)")
    parser.add_argument("--grid", type=float, nargs="+", default=[0.35, 0.4, 0.45, 0.5, 0.55, 0.6],
                        help="keypoint_thr values to try (default 0.35 .. 0.6)")
    parser.add_argument("--block", type=int, default=8, help="videos per block of the paired interval (default 8)")
    args = parser.parse_args(argv)
    print(f"{'thr':>5} {'AP':>7} {'MOTA':>7} {'IDF1':>7} {'obj':>7} " + " ".join(f"{o:>12}" for o in OUTCOMES)
          + "   paired B - A vs recorded (95 %)")
    per_joint: dict[float, tuple[dict, dict]] = {}  # thr -> (errors, objects) per joint, summed over runs
    all_rows = [r for run in args.runs for r in compare_runs(run, run, block=args.block, keypoint_thr_b=args.grid)]
    for thr in args.grid:
        rows = [r for r in all_rows if r["keypoint_thr"][1] == thr]
        errors: dict[str, float] = {}
        objects: dict[str, int] = {}
        for r in rows:
            for name, n in r["b"]["objects_per_joint"].items():
                objects[name] = objects.get(name, 0) + n
                errors[name] = errors.get(name, 0.0) + ((1.0 - r["b"]["mota_per_joint"][name]) * n if n else 0.0)
        per_joint[thr] = (errors, objects)
        pooled = pool_blocks(rows)
        for p in pooled:
            group = [r["b"] for r in rows if (r["data"], r["tracker"]) == (p["data"], p["tracker"])]
            mean = {m: sum(g[m] for g in group) / len(group) for m in ("ap", "mota", "idf1")}
            mean.update({o: sum(g["joint_outcomes"][o] for g in group) / len(group) for o in OUTCOMES})
            outcomes = " ".join(f"{mean[o]:12.3f}" for o in OUTCOMES)
            print(f"{thr:5.2f} {mean['ap']:7.3f} {mean['mota']:7.3f} {mean['idf1']:7.3f} {objective(mean):7.3f} "
                  f"{outcomes}   {p['diff']:+.4f} ({p['low']:+.4f} .. {p['high']:+.4f}) {p['data']}/{p['tracker']}")
    objects = per_joint[args.grid[0]][1]
    best = {name: min(args.grid, key=lambda t: per_joint[t][0][name]) for name in objects}
    print("best per joint: " + ", ".join(f"{name} {best[name]:.2f} (MOTA "
                                         f"{1 - per_joint[best[name]][0][name] / max(objects[name], 1):.3f})"
                                         for name in objects))
    total = 1 - sum(per_joint[best[n]][0][n] for n in objects) / max(sum(objects.values()), 1)
    print(f"MOTA with per-joint thresholds (all runs pooled): {total:.4f}")
    print(f"keypoint_thr sweep: {len(args.grid)} thresholds x {len(args.runs)} runs re-scored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
