"""`pavenet-train`: train a PAVENet model (with no arguments: pavenet-t on synthetic videos).

Examples:
    pavenet-train                                         # pavenet-t, synthetic data, runs/pavenet-t-<time>
    pavenet-train --epochs 2 --iters-per-epoch 100 --batch-size 4
    pavenet-train --config pavenet-r50 --data posetrack21:/data/PoseTrack21 --set layout=posetrack17 \\
                  --backbone-weights resnet50-imagenet.pth --device cuda
    torchrun --nproc_per_node 4 -m training.train_cli --config pavenet-r50 --data coco:/data/coco
    pavenet-train --resume runs/pavenet-t-20261125-1830/last.pt

Ctrl-C (or SIGTERM) stops a run after the current step with last.pt saved; --resume continues it
from exactly there (a second Ctrl-C stops at once).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pavenet.cli_utils import run_cli
from pavenet.errors import PavenetError
from pavenet.model.config import ModelConfig, load_config_file, parse_set, preset
from training.config import TrainConfig

# Command-line flags that set a TrainConfig field.
_FLAGS = {"data": "data", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "clip_grad": "clip_grad",
          "accumulate": "accumulate", "workers": "workers", "iters_per_epoch": "iters_per_epoch", "seed": "seed",
          "tensorboard": "tensorboard"}


def resolve_configs(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig, set[str]]:
    """Preset or file, then ``--set`` overrides, then explicit flags (later wins). Also returns the
    keys the user set (file or ``--set``), so automatic choices never override them."""
    values: dict = {}
    if args.config in (None, "") or not Path(args.config).suffix:
        model = preset(args.config or "pavenet-t")
    else:
        model = ModelConfig()
        raw = load_config_file(args.config)
        values.update(raw.get("model", {}))
        values.update(raw.get("train", {}))
        values.update({k: v for k, v in raw.items() if not isinstance(v, dict)})
        if "preset" in values:
            model = preset(values.pop("preset"))
    values.update(parse_set(args.set))
    train_keys = TrainConfig.field_names()
    model_keys = set(ModelConfig().to_dict())
    unknown = sorted(set(values) - train_keys - model_keys)
    if unknown:
        raise PavenetError(f"unknown config key(s): {', '.join(unknown)}")
    model = model.override(**{k: v for k, v in values.items() if k in model_keys})
    train = TrainConfig().override(**{k: v for k, v in values.items() if k in train_keys})
    flags = {field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag) is not None}
    return model, train.override(**flags), set(values)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pavenet-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="preset (pavenet-t, pavenet-r50) or a JSON/TOML file of config keys "
                                    "(flat or in [model]/[train] tables; 'preset' picks the base). Default pavenet-t")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any model or training config key, e.g. --set d_model=64 --set warmup_iters=0")
    p.add_argument("--data", help="synthetic (default), posetrack18:DIR, posetrack21:DIR or coco:DIR")
    p.add_argument("--epochs", type=int, help="number of epochs (default 12)")
    p.add_argument("--iters-per-epoch", type=int, help="optimizer steps per epoch (default 500)")
    p.add_argument("--batch-size", type=int, help="clips per step and process (default 8)")
    p.add_argument("--accumulate", type=int, help="micro-batches per optimizer step (default 1)")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 4e-4; backbone and offsets x0.1)")
    p.add_argument("--clip-grad", type=float, help="max gradient norm, 0 = off (default 0.1, as PETR)")
    p.add_argument("--workers", type=int, help="data-loading processes (default 1)")
    p.add_argument("--seed", type=int, help="random seed of initialisation and sample stream (default 0)")
    p.add_argument("--work-dir", help="run folder (default runs/<config>-<date-time>)")
    p.add_argument("--resume", help="checkpoint to continue from exactly, or 'auto' for WORK_DIR/last.pt")
    p.add_argument("--load-from", help="initialise the model from a checkpoint (same architecture), then train "
                                       "anew (backbone at low lr unless --set pretrained_backbone=false)")
    p.add_argument("--backbone-weights", help="torchvision ResNet ImageNet weights (.pth) for resnet backbones")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto = CUDA when available (default)")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log scalars to WORK_DIR/tensorboard (needs: pip install tensorboard)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines still written)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="stop after this many minutes of training, validated and saved like the end of an "
                        "epoch (last.pt, best.pt); continue later with --resume. 0 = no limit (default)")
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from pavenet.model.checkpoint import checkpoint_config, load_checkpoint  # torch only once training starts
    from training.loop.devices import uses_bf16
    from training.loop.trainer import Trainer

    resume = args.resume
    if resume == "auto":
        if not args.work_dir:
            raise PavenetError("--resume auto needs --work-dir")
        resume = str(Path(args.work_dir) / "last.pt")
    if resume:
        state = load_checkpoint(resume)
        model_cfg = checkpoint_config(state, resume)
        train_cfg = TrainConfig().override(**state["train_config"])
        extra = {f: getattr(args, fl) for fl, f in _FLAGS.items() if getattr(args, fl) is not None}
        if set(extra) - {"epochs", "workers", "tensorboard"} or args.set or args.config:
            raise PavenetError("--resume continues a run with its own config; only --epochs, --workers and "
                               "--tensorboard may change")
        train_cfg = train_cfg.override(**extra)
        explicit: set[str] = set()  # a resumed run keeps its saved config as it is
        work_dir = Path(args.work_dir) if args.work_dir else Path(resume).parent
    else:
        model_cfg, train_cfg, explicit = resolve_configs(args)
        work_dir = Path(args.work_dir or f"runs/{model_cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    start = time.perf_counter()
    trainer = Trainer(model_cfg, train_cfg, work_dir, device=args.device, resume=resume, load_from=args.load_from,
                      backbone_weights=args.backbone_weights, progress=not args.no_progress,
                      mark_pretrained="pretrained_backbone" not in explicit)
    metrics = trainer.train(max_minutes=args.max_minutes)
    minutes = (time.perf_counter() - start) / 60
    if trainer.stopped_by:
        if trainer.dist.main:
            print(f"stopped {model_cfg.name} by {trainer.stopped_by} at step {trainer.step} after {minutes:.1f} min; "
                  f"continue with: pavenet-train --resume {work_dir / 'last.pt'}")
        return 130
    if trainer.dist.main:
        shown = (f"val mean OKS {metrics['mean_oks']:.3f}, recall@OKS0.5 {metrics['recall_oks50']:.3f}"
                 if metrics else "no validation ran")
        precision = " (bf16 autocast)" if uses_bf16(trainer.device, train_cfg.amp) else ""
        print(f"trained {model_cfg.name} to step {trainer.step} in {minutes:.1f} min on {trainer.device}{precision}: "
              f"{shown}; log and checkpoints in {work_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
