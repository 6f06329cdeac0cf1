"""Export parity, the torch-free runtime, the ID lifecycle and pavenet-track."""

import json
import subprocess
import sys
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pavenet.contract import ModelInfo, TrackerThresholds
from pavenet.errors import PavenetError
from pavenet.layouts import COCO17
from pavenet.model.checkpoint import save_checkpoint
from pavenet.model.pavenet import build_model
from pavenet.synth import SynthConfig, generate_clip
from pavenet.track_cli import main as track_main
from pavenet.tracker import Tracker, fuse_track_poses, track_detect_pairs
from pavenet.video import VideoWriter, read_video
from tests.test_model import TINY
from tests.test_packaging import BLOCK_TORCH


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory):
    """A tiny random checkpoint, its verified ONNX export and a synthetic mp4."""
    from export.cli import main as export_main

    folder = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = build_model(TINY)
    ckpt = folder / "tiny.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "model_config": TINY.to_dict(), "criterion": {}})
    onnx_path = folder / "tiny.onnx"
    assert export_main([str(ckpt), "-o", str(onnx_path), "--verify"]) == 0
    video = folder / "clip.mp4"
    clip = generate_clip(SynthConfig(width=128, height=96, min_people=2, max_people=4), "test", 0, 0, 12)
    with VideoWriter(video, 25) as w:
        for f in clip.frames:
            w.write(f.image)
    return {"ckpt": ckpt, "onnx": onnx_path, "video": video, "frames": [f.image for f in clip.frames]}


def test_export_metadata_and_dynamic_track_dimension(tiny_files):
    import onnx

    proto = onnx.load(str(tiny_files["onnx"]))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["format"] == "pavenet-onnx" and json.loads(meta["keypoint_layout"])["name"] == "coco17"
    assert json.loads(meta["model_config"])["d_model"] == 32 and "reset_rule" in meta
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert dims["track_queries"][1] == dims["track_keypoints"][1] and isinstance(dims["track_queries"][1], str)


def test_torch_and_onnx_give_the_same_ids(tiny_files):
    a = Tracker.from_onnx(tiny_files["onnx"], "cpu", new_track_thr=0.0, keep_thr=0.0)
    b = Tracker.from_checkpoint(tiny_files["ckpt"], "cpu", new_track_thr=0.0, keep_thr=0.0)
    for frame in tiny_files["frames"][:5]:
        pa, pb = a.update(frame), b.update(frame)
        assert pa.track_ids.tolist() == pb.track_ids.tolist()
        assert np.allclose(pa.keypoints, pb.keypoints, atol=1e-2)
    assert a.provider == "CPUExecutionProvider" and b.provider == "torch-cpu"


