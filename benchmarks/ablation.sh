#!/usr/bin/env bash
# Ablation of the training-recipe fixes of issue 12: five pavenet-t runs side by side, each for
# the same wall time on the same machine, each stage adding one group of fixes to the one before:
#   r0  the first shipped recipe (MLP pose embedding, whole-image RLE sigmas averaged per
#       coordinate, cell centres at (j + 0.5) * s, 2-frame clips with a 1-frame gradient window,
#       tracks fed the decoder's pose, drop 0.4), on today's labels (ignore regions)
#   r1  + RLE summed per person in units of the person's size (relative sigmas)
#   r2  + sine pose embedding, feature cells centred where the convolutions centre them
#   r3  + training runs the runtime's step: 5-frame clips, gradient on the last 3, tracks fed the
#       refined pose, lost tracks kept, clips that start without tracks (the full new recipe)
#   r4  r3 with TrackFormer/MOTR hard assignment instead of the track bonus
# ARMS=finetune instead runs a 2x2 from the shipped weights with this round's recipe (5-frame clips,
# gradient on 2, one-to-many proposals): f0 as is, f1 + OKS loss (weight 2, as PETR), f2 input
# 320x256 (320x240 frames are no longer shrunk to 256x192), f3 both.
# Usage: DEVICE=cuda MIN=7 [ARMS=recipe|finetune] benchmarks/ablation.sh RESULTS_DIR   (then
# pavenet-export + pavenet-eval on the val split for each slim checkpoint RESULTS_DIR/NAME.pt;
# see weights/README.md)
set -u
DEST=${1:?usage: benchmarks/ablation.sh RESULTS_DIR}
MIN=${MIN:-7}
BS=${BS:-16}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-2}
PY=${PY:-python3}
mkdir -p "$DEST" runs/ablation
common=(--device "$DEVICE" --batch-size "$BS" --workers "$WORKERS" --epochs 1 --iters-per-epoch 1000000 --lr 5e-4
        --max-minutes "$MIN" --no-progress --set val_clips=16 --set schedule=step --set lr_drop=1000
        --set log_interval=20)
old_model=(--set pose_embed=mlp --set sigma_relative=false --set align_centres=false)
old_track=(--set seq_length=2 --set grad_frames=1 --set track_drop=0.4 --set track_reset=0 --set track_feed=decoder)
run() {
  local name=$1; shift
  ( timeout $(( ${MIN%.*} * 60 + 150 )) $PY -m training.train_cli "${common[@]}" --work-dir "runs/ablation/$name" "$@" \
        > "runs/ablation/$name.out" 2>&1
    $PY -c "import sys; from export.onnx_export import slim_checkpoint; slim_checkpoint(sys.argv[1], sys.argv[2])" \
        "runs/ablation/$name/last.pt" "$DEST/$name.pt" >> "runs/ablation/$name.out" 2>&1
    echo "$name: $(tail -n 1 "runs/ablation/$name.out")" ) &
}
if [ "${ARMS:-recipe}" = finetune ]; then
  ft=(--load-from weights/pavenet-t.pt "${old_model[@]}" --set pretrained_backbone=false --set enc_topk=6
      --set grad_frames=2 --set init_partial=true)
  big=(--set input_width=320 --set input_height=256)
  common+=(--lr "${LR:-3e-4}" --set warmup_iters=50 --set val_clips=48)
  run f0 "${ft[@]}"
  run f1 "${ft[@]}" --set loss_oks=2
  run f2 "${ft[@]}" "${big[@]}"
  run f3 "${ft[@]}" "${big[@]}" --set loss_oks=2
  wait
  tar czf "$DEST/logs.tgz" runs/ablation/*.out runs/ablation/*/log.jsonl runs/ablation/*/config.json 2>/dev/null
  ls -la "$DEST"
  exit 0
fi
run r0 "${old_model[@]}" --set rle_reduction=coordinate "${old_track[@]}"
run r1 --set pose_embed=mlp --set align_centres=false "${old_track[@]}"
run r2 "${old_track[@]}"
run r3
run r4 --set track_assignment=hard
wait
tar czf "$DEST/logs.tgz" runs/ablation/*.out runs/ablation/*/log.jsonl runs/ablation/*/config.json 2>/dev/null
ls -la "$DEST"
