#!/usr/bin/env bash
# CPU training throughput in fp32 and bf16 (autocast) side by side: the
# measurement behind train.precision: bf16 on CPUs with native bfloat16
# (AVX512-BF16 / AMX). Full step and a mid cut, vgg11_bn and resnet18
# (cifar stem, 32x32, batch 128, 2 threads), REPEATS alternating runs, best
# of each. Prints a table and the ratio bf16 / fp32 of images/s.
#
# Usage: tools/bench/precision.sh [STEPS] [REPEATS] [WIDTH]   (default 5, 3, 0.25)
set -euo pipefail
cd "$(dirname "$0")/../.."
steps=${1:-5}
repeats=${2:-3}
width=${3:-0.25}
ldrop=build/bin/ldrop
[[ -x $ldrop ]] || bash tools/setup.sh
if ! grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo; then
  echo "precision.sh: this CPU has no native bfloat16 (avx512_bf16/amx_bf16): LearnDrop refuses bf16 here" >&2
  exit 2
fi

best() { sort -g | tail -1; }
# images/s of the full step and of the step from `cut`
rates() {
  "$ldrop" model bench --variant "$1" --stem cifar --input-size 32 --num-classes 10 --width "$width" --batch 128 \
    --steps "$steps" --threads 2 --precision "$2" --cut "$3" |
    awk -v c="$3" '/images\/s \(/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "images/s") full = $i }
                   $1 == c { cut = $5 } END { print full, cut }'
}
printf 'width %s, batch 128, 2 threads, %s steps, best of %s\n' "$width" "$steps" "$repeats"
printf '%-10s %4s %14s %14s %8s %14s %14s %8s\n' model cut "fp32 full" "bf16 full" ratio "fp32 cut" "bf16 cut" ratio
for spec in "vgg11_bn 4" "resnet18 4"; do
  read -r model cut <<<"$spec"
  f32_full="" f32_cut="" b16_full="" b16_cut=""
  for ((r = 0; r < repeats; r++)); do
    read -r a b < <(rates "$model" fp32 "$cut")
    f32_full+="$a"$'\n' f32_cut+="$b"$'\n'
    read -r a b < <(rates "$model" bf16 "$cut")
    b16_full+="$a"$'\n' b16_cut+="$b"$'\n'
  done
  f32f=$(printf '%s' "$f32_full" | best) b16f=$(printf '%s' "$b16_full" | best)
  f32c=$(printf '%s' "$f32_cut" | best) b16c=$(printf '%s' "$b16_cut" | best)
  printf '%-10s %4s %14s %14s %7.2fx %14s %14s %7.2fx\n' "$model" "$cut" "$f32f" "$b16f" \
    "$(awk -v a="$b16f" -v b="$f32f" 'BEGIN { print a / b }')" "$f32c" "$b16c" \
    "$(awk -v a="$b16c" -v b="$f32c" 'BEGIN { print a / b }')"
done
echo "images/s; ratio = bf16 / fp32 (> 1: bf16 pays off on this CPU)"
