"""What limits AP: per-frame COCO AP of a checkpoint's raw detections under different scores,
and each person's best-query OKS by height. No tracker: every query of a frame is a detection.

    python benchmarks/frame_ap.py weights/stages/pavenet-t-448x352-s20.pt [--videos 8] [--frames 100]
                                  [--every 10] [--split val] [--input-size 320x256] [--queries 60]

Rows: ``model`` (the model's scores), ``model+nms`` (then greedy pose NMS at OKS 0.5, as the
tracker's duplicate rule), ``oracle+nms`` (each pose scored by its true best OKS to any person,
then NMS: what perfect scores would give these poses), ``oracle-best`` (only each person's best
pose kept: the ceiling of the poses alone). Then best-query OKS per person-height bucket, the
median joint error as a fraction of the person's height, each keypoint's mean OKS term (what the
best pose loses where), and for every left/right pair the median ratio of the predicted to the
true left-right distance with the share of pairs whose left-to-right direction agrees with the
truth: a ratio far below 1 with agreement near 0.5 means the model puts both joints between the
two (it hedges because it cannot tell which is which), not that it cannot find them.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from export.onnx_export import load_model
from pavenet.layouts import get_layout
from pavenet.oks import oks_matrix
from pavenet.preprocess import letterbox, to_frame_pixels
from pavenet.synth import SynthConfig, generate_clip
from training.evaluation.metrics import PredFrame, coco_keypoint_ap
from training.evaluation.track_eval import outside_ignore

HEIGHTS = ((0, 40), (40, 80), (80, 120), (120, 200), (200, 10_000))
HEAD = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")


def pose_nms(score: np.ndarray, self_oks: np.ndarray, thr: float = 0.5) -> np.ndarray:
    """Greedy NMS: [N] scores, [N, N] pose OKS -> scores with suppressed poses set to 0."""
    keep = np.zeros(len(score), bool)
    for i in np.argsort(-score):
        if not (keep & (self_oks[i] >= thr)).any():
            keep[i] = True
    return np.where(keep, score, 0.0)


def side_agreement(pred: np.ndarray, gt: np.ndarray, vis: np.ndarray, layout, min_px: float = 6.0) -> np.ndarray:
    """[pairs, 3] (counted, predicted / true left-right distance, directions agree) of every flip
    pair of one person: pred/gt [K, 2] pixels, vis [K]; a pair counts when both joints are
    labelled and at least ``min_px`` apart in the truth."""
    out = np.zeros((len(layout.flip_pairs), 3))
    for i, (a, b) in enumerate(layout.flip_pairs):
        true, seen = gt[b] - gt[a], pred[b] - pred[a]
        if vis[a] and vis[b] and np.linalg.norm(true) >= min_px:
            out[i] = (1.0, np.linalg.norm(seen) / np.linalg.norm(true), float(np.dot(seen, true) > 0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a pavenet-train checkpoint (.pt)")
    p.add_argument("--videos", type=int, default=8, help="synthetic videos (default 8)")
    p.add_argument("--frames", type=int, default=100, help="frames per video (default 100)")
    p.add_argument("--every", type=int, default=10, help="score every N-th frame (default 10)")
    p.add_argument("--split", default="val", help="synthetic split (default val)")
    p.add_argument("--input-size", default=None, help="WxH (default: the checkpoint's)")
    p.add_argument("--queries", type=int, default=None, help="detect queries (default: the checkpoint's)")
    args = p.parse_args()
    size = tuple(int(v) for v in args.input_size.split("x")) if args.input_size else None
    model = load_model(args.checkpoint, size, args.queries)
    w, h = model.cfg.input_width, model.cfg.input_height
    layout = get_layout(model.cfg.layout)
    sigmas = np.asarray(layout.sigmas)
    rows = {"model": [], "model+nms": [], "oracle+nms": [], "oracle-best": []}
    people = []  # (height, best-query OKS, [K] error / height, [K] visible, [K] OKS term, [pairs, 3] sides)
    gts = []
    for v in tqdm(range(args.videos), unit="video", leave=False):
        clip = generate_clip(SynthConfig(), args.split, 0, v, args.frames)
        for frame in clip.frames[::args.every]:
            image, meta = letterbox(frame.image, (w, h))
            x = torch.from_numpy(np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1)))[None].float()
            with torch.no_grad():
                out = model(x)
            stage = out["refine_keypoints"] if len(out["refine_keypoints"]) else out["keypoints"]
            px = to_frame_pixels(stage[-1, 0].numpy(), (w, h), meta)  # [N, K, 2] frame pixels
            score = out["scores"][-1, 0].sigmoid().numpy()
            best, only_best = np.zeros(len(px)), np.zeros(len(px))
            if frame.num_people:
                vis = frame.keypoints[..., 2] > 0
                boxes = frame.boxes
                area = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1)
                oks = oks_matrix(px, frame.keypoints[..., :2], sigmas, vis, area=area)  # [N, G]
                best = oks.max(1)
                for g in range(frame.num_people):
                    q = oks[:, g].argmax()
                    only_best[q] = max(only_best[q], oks[q, g])
                    height = max(boxes[g, 3] - boxes[g, 1], 1.0)
                    gt = frame.keypoints[g, :, :2]
                    dist = np.linalg.norm(px[q] - gt, axis=-1)
                    err = dist / height
                    term = np.exp(-dist**2 / (2 * (2 * sigmas) ** 2 * area[g]))  # oks_matrix's per-joint term
                    people.append((height, oks[q, g], err, vis[g], term, side_agreement(px[q], gt, vis[g], layout)))
            self_oks = oks_matrix(px, px, sigmas)  # scale: each pose's own keypoint box
            ids, kscores = np.arange(len(px)), np.ones(px.shape[:2])
            scored = {"model": score, "model+nms": pose_nms(score, self_oks), "oracle+nms": pose_nms(best, self_oks),
                      "oracle-best": only_best}
            frame_size = (frame.image.shape[1], frame.image.shape[0])
            for name, s in scored.items():
                rows[name].append(outside_ignore(PredFrame(ids, px, kscores, s), frame, frame_size))
            gts.append(frame)
    print(f"{args.checkpoint} at {w}x{h}, {model.cfg.num_queries} queries: {len(gts)} {args.split} frames, "
          f"{len(people)} people")
    for name, preds in rows.items():
        m = coco_keypoint_ap([(gts, preds)], layout)
        print(f"  {name:12s} AP {m['ap']:.3f}  AP50 {m['ap50']:.3f}  AP75 {m['ap75']:.3f}")
    height = np.array([r[0] for r in people])
    best = np.array([r[1] for r in people])
    for lo, hi in HEIGHTS:
        sel = (height >= lo) & (height < hi)
        if sel.any():
            print(f"  people {lo:>3d}-{hi if hi < 10_000 else '':>3} px: {sel.sum():4d}, best-query OKS "
                  f"{best[sel].mean():.3f}, share with OKS >= 0.75: {np.mean(best[sel] >= 0.75):.2f}")
    err = np.stack([r[2] for r in people])
    vis = np.stack([r[3] for r in people])
    med = [np.median(err[vis[:, k], k]) if vis[:, k].any() else float("nan") for k in range(err.shape[1])]
    print("  median joint error / height: " + ", ".join(f"{n} {m:.3f}" for n, m in zip(layout.keypoints, med)))
    term = np.stack([r[4] for r in people])
    mean_term = [term[vis[:, k], k].mean() if vis[:, k].any() else float("nan") for k in range(term.shape[1])]
    print("  mean OKS term of the best pose: " + ", ".join(f"{n} {m:.2f}" for n, m in zip(layout.keypoints, mean_term)))
    names = layout.keypoints
    for label, slots in (("head", [k for k, n in enumerate(names) if n in HEAD]),
                         ("knees and ankles", [k for k, n in enumerate(names) if n.endswith(("knee", "ankle"))])):
        if slots:
            perfect = term.copy()
            perfect[:, slots] = 1.0
            oks_if = ((perfect * vis).sum(1) / np.maximum(vis.sum(1), 1)).mean()
            print(f"  best-query OKS {best.mean():.3f}; with perfect {label}: {oks_if:.3f}")
    sides = np.stack([r[5] for r in people])  # [people, pairs, 3]
    cells = []
    for i, (a, _b) in enumerate(layout.flip_pairs):
        sel = sides[:, i, 0] > 0
        if sel.any():
            part = names[a].removeprefix("left_")
            cells.append(f"{part} {np.median(sides[sel, i, 1]):.2f}/{sides[sel, i, 2].mean():.2f} ({sel.sum()})")
    print("  left/right pairs, predicted/true distance (median) / direction agrees: " + ", ".join(cells))


if __name__ == "__main__":
    main()
