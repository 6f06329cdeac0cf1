"""`pavenet-data`: write synthetic pose-tracking videos, and render annotations to look at them.

    pavenet-data synth --out DIR --videos N --frames F --split val --seed S
    pavenet-data show DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from pavenet.cli_utils import run_cli
from pavenet.draw import draw_poses
from pavenet.errors import DataError, PavenetError
from pavenet.model.config import parse_set
from pavenet.synth import SPLITS, SUITES, SynthConfig, generate_clip, suite_config
from pavenet.video import VideoWriter
from training.data.posetrack import Sequence, read_posetrack, write_posetrack21


def cmd_synth(args: argparse.Namespace) -> int:
    cfg = suite_config(args.suite).override(width=args.width, height=args.height, **parse_set(args.set))
    start = time.perf_counter()
    frames = people = annotations = 0
    for i in tqdm(range(args.videos), desc="synth videos", unit="video", disable=args.quiet):
        clip = generate_clip(cfg, args.split, args.seed, args.start + i, args.frames)
        write_posetrack21(clip, args.out, args.split, video_id=args.start + i, image_format=args.format)
        frames += len(clip)
        people += len(clip.track_ids)
        annotations += sum(f.num_people for f in clip.frames)
    secs = time.perf_counter() - start
    print(f"wrote {args.videos} {args.split} videos ({frames} frames, {people} people, {annotations} "
          f"pose annotations, suite {args.suite}) to {args.out} in {secs:.1f}s ({frames / secs:.0f} frames/s)")
    return 0


def find_sequences(path: Path) -> list[Path]:
    """Annotation files of a dataset root, an annotation folder or a single JSON file."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(path, "no such file or folder")
    files = sorted(path.glob("posetrack_data/*/*.json")) or sorted(path.glob("*.json"))
    if not files:
        raise DataError(path, "holds no PoseTrack annotation files (posetrack_data/<split>/*.json or *.json)")
    return files


def render_sequence(seq: Sequence, out: Path, keypoint_thr: float = 0.5) -> int:
    """Draw ground-truth skeletons and IDs over every frame of ``seq`` into the video ``out``."""
    with VideoWriter(out, seq.fps) as writer:
        for i, frame in enumerate(seq.frames):
            image = seq.load_image(i)
            drawn = draw_poses(image, frame.keypoints[..., :2], frame.keypoints[..., 2], frame.track_ids,
                               seq.layout, keypoint_thr=keypoint_thr, boxes=frame.boxes)
            writer.write(drawn)
    return len(seq)


def cmd_show(args: argparse.Namespace) -> int:
    files = find_sequences(Path(args.path))[: args.max_videos]
    root = Path(args.path) if Path(args.path).is_dir() else Path(args.path).parent
    out_dir = Path(args.out) if args.out else root / "show"
    frames = 0
    for f in tqdm(files, desc="render", unit="video", disable=args.quiet):
        seq = read_posetrack(f)
        frames += render_sequence(seq, out_dir / f"{seq.name}.mp4")
    print(f"rendered {len(files)} videos ({frames} frames) with ground-truth skeletons and IDs to {out_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pavenet-data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write synthetic videos with PoseTrack21 annotations",
                           description="Write synthetic multi-person videos plus PoseTrack21 JSON "
                                       "(DIR/videos|images/<split>/..., DIR/posetrack_data/<split>/*.json).")
    synth.add_argument("--out", required=True, help="dataset root folder to write into")
    synth.add_argument("--videos", type=int, default=4, help="number of videos (default 4)")
    synth.add_argument("--frames", type=int, default=100, help="frames per video (default 100)")
    synth.add_argument("--split", default="val", choices=list(SPLITS),
                       help="split; each split draws from its own random stream (default val)")
    synth.add_argument("--seed", type=int, default=0, help="seed; same seed, split and index = same video")
    synth.add_argument("--start", type=int, default=0, help="index of the first video (default 0)")
    synth.add_argument("--suite", default="mixed", choices=list(SUITES),
                       help="difficulty preset: mixed, crossing, reentry or crowd (default mixed)")
    synth.add_argument("--width", type=int, default=SynthConfig.width, help="frame width (default 320)")
    synth.add_argument("--height", type=int, default=SynthConfig.height, help="frame height (default 240)")
    synth.add_argument("--format", default="mp4", choices=["mp4", "jpg", "png"],
                       help="one mp4 per video, or one image file per frame (default mp4)")
    synth.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a generator knob, e.g. --set max_people=15 --set noise=0 (repeatable)")
    synth.add_argument("--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=cmd_synth)
    show = sub.add_parser("show", help="render ground truth (skeletons + IDs) over the frames to videos",
                          description="Render annotations of a dataset root, folder or JSON file to mp4s.")
    show.add_argument("path", help="dataset root (with posetrack_data/), folder of JSONs, or one JSON")
    show.add_argument("-o", "--out", help="output folder for the rendered videos (default PATH/show)")
    show.add_argument("--max-videos", type=int, default=None, help="render at most this many videos")
    show.add_argument("--quiet", action="store_true", help="no progress bar")
    show.set_defaults(func=cmd_show)
    return parser


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "videos", 1) < 0 or getattr(args, "frames", 1) < 1:
        raise PavenetError("--videos must be >= 0 and --frames >= 1")
    return args.func(args)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
