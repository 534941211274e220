#!/usr/bin/env bash
# GPU training step times of LearnDrop next to plain PyTorch (tools/bench/
# torch_gpu_step.py) for the models, inputs, batches and cuts of issue 11's
# reference table: the full step, the step from a mid cut with the cache in
# GPU memory, and with the cache in host memory copied through pinned staging
# buffers. Prints a table and the ratios ours / PyTorch and host / device.
#
# Needs a CUDA build of ldrop (docs/gpu.md) and a PyTorch with CUDA.
# Usage: tools/bench/gpu.sh [PRECISION] [STEPS]    (default bf16, 50 timed steps)
#   LDROP=path/to/ldrop   (default build/bin/ldrop)   PYTHON=python3
set -euo pipefail
cd "$(dirname "$0")/../.."
precision=${1:-bf16}
steps=${2:-50}
ldrop=${LDROP:-build/bin/ldrop}
python=${PYTHON:-python3}
if ! "$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu.sh: $python has no PyTorch that sees a CUDA device; run this on a GPU machine (docs/gpu.md)" >&2
  exit 2
fi

# model stem input batch cut
cases=(
  "resnet18 cifar 32 256 4"
  "vgg11_bn cifar 32 256 4"
  "resnet50 cifar 32 256 8"
  "resnet50 imagenet 160 128 8"
  "resnet152 imagenet 160 128 25"
)

ms() { awk -v s="$1" 'BEGIN { printf "%.2f", s * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

printf '%s on %s\n' "$precision" "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo 'a GPU')"
printf '| %-9s | %-8s | %5s | %5s | %4s | %6s | %9s | %9s | %5s | %9s | %9s | %5s | %9s | %9s | %11s |\n' \
  model stem input batch cut "FLOPs" "full ours" "full torch" ratio "cut ours" "cut torch" ratio \
  "host ours" "host torch" "host/device"
printf '|%s\n' "$(printf -- '---|%.0s' {1..15})"
for c in "${cases[@]}"; do
  read -r model stem size batch cut <<<"$c"
  args=(model bench --variant "$model" --input-size "$size" --num-classes 10 --batch "$batch" --steps "$steps"
        --device cuda --precision "$precision" --cut "$cut" --threads 8)
  [[ $model == resnet* ]] && args+=(--stem "$stem")
  dev=$("$ldrop" "${args[@]}" --tier device)
  host=$("$ldrop" "${args[@]}" --tier host)
  full_s=$(sed -n 's/.*(\([0-9.]*\) s\/step).*/\1/p' <<<"$dev")
  left=$(awk -v c="$cut" '$1 == c { print $3 }' <<<"$dev")
  cut_s=$(awk -v c="$cut" '$1 == c { print $4 }' <<<"$dev")
  host_s=$(awk -v c="$cut" '$1 == c { print $4 }' <<<"$host")
  read -r _ t_full t_dev t_host < <("$python" tools/bench/torch_gpu_step.py "$model" "$stem" "$size" "$batch" "$cut" \
                                     "$precision" "$steps")
  printf '| %-9s | %-8s | %5s | %5s | %4s | %6s | %9s | %9s | %5s | %9s | %9s | %5s | %9s | %9s | %11s |\n' \
    "$model" "$stem" "$size" "$batch" "$cut" "$left" "$(ms "$full_s")" "$t_full" \
    "$(ratio "$(ms "$full_s")" "$t_full")" "$(ms "$cut_s")" "$t_dev" "$(ratio "$(ms "$cut_s")" "$t_dev")" \
    "$(ms "$host_s")" "$t_host" "$(ratio "$(ms "$host_s")" "$(ms "$cut_s")")"
done
echo "times in ms per step; ratio = ours / PyTorch (targets: full <= 1.00, cut <= 1.10); host/device = ours with the"
echo "cache in pinned host memory / in GPU memory (target <= 1.10)"