def test_runtime_tracks_without_torch(tiny_files):
    code = BLOCK_TORCH + f"""
import numpy as np
from pavenet import Tracker
t = Tracker.from_onnx({str(tiny_files['onnx'])!r}, "cpu", new_track_thr=0.0, keep_thr=0.0)
for _ in range(3):
    poses = t.update(np.zeros((90, 120, 3), np.uint8))
assert len(poses) > 0 and poses.keypoints.shape[1:] == (17, 2)
assert 'torch' not in sys.modules
print("ok", len(poses))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-1500:]


class FakeBackend:
    """Scripted model: each step returns given (score, x) per track row and per detect row."""

    def __init__(self):
        cfg = TINY
        self.info = ModelInfo(cfg, COCO17, TrackerThresholds(), 4)
        self.provider = "fake"
        self.script: list[tuple[list, list]] = []  # per frame: (track rows, detect rows) of (score, x)
        self.seen_tracks: list[int] = []
        self.fed_queries: list[np.ndarray] = []  # per step: [N] the marker of each track query fed

    def step(self, feeds):
        tracks, dets = self.script.pop(0)
        n = feeds["track_queries"].shape[1]
        self.seen_tracks.append(n)
        self.fed_queries.append(feeds["track_queries"][0, :, 0].copy())
        rows = list(tracks[:n]) + [(0.0, 0.5)] * (n - len(tracks)) + list(dets)
        k, d = 17, TINY.d_model
        kps = np.stack([np.stack([x + np.linspace(-0.05, 0.05, k), np.linspace(0.2, 0.8, k)], -1) for _, x in rows]) \
            if rows else np.zeros((0, k, 2))
        hidden = np.zeros((1, len(rows), d), np.float32)
        hidden[0, :, 0] = 100 * (len(self.fed_queries) - 1) + np.arange(len(rows))  # marker: step, row
        return {"scores": np.array([[s for s, _ in rows]], np.float32), "keypoints": kps[None].astype(np.float32),
                "keypoint_scores": np.broadcast_to(np.linspace(0.6, 1.0, k, dtype=np.float32), (1, len(rows), k)),
                "hidden": hidden, "tokens": np.zeros((1, 4, d), np.float32)}


def _run(script, **thr):
    backend = FakeBackend()
    backend.script = list(script)
    tracker = Tracker(backend, TrackerThresholds(max_lost=2).override(**thr))
    ids = []
    for _ in script:
        ids.append(tracker.update(np.zeros((64, 64, 3), np.uint8)).track_ids.tolist())
        assert tracker.active_tracks == len(ids[-1]), "the count the progress bar shows is what is drawn"
    return ids, backend.seen_tracks


def test_lifecycle_occlusion_within_max_lost_keeps_the_id():
    person = (0.9, 0.3)
    script = [([], [person]), ([person], []), ([(0.1, 0.3)], []), ([(0.1, 0.3)], []), ([person], [])]
    ids, fed = _run(script)
    assert ids == [[0], [0], [], [], [0]], "occluded for 2 frames (= max_lost): same ID"
    assert fed == [0, 1, 1, 1, 1], "the lost track is still fed back"


def test_lifecycle_longer_occlusion_gets_a_new_id():
    person = (0.9, 0.3)
    lost = ([(0.1, 0.3)], [])
    ids, fed = _run([([], [person]), lost, lost, lost, ([], [person])])
    assert ids == [[0], [], [], [], [1]] and fed[-1] == 0


def test_lifecycle_revive_and_duplicates():
    person = (0.9, 0.3)
    # The track query loses the person; a detect query finds them again at the same place.
    ids, _ = _run([([], [person]), ([(0.1, 0.3)], []), ([(0.1, 0.3)], [person])])
    assert ids == [[0], [], [0]], "a lost track is revived by a matching detection"
    # A detection duplicating an active track is suppressed; a distinct one starts a new ID.
    ids, _ = _run([([], [person]), ([person], [(0.8, 0.31), (0.8, 0.7)])])
    assert ids == [[0], [0, 1]]


def test_duplicate_iou_suppresses_a_second_pose_of_one_person():
    person, shifted = (0.9, 0.3), (0.8, 0.32)  # pose boxes overlap with IoU 0.67
    script = [([], [person]), ([person], [shifted])]
    ids, _ = _run(script, duplicate_oks=0.99)
    assert ids == [[0], [0, 1]], "with the box rule off, an imprecise second pose starts a track"
    ids, _ = _run(script, duplicate_oks=0.99, duplicate_iou=0.5)
    assert ids == [[0], [0]], "IoU >= duplicate_iou: the same person, no new track"


def test_a_weak_new_track_is_shown_only_once_its_query_confirms_it():
    """Born below keep_thr: tentative (not shown); shown when its track query scores >= keep_thr
    next; retired unseen when it does not (a one-frame false detection never flickers)."""
    weak, strong = (0.4, 0.3), (0.9, 0.7)
    # the strong detection (ID 0) is accepted first; track rows come in ID order
    ids, fed = _run([([], [weak, strong]), ([strong, (0.8, 0.3)], []), ([strong, (0.8, 0.3)], [])],
                    new_track_thr=0.3, keep_thr=0.5)
    assert ids == [[0], [0, 1], [0, 1]], "the weak one appears when confirmed, with the ID it was born with"
    ids, fed = _run([([], [weak, strong]), ([strong, (0.2, 0.3)], []), ([strong], [])],
                    new_track_thr=0.3, keep_thr=0.5)
    assert ids == [[0], [0], [0]] and fed == [0, 2, 1], "not confirmed: retired at once, never shown or fed again"


def test_lifecycle_two_tracks_on_one_person_merge_into_the_older_id():
    a, b = (0.9, 0.3), (0.9, 0.7)
    script = [([], [a, b]), ([a, (0.9, 0.31)], []), ([a], [])]
    ids, fed = _run(script)
    assert ids == [[0, 1], [0], [0]], "track 1 drifted onto person 0: retired, ID 0 kept"
    assert fed == [0, 2, 1]


def test_two_tracks_close_in_joint_distance_merge_even_when_their_oks_is_low():
    """Small people's poses rarely reach OKS ``duplicate_oks`` with each other even when both
    show one person: ``merge_dist`` (median joint distance / smaller pose size) merges them."""
    a, b = (0.9, 0.3), (0.9, 0.7)
    script = [([], [a, b]), ([a, (0.9, 0.35)], []), ([a], [])]  # track 1 now 0.05 from track 0: 0.083 poses
    ids, _ = _run(script, duplicate_oks=0.99, merge_dist=0.14)
    assert ids == [[0, 1], [0], [0]], "within merge_dist: one person, the newer ID retired"
    backend = FakeBackend()
    backend.script = [([], [a, b]), ([(0.7, 0.3), (0.9, 0.35)], [])]
    tracker = Tracker(backend, TrackerThresholds(duplicate_oks=0.99, merge_dist=0.14, keep_thr=0.5))
    tracker.update(np.zeros((64, 64, 3), np.uint8))
    poses = tracker.update(np.zeros((64, 64, 3), np.uint8))
    assert poses.track_ids.tolist() == [0] and poses.scores.tolist() == [pytest.approx(0.9 * 0.8)], \
        "the older ID goes on with the better-scoring duplicate's query (shown: score x mean keypoint score 0.8)"
    ids, _ = _run(script, duplicate_oks=0.99, merge_dist=0.0)
    assert ids[1] == [0, 1], "merge_dist 0: off"
    far = [([], [a, b]), ([a, (0.9, 0.4)], []), ([a, (0.9, 0.4)], [])]  # 0.1 apart: 0.17 of the pose's size
    ids, _ = _run(far, duplicate_oks=0.99, merge_dist=0.14)
    assert ids[1:] == [[0, 1], [0, 1]], "two people side by side keep their IDs"
    old = [([], [a, b])] + [([a, b], [])] * 11 + [([a, (0.9, 0.35)], [])]
    ids, _ = _run(old, duplicate_oks=0.99, merge_dist=0.14)
    assert ids[-1] == [0, 1], "two tracks older than merge_age this near are two people crossing: kept"
    ids, _ = _run(old, duplicate_oks=0.99, merge_dist=0.14, merge_age=20)
    assert ids[-1] == [0], "merge_age 20: a 12-frame-old track this near is retired"


def test_a_track_pose_is_fused_with_its_detect_row():
    """The track row and the detect row on the same person are averaged by keypoint score (the
    higher score kept); a detect row on someone else, or already taken by another track, is not."""

    k = 17
    base = np.stack([np.full(k, 0.3), np.linspace(0.2, 0.8, k)], -1)  # a 0.6-tall pose
    kps = np.stack([base, base + [0.5, 0], base + [0.03, 0], base + [0.5, 0.01], base + [0.9, 0]]).astype(np.float32)
    ks = np.ones((5, k), np.float32)
    ks[2, :8] = 0.5  # the detect row is unsure of the head: the track row counts twice there
    fused, fks = fuse_track_poses(kps, ks, 2, 0.2)
    assert np.allclose(fused[0, 8:, 0], 0.315) and np.allclose(fused[0, :8, 0], 0.3 + 0.03 / 3), "weighted mean"
    assert np.allclose(fused[1], (kps[1] + kps[3]) / 2) and np.allclose(fks[:2], 1.0)
    assert np.array_equal(fused[2:], kps[2:]), "detect rows themselves are not changed"
    assert fuse_track_poses(kps, ks, 2, 0.0)[0] is kps, "fuse_dist 0: off"
    far, _ = fuse_track_poses(kps[[0, 4]], ks[[0, 4]], 1, 0.2)
    assert np.array_equal(far, kps[[0, 4]]), "a detect row on another person (distance 1.5 poses) is not fused"
    both = np.stack([base, base + [0.02, 0], base + [0.01, 0]]).astype(np.float32)  # two tracks overlapping
    assert np.array_equal(fuse_track_poses(both, np.ones((3, k), np.float32), 2, 0.2)[0], both), \
        "a detect row about as near two tracks is not fused into either (it may show the other person)"
    close = np.stack([base, base + [0.04, 0], base + [0.025, 0]]).astype(np.float32)  # row 2: 0.015 / 0.025 away
    assert track_detect_pairs(close, 2, 0.2) == [], "ratio 2 (default): the other track is under twice as far"
    assert [(i, j) for i, j, _ in track_detect_pairs(close, 2, 0.2, ratio=1.0)] == [(1, 2)], \
        "ratio 1 (pair_ratio): the assignment alone pairs it with the nearer track"
    # in the tracker: the shown (and fed back) pose of a track is the mean with its detect row
    person, near = (0.9, 0.3), (0.2, 0.32)
    backend = FakeBackend()
    backend.script = [([], [person]), ([person], [near])]
    tracker = Tracker(backend, TrackerThresholds(fuse_dist=0.2))
    tracker.update(np.zeros((64, 64, 3), np.uint8))
    poses = tracker.update(np.zeros((64, 64, 3), np.uint8))
    assert poses.track_ids.tolist() == [0] and np.allclose(tracker._tracks[0].keypoints[:, 0].mean(), 0.31, atol=1e-6)


def test_a_track_near_its_detect_row_goes_on_with_the_detect_query():
    """``reseat_dist``: a track whose detect row lies within this share of its pose's size takes
    that detect query's hidden state for the next step (re-anchored on the image); farther (but
    still fused) or with the rule off, it keeps its own."""
    person = (0.9, 0.3)

    def fed(detect_x: float, **thr) -> float:
        backend = FakeBackend()
        backend.script = [([], [person]), ([person], [(0.1, detect_x)]), ([person], [])]
        tracker = Tracker(backend, TrackerThresholds(fuse_dist=0.2).override(**thr))
        for _ in range(3):
            tracker.update(np.zeros((64, 64, 3), np.uint8))
        return float(backend.fed_queries[2][0])  # step 1's row 0 = 100, its detect row = 101

    assert fed(0.31, reseat_dist=0.05) == 101, "0.017 of the pose's size apart: re-seated"
    assert fed(0.31, reseat_dist=0.0) == 100, "reseat_dist 0: off"
    assert fed(0.35, reseat_dist=0.05) == 100, "0.083 apart: fused, not re-seated"
    assert fed(0.31, reseat_dist=0.05, fuse_dist=0.0) == 100, "no fusion, no pair: not re-seated"


def test_track_cli_on_a_video(tiny_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert track_main([str(tiny_files["video"]), "--weights", str(tiny_files["onnx"]), "--output", str(out),
                       "--conf", "0.0", "--keep", "0.0", "--trails", "--smooth", "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "tracked 12 frames" in summary and "tracks.json" in summary
    assert len(read_video(out / "video.mp4")) == 12
    doc = json.loads((out / "tracks.json").read_text())
    assert doc["num_frames"] == 12 and len(doc["frames"]) == 12
    ids = {p["track_id"] for f in doc["frames"] for p in f["people"]}
    assert ids == set(doc["track_ids"]) and len(ids) > 0
    rows = (out / "tracks.csv").read_text().strip().splitlines()
    assert len(rows) - 1 == sum(len(f["people"]) for f in doc["frames"])
    assert len(rows[0].split(",")) == 7 + 17 * 3


def test_track_cli_thresholds_default_to_the_models(tiny_files, tmp_path, monkeypatch):
    """Only the flags given override the thresholds stored in the model (keypoint_thr and
    fuse_dist included)."""
    import pavenet.track_cli as track_cli

    seen: list[dict] = []
    real = track_cli.load_tracker
    monkeypatch.setattr(track_cli, "load_tracker", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    base = [str(tiny_files["video"]), "--weights", str(tiny_files["onnx"]), "--no-video", "--quiet",
            "--max-frames", "2"]
    assert track_main(base + ["--output", str(tmp_path / "a")]) == 0
    assert track_main(base + ["--output", str(tmp_path / "b"), "--kpt-conf", "0.6", "--fuse-dist", "0",
                       "--merge-dist", "0.1", "--reseat-dist", "0.05"]) == 0
    assert seen == [{}, {"keypoint_thr": 0.6, "fuse_dist": 0.0, "merge_dist": 0.1, "reseat_dist": 0.05}]


def test_track_cli_bad_inputs(tiny_files, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"garbage")
    import onnx

    plain = onnx.load(str(tiny_files["onnx"]))
    del plain.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(plain, str(foreign))
    locked = tmp_path / "locked"
    locked.write_text("a file, not a folder")
    cases = [
        ([str(tmp_path / "missing.mp4")], "no such file"),
        ([str(zero)], "zero.mp4"),
        ([str(empty)], "no images"),
        ([str(tiny_files["video"]), "--weights", str(tmp_path / "nope.onnx")], "no such weights file"),
        ([str(tiny_files["video"]), "--weights", str(not_onnx)], "not a loadable ONNX model"),
        ([str(tiny_files["video"]), "--weights", str(foreign)], "not a PAVENet tracker ONNX file"),
        ([str(tiny_files["video"]), "--weights", str(tiny_files["onnx"]), "--output", str(locked / "x")],
         "not writable"),
    ]
    for argv, message in cases:
        if "--weights" not in argv:
            argv = [*argv, "--weights", str(tiny_files["onnx"])]
        assert track_main([*argv, "--quiet"]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("error: ") and message in err[-1], (argv, err)


def test_frame_formats_and_size_changes(tiny_files):
    tracker = Tracker.from_onnx(tiny_files["onnx"], "cpu")
    for frame in (np.zeros((48, 64), np.uint8), np.zeros((48, 64, 1), np.uint8), np.zeros((48, 64, 4), np.uint8),
                  np.zeros((48, 64, 3), np.float32), np.zeros((48, 64, 3), np.uint16)):
        tracker.update(frame)
    with pytest.raises(PavenetError, match="frame size changed"):
        tracker.update(np.zeros((50, 64, 3), np.uint8))
    tracker.reset()
    tracker.update(np.zeros((50, 64, 3), np.uint8))
    with pytest.raises(PavenetError, match="unsupported frame shape"):
        tracker.update(np.zeros((4, 5, 6, 7), np.uint8))


def test_checkpoint_of_the_wrong_kind(tmp_path):
    bad = tmp_path / "x.pt"
    torch.save({"format": "something-else"}, bad)
    with pytest.raises(PavenetError, match="not a PAVENet checkpoint"):
        Tracker.from_checkpoint(bad)
    assert Path(bad).exists()


@pytest.mark.parametrize("failure, code", [(KeyboardInterrupt, 130), (PavenetError("stream broke"), 2)])
def test_interrupted_run_keeps_valid_outputs(tiny_files, tmp_path, monkeypatch, failure, code):
    real = Tracker.update
    calls = [0]

    def flaky(self, frame):
        calls[0] += 1
        if calls[0] == 6:
            raise failure
        return real(self, frame)

    monkeypatch.setattr(Tracker, "update", flaky)
    out = tmp_path / "out"
    assert track_main([str(tiny_files["video"]), "--weights", str(tiny_files["onnx"]), "--output", str(out),
                       "--conf", "0.0", "--keep", "0.0", "--quiet"]) == code
    assert len(read_video(out / "video.mp4")) == 5, "the frames before the failure are a playable video"
    doc = json.loads((out / "tracks.json").read_text())
    assert doc["num_frames"] == 5 and len((out / "tracks.csv").read_text().splitlines()) >= 1
    assert not list(out.glob(".*partial*")), "no temporary files are left"


def test_export_with_more_queries_than_trained(tiny_files, tmp_path):
    """``--queries`` changes how many proposals become detect queries; the ONNX metadata and the
    slim checkpoint both carry the config the export ran with, so both runtimes agree."""
    from export.cli import main as export_main

    onnx_path, slim = tmp_path / "q.onnx", tmp_path / "q.pt"
    queries = TINY.num_queries + 4
    assert export_main([str(tiny_files["ckpt"]), "-o", str(onnx_path), "--queries", str(queries),
                        "--slim", str(slim)]) == 0
    a = Tracker.from_onnx(onnx_path, "cpu", new_track_thr=0.0, keep_thr=0.0)
    b = Tracker.from_checkpoint(slim, "cpu", new_track_thr=0.0, keep_thr=0.0)
    assert a.info.config.num_queries == queries and b.info.config.num_queries == queries
    frame = np.full((64, 64, 3), 90, np.uint8)
    assert len(a.update(frame)) == len(b.update(frame)) > 0
    assert export_main([str(tiny_files["ckpt"]), "-o", str(tmp_path / "bad.onnx"), "--queries", "0"]) == 2


def test_reexport_keeps_the_checkpoints_tuned_thresholds(tiny_files, tmp_path):
    """Re-exporting a checkpoint whose thresholds were tuned (``pavenet-eval --tune --write``) keeps
    them in the ONNX file and the slim copy alike; a flag overrides one and both files get it."""
    from export.cli import main as export_main
    from export.onnx_export import set_thresholds

    tuned = TrackerThresholds(new_track_thr=0.45, keep_thr=0.55, duplicate_oks=0.5, duplicate_iou=0.5,
                              keypoint_thr=0.5)
    ckpt = tmp_path / "tuned.pt"
    ckpt.write_bytes(tiny_files["ckpt"].read_bytes())
    set_thresholds(ckpt, tuned)
    onnx_path, slim = tmp_path / "t.onnx", tmp_path / "t-slim.pt"
    assert export_main([str(ckpt), "-o", str(onnx_path), "--refine-top", "3", "--slim", str(slim)]) == 0
    assert Tracker.from_onnx(onnx_path, "cpu").thresholds == tuned
    assert Tracker.from_checkpoint(slim, "cpu").thresholds == tuned
    assert export_main([str(ckpt), "-o", str(onnx_path), "--keep-thr", "0.6", "--slim", str(slim)]) == 0
    assert Tracker.from_onnx(onnx_path, "cpu").thresholds == tuned.override(keep_thr=0.6)
    assert Tracker.from_checkpoint(slim, "cpu").thresholds == tuned.override(keep_thr=0.6)


def test_refine_top_refines_the_tracks_and_the_best_detections(tmp_path):
    """``refine_top``: the streaming step refines the track rows and the best-scored detect rows
    exactly as a full refinement would (rows are refined independently), the other rows keep the
    decoder's pose; the ONNX export of it matches PyTorch for 0, 1 and 7 track queries."""
    from export.onnx_export import export_onnx, num_tokens
    from export.verify import verify_onnx
    from pavenet.model.step import StreamingStep

    torch.manual_seed(0)
    full = build_model(TINY).eval()
    for layer in full.refiner.layers:  # a trained refiner moves keypoints (a new one starts at zero)
        torch.nn.init.normal_(layer.delta.weight, std=0.5)
    top = build_model(TINY.override(refine_top=3)).eval()
    top.load_state_dict(full.state_dict())
    n, d, k = 2, TINY.d_model, TINY.num_keypoints
    inputs = (torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8), torch.randn(1, n, d),
              torch.rand(1, n, k, 2) * 0.6 + 0.2, torch.zeros(1, num_tokens(TINY), d), torch.zeros(1))
    with torch.no_grad():
        a, b = StreamingStep(full)(*inputs), StreamingStep(top)(*inputs)
        decoder_pose = full.detect(*_first_frame(full, inputs))["keypoints"][-1]
    scores = a[0][0]
    rows = sorted([0, 1, *(scores[n:].topk(3).indices + n).tolist()])
    others = [i for i in range(len(scores)) if i not in rows]
    assert torch.allclose(a[1][0, rows], b[1][0, rows], atol=1e-6)
    assert torch.allclose(b[1][0, others], decoder_pose[0, others], atol=1e-6)
    assert not torch.allclose(a[1][0, others], b[1][0, others], atol=1e-4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[3], b[3])
    path = export_onnx(top, tmp_path / "top.onnx")
    errors = verify_onnx(top, path)
    assert errors["keypoints"] <= 1e-4


