"""`pavenet-export`: a training checkpoint -> an ONNX tracker step with explicit state.

    pavenet-export runs/pavenet-t/best.pt -o weights/pavenet-t.onnx --verify

The graph takes the letterboxed frame and the tracker state (track queries, their poses, the
previous frame's tokens) and returns scores, keypoints, keypoint scores, the next state.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pavenet.cli_utils import run_cli
from pavenet.contract import TrackerThresholds
from pavenet.errors import PavenetError


def parse_size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h)) if sep else (int(w), int(w))
    except ValueError:
        raise PavenetError(f"--input-size expects WIDTHxHEIGHT or one number, got {text!r}") from None
    if size[0] % 32 or size[1] % 32:
        raise PavenetError("--input-size must be a multiple of 32 in both directions")
    return size


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pavenet-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a pavenet-train checkpoint (.pt)")
    p.add_argument("-o", "--output", help="ONNX file to write (default: the checkpoint's name with .onnx)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--input-size", help="export at another input size, WxH (multiples of 32; default: the config's)")
    p.add_argument("--queries", type=int, help="detect queries per frame (top-k proposals; default: the config's). "
                                               "More than in training can find more people and better poses, "
                                               "at a cost in speed: choose on val with pavenet-eval")
    p.add_argument("--refine-top", type=int, help="refine the track rows and only this many best-scored detect rows "
                                                  "per frame (0 = all; default: the config's). Fewer is faster; "
                                                  "rows below the new-track threshold are never shown")
    p.add_argument("--fp16", action="store_true", help="store weights in float16 (inputs and outputs stay float32)")
    p.add_argument("--verify", action="store_true",
                   help="check the file with the ONNX checker and compare ONNX Runtime with PyTorch on a "
                        "synthetic clip with 0, 1 and 7 track queries (max error <= 1e-4)")
    p.add_argument("--slim", metavar="PATH", help="also write a shippable checkpoint to PATH: float16 weights, "
                                                   "configs and layout, no optimizer state (about 1/6 the size)")
    p.add_argument("--new-track-thr", type=float, help="default threshold stored in the metadata (the thresholds "
                                                       "not given here are the checkpoint's own, e.g. tuned ones, "
                                                       "else the tracker's defaults; --slim stores the same)")
    p.add_argument("--keep-thr", type=float, help="default threshold stored in the metadata")
    p.add_argument("--max-lost", type=int, help="default number of frames a lost track is kept")
    p.add_argument("--duplicate-oks", type=float, help="default OKS above which two poses are one person")
    p.add_argument("--duplicate-iou", type=float, help="default pose-box IoU above which a new detection is an "
                                                       "active track's person again (1.0 = off)")
    p.add_argument("--fuse-dist", type=float, help="default share of the pose's size under which a track's pose "
                                                   "is averaged with its detect row's (0 = off)")
    p.add_argument("--merge-dist", type=float, help="default share of the smaller pose's size under which two "
                                                    "tracks' median joint distance makes them one person (0 = off)")
    p.add_argument("--merge-age", type=int, help="default age in frames up to which a track can be retired by "
                                                 "--merge-dist")
    p.add_argument("--reseat-dist", type=float, help="default share of the pose's size under which a track goes on "
                                                     "with its detect row's query state (0 = off)")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from export.onnx_export import export_onnx, load_model, set_thresholds, slim_checkpoint  # torch only here
    from export.verify import verify_onnx
    from pavenet.model.checkpoint import load_checkpoint

    start = time.perf_counter()
    size = parse_size(args.input_size) if args.input_size else None
    model = load_model(args.checkpoint, size, args.queries, args.refine_top)
    out = Path(args.output or Path(args.checkpoint).with_suffix(".onnx"))
    chosen = {k: v for k, v in (("new_track_thr", args.new_track_thr), ("keep_thr", args.keep_thr),
                                ("max_lost", args.max_lost), ("duplicate_oks", args.duplicate_oks),
                                ("duplicate_iou", args.duplicate_iou), ("fuse_dist", args.fuse_dist),
                                ("merge_dist", args.merge_dist), ("merge_age", args.merge_age),
                                ("reseat_dist", args.reseat_dist))
              if v is not None}
    stored = load_checkpoint(args.checkpoint).get("tracker_thresholds") or {}  # e.g. from pavenet-eval --tune
    thresholds = TrackerThresholds().override(**stored).override(**chosen)
    export_onnx(model, out, args.opset, args.fp16, thresholds)
    note = ""
    if args.verify:
        if args.fp16:
            raise PavenetError("--verify compares float32 numbers; verify a float32 export")
        errors = verify_onnx(model, out)
        note = f", verified: max error keypoints {errors['keypoints']:.1e}, scores {errors['scores']:.1e}"
    if args.slim:
        slim = set_thresholds(slim_checkpoint(args.checkpoint, args.slim, model.cfg), thresholds)  # as exported
        note += f"; slim checkpoint {slim} ({slim.stat().st_size / 2**20:.1f} MB)"
    mb = out.stat().st_size / 2**20
    print(f"exported {model.cfg.name} ({model.cfg.input_width}x{model.cfg.input_height}) to {out} "
          f"({mb:.1f} MB) in {time.perf_counter() - start:.0f}s{note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
