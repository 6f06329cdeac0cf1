"""`pavenet-app`: the browser demo (Gradio): track an uploaded video or your webcam.

Examples:
    pavenet-app                                   # shipped weights, http://127.0.0.1:7860
    pavenet-app --weights runs/my-run/best.pt --device cuda --port 8080
    pavenet-app --host 0.0.0.0 --max-upload-mb 500 --max-seconds 600
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pavenet.cli_utils import run_cli
from pavenet.errors import PavenetError
from pavenet.track_cli import DEFAULT_WEIGHTS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pavenet-app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                   help=f"ONNX export or .pt checkpoint (default {DEFAULT_WEIGHTS.name}, the shipped model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the model runs (auto = CUDA when ONNX Runtime has it)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 = every interface)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (needs internet)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest accepted upload (default 200 MB)")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="longest accepted video, in seconds of footage (default 120)")
    p.add_argument("--concurrency", type=int, default=2,
                   help="videos/webcam frames processed at once over all users (default 2)")
    p.add_argument("--cache-minutes", type=float, default=60.0,
                   help="delete uploads, results and idle webcam sessions after this many minutes (default 60)")
    p.add_argument("--no-example", action="store_true", help="do not generate the synthetic example video")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.max_upload_mb <= 0 or args.max_seconds <= 0 or args.cache_minutes <= 0 or args.concurrency < 1:
        raise PavenetError("--max-upload-mb, --max-seconds and --cache-minutes must be positive, --concurrency >= 1")
    import gradio  # noqa: F401  (missing: run_cli names the extra that installs it)

    from app.demo import Limits, SharedModel
    from app.ui import build_app, example_videos

    model = SharedModel(args.weights, args.device)
    example_dir = Path(tempfile.gettempdir()) / "pavenet-examples"
    examples = [] if args.no_example else example_videos(example_dir)
    limits = Limits(args.max_upload_mb, args.max_seconds, args.cache_minutes)
    demo = build_app(model, limits, examples, args.concurrency)
    print(f"pavenet-app: {Path(args.weights).name} on {model.provider}; serving http://{args.host}:{args.port} "
          "(Ctrl-C to stop)")
    demo.queue(default_concurrency_limit=args.concurrency).launch(
        server_name=args.host, server_port=args.port, share=args.share,
        max_file_size=f"{args.max_upload_mb:g}mb", allowed_paths=[str(example_dir)] if examples else None,
        quiet=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
