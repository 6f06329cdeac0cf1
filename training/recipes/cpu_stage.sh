#!/usr/bin/env bash
# One CPU stage of the shipped model's recipe (stages 9-17 and 20 in weights/README.md; side heads
# since stage 20, 448x352 input since stage 17, 384x288 in stages 15-16): continue a checkpoint for MINUTES minutes on
# synthetic clips drawn on the fly, then export it.
#
#   training/recipes/cpu_stage.sh FROM.pt WORKDIR [MINUTES] [SEED] [EXTRA pavenet-train ARGS...]
#   e.g. training/recipes/cpu_stage.sh weights/stages/pavenet-t-448x352-s20.pt runs/c18 75 36
#   (stage 22 ran at 512x384: LR=1.5e-4 ... s20.pt runs/c22 80 42 --set input_width=512 --set input_height=384)
#   (extra args come last, so e.g. `--set input_width=384 --set input_height=288` overrides the size)
#
# Writes WORKDIR/last.pt (full checkpoint, resumable), WORKDIR/pavenet-t.onnx and WORKDIR/pavenet-t.pt
# (slim, what --load-from takes next). Environment: LR (default 1e-4; 1.5e-4 in stages 9-17), BATCH (8), WORKERS (1).
set -euo pipefail
if [ $# -lt 2 ]; then sed -n '2,12p' "$0"; exit 2; fi
FROM=$1; W=$2; MINUTES=${3:-80}; SEED=${4:-0}
shift $(( $# < 4 ? $# : 4 ))
SETS=(--set pose_embed=mlp --set sigma_relative=false --set align_centres=false --set input_width=448
      --set input_height=352 --set pretrained_backbone=false --set enc_topk=6 --set grad_frames=2
      --set num_queries=60 --set track_fuse_dist=0.2 --set backbone_width=1.5 --set side_heads=true)
pavenet-train --device cpu --load-from "$FROM" "${SETS[@]}" --batch-size "${BATCH:-8}" --workers "${WORKERS:-1}" \
              --lr "${LR:-1e-4}" --epochs 3 --iters-per-epoch 1300 --set warmup_iters=20 --set val_clips=48 \
              --set ema_decay=0.998 --set schedule_minutes="$MINUTES" --max-minutes "$MINUTES" --seed "$SEED" \
              --work-dir "$W" "$@"
pavenet-export "$W/last.pt" --refine-top 20 -o "$W/pavenet-t.onnx" --slim "$W/pavenet-t.pt"
