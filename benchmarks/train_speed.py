"""Training throughput, host syncs and peak memory of one optimizer step on this machine.

    python benchmarks/train_speed.py [--config pavenet-t] [--batch-size 8] [--steps 10] [--device cpu]
                                     [--seq-length 5] [--grad-frames 3]
    python benchmarks/train_speed.py --checkpoint weights/stages/pavenet-t-448x352-s20.pt \
                                     --set grad_frames=2 --set track_fuse_dist=0.2 --top 25

Measures full optimizer steps of the real training step (clips of ``--seq-length`` frames, track
queries handed over as at run time; batches are prepared first, so data loading is excluded) and
prints it/s, clips/s, peak memory (CUDA max allocated, or the process's peak RSS on CPU), and from
one profiled step: ``host syncs/step`` (``aten::item`` / ``aten::_local_scalar_dense`` and
``aten::nonzero`` calls, each counted once, in the forward pass, losses, backward and gradient
clipping; the criterion's one device-to-host copy per frame is not counted), the optimizer's own
scalar reads separately (fused AdamW: per parameter on the CPU, where they are no transfer; none on
CUDA), and ``ops/step`` (aten operators, optimizer included). Precision as the trainer's (bf16
autocast on CUDA and on CPUs with native bf16; ``--no-amp`` for float32); ``--no-reuse-values``
measures the step before each frame's value projections were reused across windows.
``--checkpoint`` takes the model (its config and weights) from a checkpoint, ``--set`` overrides
training options as ``pavenet-train --set`` does, and ``--top N`` prints the N operators that
took the most CPU time in the profiled step (self time, the optimizer excluded).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from pavenet.model.checkpoint import checkpoint_config, load_checkpoint
from pavenet.model.config import parse_set, preset
from pavenet.model.pavenet import build_model, param_groups
from pavenet.synth import SynthConfig
from training.config import TrainConfig
from training.data.augment import AugmentConfig
from training.data.dataset import ClipDataset, SyntheticSource, collate
from training.loop.devices import autocast, peak_memory_mb, uses_bf16
from training.loop.sequence import TrainStep
from training.loop.trainer import build_criterion

SYNC_OPS = ("aten::_local_scalar_dense", "aten::item", "aten::nonzero")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="pavenet-t", help="model preset (default pavenet-t)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per step (default 8)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps after 2 warm-up steps (default 10)")
    parser.add_argument("--seq-length", type=int, default=5, help="frames per clip (default 5)")
    parser.add_argument("--grad-frames", type=int, default=3, help="frames with gradient (default 3)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--no-amp", action="store_true",
                        help="float32 throughout (default: bf16 autocast where the trainer uses it: CUDA, and "
                             "CPUs with native bf16)")
    parser.add_argument("--no-reuse-values", action="store_true",
                        help="project a frame's tokens again in every window (the step before value reuse)")
    parser.add_argument("--checkpoint", help="take the model config and weights from this checkpoint "
                                             "(default: a new model of --config)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a training option (repeatable; after --seq-length / --grad-frames)")
    parser.add_argument("--top", type=int, default=0, help="print the N operators with the most self CPU time")
    args = parser.parse_args()
    state = load_checkpoint(args.checkpoint) if args.checkpoint else None
    cfg = checkpoint_config(state, args.checkpoint) if state else preset(args.config)
    train = TrainConfig(seq_length=args.seq_length, grad_frames=args.grad_frames).override(**parse_set(args.set))
    device = torch.device(args.device)
    model = build_model(cfg)
    if state:
        model.load_state_dict(state["model"])
    step = TrainStep(model, build_criterion(cfg, train), train.grad_frames, train.track_feed).to(device).train()
    step.reuse_values = not args.no_reuse_values
    amp = not args.no_amp
    opt = torch.optim.AdamW(param_groups(step.model, 4e-4, 1e-4) + [{"params": list(step.criterion.parameters())}],
                            lr=4e-4, fused=True)  # as the trainer: no per-parameter step.item()
    data = ClipDataset(SyntheticSource(SynthConfig(), "train", 0), train.seq_length, cfg.input_width,
                       cfg.input_height, 0, AugmentConfig(width=cfg.input_width, height=cfg.input_height))
    batches = [collate([data[i * args.batch_size + j] for j in range(args.batch_size)]) for i in range(args.steps + 3)]

    def forward_backward(batch) -> None:
        images = batch["images"].to(device)
        targets = [t.to(device) for t in batch["targets"]]
        with autocast(device, amp):
            losses, _ = step(images, targets, batch["index"])
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        norm = torch.nn.utils.clip_grad_norm_(step.parameters(), 0.1)
        float(norm)  # the trainer's one sync per step (non-finite check)

    def run(batch) -> None:
        forward_backward(batch)
        opt.step()

    def count(events, names) -> int:
        return sum(e.count for e in events if e.key in names)

    for batch in batches[:2]:
        run(batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        forward_backward(batches[2])
    with profile(activities=[ProfilerActivity.CPU]) as prof_opt:
        opt.step()
    events, opt_events = prof.key_averages(), prof_opt.key_averages()
    if args.top:
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.top))
    # Each sync shows as aten::item and, beneath it, aten::_local_scalar_dense: count the calls once.
    syncs = count(events, ("aten::item", "aten::nonzero")) + count(events, ("aten::_local_scalar_dense",)) \
        - count(events, ("aten::item",))
    opt_syncs = count(opt_events, ("aten::item", "aten::nonzero"))
    ops = sum(e.count for e in events if e.key.startswith("aten::")) + \
        sum(e.count for e in opt_events if e.key.startswith("aten::"))
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches[3:]:
        run(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - start
    params = sum(p.numel() for p in step.model.parameters()) / 1e6
    opt_note = ("fused AdamW on the CPU reads each parameter's step count, a CPU scalar that needs no device "
                "transfer" if device.type == "cpu" else "fused AdamW")
    precision = "bf16 autocast" if uses_bf16(device, amp) else "float32"
    reuse = "" if step.reuse_values else ", no value reuse"
    print(f"{cfg.name} ({params:.2f}M params, {cfg.input_width}x{cfg.input_height}) batch {args.batch_size} x "
          f"{train.seq_length} frames ({train.grad_frames} with gradient) on {device} ({torch.get_num_threads()} "
          f"threads, {precision}{reuse}): host syncs/step {syncs} (+ {opt_syncs} in the optimizer: {opt_note}), "
          f"ops/step {ops}, "
          f"{args.steps / secs:.2f} it/s, "
          f"{args.steps * args.batch_size / secs:.1f} clips/s, peak memory {peak_memory_mb(device):.0f} MB")


if __name__ == "__main__":
    main()
