#!/usr/bin/env bash
# One GPU stage of the shipped model's recipe (stage 8's GPU parts in weights/README.md): write
# synthetic training videos once, then two runs at batch 128 from written videos (lr 3e-4, then
# 1e-4, each cosine over its own time budget), then export.
#
#   training/recipes/gpu_stage.sh FROM.pt WORKDIR [MINUTES_1] [MINUTES_2] [SEED]
#   e.g. training/recipes/gpu_stage.sh weights/stages/pavenet-t-448x352-s20.pt /tmp/g 4.5 3.5 1
#
# Writes WORKDIR/p1, WORKDIR/p2 (full checkpoints, resumable), WORKDIR/pavenet-t.onnx and
# WORKDIR/pavenet-t.pt (slim, what --load-from takes next). Environment: SYN (where the videos go,
# default /tmp/pavenet-syn; reused when complete), VIDEOS (1600), BATCH (128), WORKERS (cores - 2),
# DEVICE (cuda; cpu runs the same steps slowly, for checking the script).
set -euo pipefail
if [ $# -lt 2 ]; then sed -n '2,12p' "$0"; exit 2; fi
FROM=$1; W=$2; M1=${3:-4.5}; M2=${4:-3.5}; SEED=${5:-0}
SYN=${SYN:-/tmp/pavenet-syn}; VIDEOS=${VIDEOS:-1600}; DEVICE=${DEVICE:-cuda}
CORES=$(nproc); WORKERS=${WORKERS:-$(( CORES > 3 ? CORES - 2 : 1 ))}
SETS=(--set pose_embed=mlp --set sigma_relative=false --set align_centres=false --set input_width=448
      --set input_height=352 --set pretrained_backbone=false --set enc_topk=6 --set grad_frames=2
      --set num_queries=60 --set track_fuse_dist=0.2 --set backbone_width=1.5 --set side_heads=true)
if [ ! -f "$SYN/.complete-$VIDEOS" ]; then
  per=$(( (VIDEOS + CORES - 1) / CORES ))
  for ((start = 0; start < VIDEOS; start += per)); do
    n=$(( VIDEOS - start < per ? VIDEOS - start : per ))
    pavenet-data synth --out "$SYN" --split train --videos "$n" --start "$start" --frames 100 --seed "$SEED" --quiet &
  done
  wait
  pavenet-data synth --out "$SYN" --split val --videos 4 --frames 100 --quiet
  touch "$SYN/.complete-$VIDEOS"
fi
COMMON=("${SETS[@]}" --data "posetrack21:$SYN" --batch-size "${BATCH:-128}" --workers "$WORKERS" --epochs 20
        --iters-per-epoch 250 --set val_clips=48 --set ema_decay=0.998 --seed "$SEED")
pavenet-train --device "$DEVICE" --load-from "$FROM" "${COMMON[@]}" --set warmup_iters=30 --lr 3e-4 \
              --set schedule_minutes="$M1" --max-minutes "$M1" --work-dir "$W/p1"
pavenet-train --device "$DEVICE" --load-from "$W/p1/last.pt" "${COMMON[@]}" --set warmup_iters=10 --lr 1e-4 \
              --set schedule_minutes="$M2" --max-minutes "$M2" --work-dir "$W/p2"
pavenet-export "$W/p2/last.pt" --refine-top 20 -o "$W/pavenet-t.onnx" --slim "$W/pavenet-t.pt"
