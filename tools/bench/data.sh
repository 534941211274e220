#!/usr/bin/env bash
# Loader throughput against training throughput: samples/s of each dataset
# plugin (decode + transform + batch, training split with augmentation) at 1
# and 2 threads, next to the training images/s of resnet18 (full width, 2
# threads) at the same input size. The loader keeps up when its samples/s at
# 1 thread is well above the training rate (the other thread trains).
#
# Data: $LEARNDROP_DATA (default ../shared/data) with mnist/, cifar10/, imagenette/.
# Usage: tools/bench/data.sh [SAMPLES] [TRAIN_STEPS]   (default 2048 samples, 4 timed steps)
set -euo pipefail
cd "$(dirname "$0")/../.."
samples=${1:-2048}
steps=${2:-4}
export LEARNDROP_DATA=${LEARNDROP_DATA:-../shared/data}
ldrop=build/bin/ldrop
[[ -x $ldrop ]] || bash tools/setup.sh

loader() {  # CONFIG THREADS SETS... -> samples/s
  local config=$1 threads=$2
  shift 2
  "$ldrop" data bench "$config" --threads "$threads" --samples "$samples" "$@" |
    sed -n 's/.*: \([0-9.]*\) samples\/s.*/\1/p'
}
training() {  # STEM SIZE CHANNELS BATCH -> images/s
  "$ldrop" model bench --variant resnet18 --stem "$1" --input-size "$2" --in-channels "$3" --num-classes 10 \
    --batch "$4" --steps "$steps" --threads 2 | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p'
}

printf '%-28s %6s %14s %14s %16s %12s\n' dataset size "load/s 1 thr" "load/s 2 thr" "resnet18 train/s" "load/train"
row() {  # LABEL SIZE CONFIG STEM CHANNELS BATCH SETS...
  local label=$1 size=$2 config=$3 stem=$4 channels=$5 batch=$6
  shift 6
  local one two train
  one=$(loader "$config" 1 --set train.batch_size="$batch" "$@")
  two=$(loader "$config" 2 --set train.batch_size="$batch" "$@")
  train=$(training "$stem" "$size" "$channels" "$batch")
  printf '%-28s %6s %14s %14s %16s %11.1fx\n' "$label" "$size" "$one" "$two" "$train" \
    "$(awk -v a="$one" -v b="$train" 'BEGIN { print a / b }')"
}
row "mnist (idx.gz)" 28 configs/mnist-vgg11.yaml cifar 1 128
row "cifar10 (crop_flip)" 32 configs/cifar10-resnet18.yaml cifar 3 128
row "imagenette (crop_flip)" 128 configs/imagenette-resnet18.yaml imagenet 3 64 --set dataset.augment=crop_flip
row "imagenette (crop_flip)" 224 configs/imagenette-resnet18.yaml imagenet 3 32 --set dataset.augment=crop_flip \
  --set dataset.image_size=224
row "imagenette (crop_flip)" 64 configs/imagenette-resnet18.yaml imagenet 3 128 --set dataset.augment=crop_flip \
  --set dataset.image_size=64