def _first_frame(model, inputs):
    """detect() arguments of StreamingStep's first frame (no valid previous tokens)."""
    image, tq, tk = inputs[:3]
    tokens = model.encode(image.permute(0, 3, 1, 2).float())
    return tokens, model.window_tokens(tokens, [tokens]), tq, tk


class _FakeCuda:
    """torch.cuda's graph API on the CPU: a 'graph' re-runs what was called during its capture and
    writes the results into the captured outputs, as a replayed CUDA graph writes its static outputs."""

    def __init__(self):
        self.captures, self.capturing = 0, None

    def graph_pool_handle(self):
        return object()

    def Stream(self):
        return SimpleNamespace(wait_stream=lambda stream: None)

    def stream(self, stream):
        return nullcontext()

    current_stream = Stream

    def CUDAGraph(self):
        return SimpleNamespace(replay=None)

    @contextmanager
    def graph(self, graph, pool=None):
        self.captures, self.capturing = self.captures + 1, graph
        yield
        self.capturing = None

def test_cuda_graph_step_captures_once_per_track_count_and_replays_new_inputs(tiny_files):
    from pavenet.backends import TorchBackend, _GraphedStep
    from pavenet.contract import INPUTS

    backend = TorchBackend(tiny_files["ckpt"], device="cpu")
    cuda = _FakeCuda()

    def module(*args):  # the step, recorded into the graph being captured
        outs = backend.step_module(*args)
        if cuda.capturing is not None:
            cuda.capturing.replay = lambda: [o.copy_(n) for o, n in zip(outs, backend.step_module(*args))]
        return outs

    graphed = _GraphedStep(module, SimpleNamespace(cuda=cuda), torch.device("cpu"), max_graphs=2)
    info, rng = backend.info, np.random.default_rng(0)

    def feeds(n):
        cfg = info.config
        return {"image": rng.integers(0, 256, (1, cfg.input_height, cfg.input_width, 3), dtype=np.uint8),
                "track_queries": rng.standard_normal((1, n, cfg.d_model), dtype=np.float32),
                "track_keypoints": rng.uniform(0.2, 0.8, (1, n, cfg.num_keypoints, 2)).astype(np.float32),
                "prev_tokens": rng.standard_normal((1, info.num_tokens, cfg.d_model), dtype=np.float32),
                "prev_valid": np.ones(1, np.float32)}

    def check(f):
        with torch.no_grad():
            got = [o.numpy().copy() for o in graphed([torch.from_numpy(f[k]) for k in INPUTS])]
        want = backend.step(f)
        for g, w in zip(got, want.values()):
            np.testing.assert_allclose(g, w, atol=1e-5)

    for n, captures in ((2, 1), (2, 1), (0, 2), (2, 2), (0, 2), (5, 2)):  # 5: past max_graphs, eager
        check(feeds(n))
        assert cuda.captures == captures
    assert sorted(graphed.graphs) == [0, 2]


