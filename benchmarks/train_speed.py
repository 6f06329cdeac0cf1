"""Training throughput and peak memory of a model config on this machine.

    python benchmarks/train_speed.py [--config pavenet-t] [--batch-size 8] [--steps 20] [--device cpu]

Measures full optimizer steps (data loading in the main process excluded: batches are
prepared first), and prints steps/s, clips/s, and peak memory (CUDA max allocated, or the
process's peak RSS on CPU).
"""

from __future__ import annotations

import argparse
import time

import torch

from pavenet.layouts import get_layout
from pavenet.model.config import preset
from pavenet.model.pavenet import build_model, param_groups
from training.augment import AugmentConfig
from training.criterion import SetCriterion
from training.data import ClipDataset, SyntheticSource, collate
from training.synth import SynthConfig
from training.trainer import peak_memory_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="pavenet-t", help="model preset (default pavenet-t)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per step (default 8)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps after 3 warm-up steps (default 20)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    args = parser.parse_args()
    cfg = preset(args.config)
    device = torch.device(args.device)
    model = build_model(cfg).to(device)
    crit = SetCriterion(torch.tensor(get_layout(cfg.layout).sigmas), cfg.decoder_layers).to(device)
    opt = torch.optim.AdamW(param_groups(model, 4e-4, 1e-4), lr=4e-4)
    data = ClipDataset(SyntheticSource(SynthConfig(), "train", 0), 1, cfg.input_width, cfg.input_height, 0,
                       AugmentConfig(width=cfg.input_width, height=cfg.input_height))
    batches = [collate([data[i * args.batch_size + j] for j in range(args.batch_size)]) for i in range(args.steps + 3)]
    for i, batch in enumerate(batches):
        if i == 3:
            start = time.perf_counter()
        out = model(batch["images"][:, 0].to(device).float())
        losses, _ = crit(out, [t.to(device) for t in batch["targets"][0]])
        losses = SetCriterion.total(losses)
        opt.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{cfg.name} ({params:.2f}M params, {cfg.input_width}x{cfg.input_height}) batch {args.batch_size} on "
          f"{device} ({torch.get_num_threads()} threads): {args.steps / secs:.2f} it/s, "
          f"{args.steps * args.batch_size / secs:.1f} clips/s, peak memory {peak_memory_mb(device):.0f} MB")


if __name__ == "__main__":
    main()
