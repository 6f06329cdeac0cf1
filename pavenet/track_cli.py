"""`pavenet-track`: track everybody's pose in a video, webcam, stream or image folder.

    pavenet-track video.mp4                       # -> runs/track/video/{video.mp4,tracks.json,tracks.csv}
    pavenet-track 0 --show                        # webcam 0, live window (q or Esc quits)
    pavenet-track rtsp://camera/stream --max-frames 1000
    pavenet-track "frames/*.jpg" --smooth --trails
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
from tqdm import tqdm

from pavenet.cli_utils import run_cli
from pavenet.draw import annotate, new_trails
from pavenet.errors import PavenetError
from pavenet.outputs import TrackOutputs
from pavenet.sources import open_source
from pavenet.tracker import Tracker

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "pavenet-t.onnx"


def load_tracker(weights: str | Path, device: str, smooth: bool, tracker_cls: type[Tracker] = Tracker,
                 **thresholds) -> Tracker:
    """A tracker (``tracker_cls``: :class:`Tracker` or the baseline) from an ONNX export (``.onnx``)
    or a training checkpoint (``.pt``)."""
    path = Path(weights)
    if not path.exists():
        hint = " (the shipped model is missing: train and export one, or pass --weights)" \
            if path == DEFAULT_WEIGHTS else ""
        raise PavenetError(f"{path}: no such weights file{hint}")
    if path.suffix == ".onnx":
        return tracker_cls.from_onnx(path, device, smooth, **thresholds)
    if path.suffix in (".pt", ".pth"):
        return tracker_cls.from_checkpoint(path, device, smooth, **thresholds)
    raise PavenetError(f"{path}: weights must be an .onnx export or a .pt checkpoint")


def _display_available() -> bool:
    try:
        cv2.namedWindow("pavenet", cv2.WINDOW_NORMAL)
        return True
    except cv2.error:
        return False


def int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum`` (anything else is a usage error, exit 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pavenet-track", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="video file, webcam index (0), rtsp:// or http(s):// URL, image folder or glob")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                   help="ONNX export or .pt checkpoint (default: the shipped weights/pavenet-t.onnx)")
    p.add_argument("-o", "--output", help="output folder (default runs/track/<source name>)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto = CUDA when ONNX Runtime can use it (default)")
    p.add_argument("--conf", type=float, help="score that starts a new track (default: the model's new_track_thr)")
    p.add_argument("--keep", type=float, help="score that keeps a track active (default: the model's keep_thr)")
    p.add_argument("--max-lost", type=int_at_least(0),
                   help="frames a lost track keeps its ID (default: the model's max_lost)")
    p.add_argument("--kpt-conf", type=float,
                   help="keypoints below this score are not drawn (default: the model's keypoint_thr)")
    p.add_argument("--fuse-dist", type=float,
                   help="average each track's pose with the detect query's pose on the same person when their "
                        "median joint distance is under this share of the pose's size; 0 = off (default: the "
                        "model's fuse_dist)")
    p.add_argument("--merge-dist", type=float,
                   help="retire the newer of two tracks whose poses' median joint distance is under this share "
                        "of the smaller pose's size; 0 = off (default: the model's merge_dist)")
    p.add_argument("--merge-age", type=int_at_least(0),
                   help="--merge-dist retires only tracks at most this many frames old (default: the model's "
                        "merge_age)")
    p.add_argument("--reseat-dist", type=float,
                   help="a track whose detect query's pose lies within this share of the pose's size goes on "
                        "with that query's state (re-anchored on the image); 0 = off (default: the model's "
                        "reseat_dist)")
    p.add_argument("--hold-merged", action=argparse.BooleanOptionalAction, default=None,
                   help="when two established tracks converge on one person (people crossing), hold the one that "
                        "gives way for --max-lost frames so the hidden person gets its ID back on stepping out, "
                        "instead of retiring it (default: the model's hold_merged)")
    p.add_argument("--imgsz", help="the model's input size is fixed in its export; re-export with "
                                   "pavenet-export --input-size to change it (this flag only checks it)")
    p.add_argument("--smooth", action="store_true", help="One-Euro smoothing of keypoints per track")
    p.add_argument("--trails", action="store_true", help="draw each person's recent path")
    p.add_argument("--show", action="store_true", help="show a live window (turned off when there is no display)")
    p.add_argument("--no-video", action="store_true", help="write tracks.json and tracks.csv only")
    p.add_argument("--max-frames", type=int_at_least(1), help="stop after this many frames (>= 1; default: all)")
    p.add_argument("--start", type=int_at_least(0), default=0, help="skip this many frames first (files and folders)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    thresholds = {k: v for k, v in (("new_track_thr", args.conf), ("keep_thr", args.keep),
                                    ("max_lost", args.max_lost), ("keypoint_thr", args.kpt_conf),
                                    ("fuse_dist", args.fuse_dist), ("merge_dist", args.merge_dist),
                                    ("merge_age", args.merge_age), ("reseat_dist", args.reseat_dist),
                                    ("hold_merged", args.hold_merged))
                  if v is not None}
    source = open_source(args.source, args.start)  # a missing input is reported before the model loads
    try:
        tracker = load_tracker(args.weights, args.device, args.smooth, **thresholds)
    except BaseException:
        source.close()
        raise
    if args.imgsz and args.imgsz != "x".join(map(str, tracker.info.input_size)):
        source.close()
        raise PavenetError(f"this model's input size is {tracker.info.input_size[0]}x{tracker.info.input_size[1]}; "
                           "re-export it with pavenet-export --input-size to change it")
    tracker.fps = source.fps
    out_dir = Path(args.output or Path("runs") / "track" / source.name)
    outputs = TrackOutputs(out_dir, tracker.layout, source.fps, args.source, video=not args.no_video)
    show = args.show and _display_available()
    if args.show and not show:
        print("note: no display available; --show turned off", file=sys.stderr)
    total = min((x for x in (source.frame_count, args.max_frames) if x), default=None)
    bar = tqdm(total=total, unit="frame", desc="track", disable=args.quiet, dynamic_ncols=True)
    trails = new_trails()
    frames, model_time, seen, status = 0, 0.0, set(), 0
    start = time.perf_counter()
    try:
        for frame in source:
            t0 = time.perf_counter()
            poses = tracker.update(frame)
            model_time += time.perf_counter() - t0
            seen.update(poses.track_ids.tolist())
            annotated = None
            if not args.no_video or show:
                fps = (frames + 1) / (time.perf_counter() - start)
                annotated = annotate(frame, poses, tracker.thresholds.keypoint_thr, trails if args.trails else None,
                                     fps)
            outputs.add(frames + args.start, poses, annotated)
            frames += 1
            bar.update(1)
            bar.set_postfix(fps=f"{frames / (time.perf_counter() - start):.1f}", tracks=tracker.active_tracks)
            if show:
                cv2.imshow("pavenet", annotated)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
            if args.max_frames is not None and frames >= args.max_frames:
                break
    except KeyboardInterrupt:
        status = 130
        print("\ninterrupted: finishing the output files", file=sys.stderr)
    finally:
        bar.close()
        source.close()
        written = outputs.close()
        if show:
            cv2.destroyAllWindows()
    secs = time.perf_counter() - start
    print(f"tracked {frames} frames of {args.source} at {frames / max(secs, 1e-9):.1f} FPS end-to-end "
          f"({1000 * model_time / max(frames, 1):.1f} ms/frame in the tracker, {tracker.provider}): "
          f"{len(seen)} tracks; wrote {', '.join(p.name for p in written)} to {out_dir}")
    return status


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