def test_hold_merged_gives_a_hidden_persons_id_back_when_they_step_out():
    """Two established tracks converge on one person (b walks behind a): with ``hold_merged`` the
    newer track is held (not fed, not shown) with its last pose apart from a, and b's detection
    when b steps out takes that ID back; without it b comes back under a new ID."""
    a, b = (0.9, 0.3), (0.9, 0.7)
    script = ([([], [a, b])] + [([a, b], [])] * 11 + [([a, (0.9, 0.31)], [])]  # frame 12: track 1 onto a
              + [([a], [])] * 2 + [([a], [b])] + [([a, b], [])])
    ids, fed = _run(script, max_lost=5, hold_merged=True)
    assert ids[12:] == [[0], [0], [0], [0, 1], [0, 1]], "held for 3 frames, then revived with its ID"
    assert fed[12:] == [2, 1, 1, 1, 2], "a held track is not fed to the model"
    ids, fed = _run(script, max_lost=5)
    assert ids[12:] == [[0], [0], [0], [0, 2], [0, 2]], "off: the track is retired, the person gets ID 2"
    young = [([], [a, b])] + [([a, b], [])] * 3 + [([a, (0.9, 0.31)], [])] + [([a], [])] * 2 + [([a], [b])]
    ids, _ = _run(young, max_lost=5, hold_merged=True)
    assert ids[4:] == [[0], [0], [0], [0, 2]], "a young duplicate (born on a tracked person) is retired, not held"
    gone = script[:13] + [([a], [])] * 6 + [([a], [b])]
    ids, _ = _run(gone, max_lost=5, hold_merged=True)
    assert ids[-1] == [0, 2], "held longer than max_lost: retired, a new ID"
