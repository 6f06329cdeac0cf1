"""Training memory of sequential clips: does the no-grad window keep activations flat?

    python benchmarks/seq_memory.py [--config pavenet-t] [--batch-size 4] [--device cpu]

For clips of 2 and 4 frames with a one-frame gradient window, and 4 frames all under gradient,
prints the bytes autograd saves for backward (activations) and the peak memory of one training
step (CUDA max-allocated, or peak RSS of a fresh process on CPU), with ratios to the 2-frame case.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CASES = [(2, 1), (4, 1), (4, 4)]


def measure(config: str, batch: int, seq: int, grad: int, device: str) -> dict:
    import torch

    from pavenet.layouts import get_layout
    from pavenet.model.config import preset
    from pavenet.model.pavenet import build_model
    from pavenet.synth import SynthConfig
    from training.data.augment import AugmentConfig
    from training.data.dataset import ClipDataset, SyntheticSource, collate
    from training.loop.devices import peak_memory_mb
    from training.loop.sequence import TrainStep
    from training.objective.criterion import SetCriterion

    cfg = preset(config)
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_model(cfg).to(dev)
    crit = SetCriterion(torch.tensor(get_layout(cfg.layout).sigmas), cfg.decoder_layers).to(dev)
    step = TrainStep(model, crit, grad_frames=grad, score_thr=0.0)  # every query tracked: worst case
    data = ClipDataset(SyntheticSource(SynthConfig(), "train", 0), seq, cfg.input_width, cfg.input_height, 0,
                       AugmentConfig(width=cfg.input_width, height=cfg.input_height))
    batch_data = collate([data[i] for i in range(batch)])
    targets = [[t.to(dev) for t in frame] for frame in batch_data["targets"]]
    saved = [0]

    def pack(t):
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        losses, _ = step(batch_data["images"].to(dev), targets, batch_data["index"])
    losses["loss"].backward()
    return {"activations_mb": saved[0] / 2**20, "peak_mb": peak_memory_mb(dev)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="pavenet-t", help="model preset (default pavenet-t)")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per step (default 4)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: one measurement in a fresh process
    args = parser.parse_args()
    if args.case:
        seq, grad = (int(v) for v in args.case.split(","))
        print(json.dumps(measure(args.config, args.batch_size, seq, grad, args.device)))
        return
    results = {}
    for seq, grad in CASES:  # a fresh process per case, so peak memory is that case's own
        cmd = [sys.executable, __file__, "--config", args.config, "--batch-size", str(args.batch_size),
               "--device", args.device, "--case", f"{seq},{grad}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results[(seq, grad)] = json.loads(out)
    base = results[CASES[0]]
    for (seq, grad), r in results.items():
        print(f"seq_length {seq}, gradient window {grad} frame(s): activations {r['activations_mb']:8.1f} MB "
              f"({r['activations_mb'] / base['activations_mb']:.2f}x), peak {r['peak_mb']:7.0f} MB "
              f"({r['peak_mb'] / base['peak_mb']:.2f}x)")


if __name__ == "__main__":
    main()
