"""pavenet-eval end to end on a tiny suite, the baseline tracker, and PoseTrack input."""

import json

import numpy as np

from pavenet.baseline import BaselineTracker
from pavenet.contract import TrackerThresholds
from pavenet.synth import SynthConfig, generate_clip
from tests.test_export_tracker import FakeBackend, tiny_files  # noqa: F401  (fixture)
from training.data.posetrack import write_posetrack21
from training.eval_cli import main as eval_main


def test_eval_cli_tiny_suite_both_trackers(tiny_files, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "eval"
    code = eval_main(["--weights", str(tiny_files["onnx"]), "--data", "synthetic:crossing", "--tracker", "pavenet",
                      "--tracker", "baseline", "--videos", "1", "--frames", "6", "--out", str(out), "--no-progress",
                      "--set", "new_track_thr=0.0", "--set", "keep_thr=0.0"])
    assert code == 0
    text = capsys.readouterr().out
    assert "synthetic:crossing" in text and "baseline" in text and "IDF1" in text
    report = json.loads((out / "report.json").read_text())
    rows = {r["tracker"]: r for r in report["results"]}
    assert set(rows) == {"pavenet", "baseline"}
    for r in rows.values():
        assert r["frames"] == 6 and r["fps"] > 0 and r["num_gt_tracks"] >= 3
        assert {"ap", "ap50", "ap75", "pck_ap", "mota", "idf1", "id_switches"} <= set(r)
    preds = json.loads((out / "predictions" / "synthetic-crossing" / "pavenet" / "mixed-000.json".replace(
        "mixed", "crossing")).read_text())
    assert len(preds["images"]) == 6 and preds["annotations"], "new_track_thr=0 keeps every query"
    assert len(preds["annotations"][0]["keypoints"]) == 17 * 3


def test_eval_cli_reads_posetrack_layout(tiny_files, tmp_path, capsys):  # noqa: F811
    clip = generate_clip(SynthConfig(width=128, height=96, min_people=2, max_people=3), "val", 0, 0, 5)
    write_posetrack21(clip, tmp_path / "pt", "val", 0, image_format="jpg")
    assert eval_main(["--weights", str(tiny_files["onnx"]), "--data", f"posetrack21:{tmp_path / 'pt'}",
                      "--no-progress"]) == 0
    assert "posetrack21:" in capsys.readouterr().out


def test_eval_cli_errors(tiny_files, tmp_path, capsys):  # noqa: F811
    assert eval_main(["--weights", str(tiny_files["onnx"]), "--data", "synthetic:nope", "--no-progress"]) == 2
    assert "unknown synthetic suite" in capsys.readouterr().err
    assert eval_main(["--weights", str(tiny_files["onnx"]), "--data", f"posetrack18:{tmp_path}"]) == 2
    assert "posetrack_data/val" in capsys.readouterr().err
    assert eval_main(["--weights", str(tiny_files["onnx"]), "--window", "centred"]) == 2
    assert "causal" in capsys.readouterr().err


def _baseline(script, **thr):
    backend = FakeBackend()
    backend.script = list(script)
    tracker = BaselineTracker(backend, TrackerThresholds(max_lost=2).override(**thr))
    poses = [tracker.update(np.zeros((64, 64, 3), np.uint8)) for _ in script]
    _baseline.poses = poses
    return [p.track_ids.tolist() for p in poses], backend.seen_tracks


def test_baseline_associates_detections_by_oks_with_constant_velocity():
    # two people moving right 0.05 per frame; the detections come in swapped order every other frame
    frames = []
    for t in range(6):
        a, b = (0.9, 0.2 + 0.05 * t), (0.8, 0.6 + 0.05 * t)
        frames.append(([], [a, b] if t % 2 == 0 else [b, a]))
    ids, fed = _baseline(frames)
    assert fed == [0] * 6, "the baseline never feeds track queries"
    assert ids == [[0, 1]] * 6
    for p in _baseline.poses:  # person a (left) keeps ID 0 whatever the order of the detections
        x = {int(i): float(k[:, 0].mean()) for i, k in zip(p.track_ids, p.keypoints)}
        assert x[0] < x[1]


def test_baseline_keeps_ids_through_a_short_gap_and_retires_after_max_lost():
    person = (0.9, 0.3)
    gap = ([], [])
    ids, _ = _baseline([([], [person]), gap, gap, ([], [person]), gap, gap, gap, ([], [person])])
    assert ids == [[0], [], [], [0], [], [], [], [1]]


def test_baseline_ignores_low_scores():
    ids, _ = _baseline([([], [(0.2, 0.3)])] * 3)
    assert ids == [[], [], []]


def test_eval_cli_tunes_thresholds_on_val_and_stores_them(tiny_files, tmp_path, capsys):  # noqa: F811
    import shutil

    from pavenet.contract import TrackerThresholds, parse_metadata
    from training.evaluation.tune import GRID, KEYPOINT_GRID

    onnx_path = tmp_path / "tiny.onnx"
    shutil.copy(tiny_files["onnx"], onnx_path)
    shutil.copy(tiny_files["ckpt"], tmp_path / "tiny.pt")  # the export's checkpoint beside it gets them too
    assert eval_main(["--weights", str(onnx_path), "--data", "synthetic:crossing", "--videos", "1", "--frames", "4",
                      "--tune", "--write", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "tuned on synthetic:crossing@val" in out and f"stored in {onnx_path}" in out
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    th = parse_metadata(meta, str(onnx_path)).thresholds
    def near_grid(value: float, grid: tuple) -> bool:  # a grid value, or half a step beside one
        return any(abs(value - g) < 0.051 for g in (*grid, 0.5, 0.35))  # or the default it started from

    assert near_grid(th.new_track_thr, GRID["new_track_thr"]) and near_grid(th.keep_thr, GRID["keep_thr"])
    assert th.duplicate_oks in GRID["duplicate_oks"] and th.duplicate_iou in GRID["duplicate_iou"]
    assert th.keypoint_thr in (*KEYPOINT_GRID, 0.3)
    default = TrackerThresholds()
    for name in ("fuse_dist", "merge_dist", "merge_age", "reseat_dist", "revive_oks"):  # the lifecycle's rules too
        assert getattr(th, name) in (*GRID[name], getattr(default, name)), name
    from pavenet.tracker import Tracker

    assert Tracker.from_checkpoint(tmp_path / "tiny.pt", "cpu").thresholds == th
    # A keep threshold above the new-track threshold is a valid setting (the stage-4 model shipped one).
    assert eval_main(["--weights", str(onnx_path), "--data", "synthetic:crossing", "--videos", "1", "--frames", "3",
                      "--tune", "--no-progress", "--set", "new_track_thr=0.4", "--set", "keep_thr=0.5"]) == 0
    assert "'new_track_thr': 0.4, 'keep_thr': 0.5" in capsys.readouterr().out
    assert eval_main(["--weights", str(onnx_path), "--tune", "--split", "test"]) == 2
    assert "val split only" in capsys.readouterr().err
    assert eval_main(["--weights", str(onnx_path), "--write"]) == 2
    assert "--tune" in capsys.readouterr().err


def test_eval_cli_compares_two_runs_paired_by_block(tiny_files, tmp_path, capsys):  # noqa: F811
    import shutil

    from training.evaluation.compare import compare_runs

    a, b = tmp_path / "a", tmp_path / "b"
    def run(out, seed=3):
        return eval_main(["--weights", str(tiny_files["onnx"]), "--data", "synthetic:crossing", "--split", "val",
                          "--videos", "2", "--frames", "5", "--seed", str(seed), "--no-progress", "--out", str(out),
                          "--set", "new_track_thr=0.0", "--set", "keep_thr=0.0"])

    assert run(a) == 0
    report = json.loads((a / "report.json").read_text())["results"][0]
    assert report["keypoint_thr"] == 0.3  # recorded, so a comparison scores joints as the run did
    shutil.copytree(a, b)
    # B: the second video's predictions emptied (as if that model had found nobody there).
    second = b / "predictions" / "synthetic-crossing" / "pavenet" / "crossing-001.json"
    doc = json.loads(second.read_text())
    assert doc["annotations"]
    doc["annotations"] = []
    second.write_text(json.dumps(doc))
    capsys.readouterr()
    assert eval_main(["--compare", str(a), str(b), "--block", "1"]) == 0
    out = capsys.readouterr().out
    assert "B - A per block of videos: +0.000, " in out and "2 blocks" in out and "compared 1" in out
    rows = compare_runs(a, b, block=1)
    row = rows[0]
    for m in ("ap", "mota", "idf1", "id_switches"):  # stored predictions re-score to the reported numbers
        assert abs(row["a"][m] - report[m]) < 2e-3, m
    (a0, b0), (a1, b1) = row["blocks"]
    assert a0 == b0 and a1 != b1 and abs(row["diff"] - (b1 - a1) / 2) < 1e-9
    assert row["low"] <= row["diff"] <= row["high"]
    # Several pairs (samples of other seeds): each printed, then all their blocks pooled.
    assert eval_main(["--compare", str(a), str(b), "--compare", str(a), str(b), "--block", "1"]) == 0
    out = capsys.readouterr().out
    ahead = 2 * sum(pb > pa for pa, pb in row["blocks"])
    assert (f"{row['data']} / pavenet pooled over 2 comparisons (4 blocks, {ahead} with B ahead): "
            f"B - A {row['diff']:+.4f}") in out
    assert out.count("B - A per block of videos") == 2 and "pooled B - A" in out.splitlines()[-1]
    same = compare_runs(a, a, block=2)[0]
    assert same["diff"] == 0.0 and same["verdict"] == "one block: no interval"
    # One run re-scored at another joint threshold (B's only): A keeps the recorded 0.3.
    shifted = compare_runs(a, a, block=2, keypoint_thr_b=0.99)[0]
    assert shifted["a"] == same["a"] and shifted["b"] == compare_runs(a, a, block=2, keypoint_thr=0.99)[0]["b"]
    # Runs on different videos, and folders that are not runs, are refused with a clear message.
    c = tmp_path / "c"
    assert run(c, seed=4) == 0
    capsys.readouterr()
    assert eval_main(["--compare", str(a), str(c)]) == 2
    assert "differ in seed" in capsys.readouterr().err
    assert eval_main(["--compare", str(a), str(tmp_path)]) == 2
    assert "no report.json" in capsys.readouterr().err
