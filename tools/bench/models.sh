#!/usr/bin/env bash
# Training throughput of vgg11_bn and resnet18 (cifar stem, 32x32, batch 128,
# 2 threads) in LearnDrop, and in plain PyTorch side by side when Debian's
# python3-torchvision is installed. Prints a table and the ratio ours/PyTorch.
#
# The machine is shared and noisy: each side runs REPEATS times, alternating
# with the other, and the best rate of each side is reported.
#
# Usage: tools/bench/models.sh [STEPS] [REPEATS]   (default 8 timed steps, 3 repeats)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-8}
repeats=${2:-3}
ldrop=build/bin/ldrop
[[ -x $ldrop ]] || bash tools/setup.sh
have_torch=0
/usr/bin/python3 -c 'import torchvision' 2>/dev/null && have_torch=1

rate() { sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p'; }
printf '%-10s %16s %16s %8s\n' model "LearnDrop img/s" "PyTorch img/s" ratio
best() { sort -g | tail -1; }
for variant in vgg11_bn resnet18; do
  ours_all="" theirs_all=""
  for ((r = 0; r < repeats; r++)); do
    ours_all+="$("$ldrop" model bench --variant "$variant" --stem cifar --input-size 32 --num-classes 10 \
                 --batch 128 --steps "$steps" --threads 2 | rate)"$'\n'
    if ((have_torch)); then
      theirs_all+="$(/usr/bin/python3 tools/bench/torch_train.py "$variant" cifar 32 128 "$steps" 2 | rate)"$'\n'
    fi
  done
  ours=$(printf '%s' "$ours_all" | best)
  if ((have_torch)); then
    theirs=$(printf '%s' "$theirs_all" | best)
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')
  else
    theirs="(no torchvision)"
    ratio="-"
  fi
  printf '%-10s %16s %16s %8s\n' "$variant" "$ours" "$theirs" "$ratio"
done
