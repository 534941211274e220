#!/usr/bin/env bash
# A cache build against the same stages inside a training step (issue 29:
# per FLOP a build runs at least 0.9x their rate). For each cut:
#  1. `ldrop model bench --cut K` times a training step of the whole model and
#     one from cut K, on random data; their difference is what stages 0..K-1
#     cost inside a step, 3x their forward FLOPs per image: the baseline rate;
#  2. a real run (configs/transfer/pretrain-cifar5.yaml: ResNet-18, CIFAR
#     stem, width 0.25, 10,000 CIFAR-10 images with crop + flip, so 2 views
#     per sample) drops stages 0..K-1 into a RAM cache after epoch 1
#     (policy fixed, drop_mode cache) and reports the build: its time, the
#     part of it spent allocating the cache (its pages faulted in) and its
#     FLOPs (summary.json).
# Prints the build's GFLOP/s with and without the allocation and each as a
# ratio of the baseline, per cut. Repeat it (--repeat N) on a shared machine:
# runs here drift by +-20 %.
#
# Data: $LEARNDROP_DATA (default ../shared/data) with cifar10/.
# Usage: tools/bench/build.sh [--repeat N] [CUT...]   (default cuts 3 5 7)
set -euo pipefail
cd "$(dirname "$0")/../.."
repeat=1
if [[ ${1:-} == --repeat ]]; then repeat=$2; shift 2; fi
cuts=("$@")
[[ ${#cuts[@]} -gt 0 ]] || cuts=(3 5 7)
export LEARNDROP_DATA=${LEARNDROP_DATA:-../shared/data}
ldrop=build/bin/ldrop
[[ -x $ldrop ]] || bash tools/setup.sh
out=bench-runs/build-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

for r in $(seq 1 "$repeat"); do
  cut_args=()
  for k in "${cuts[@]}"; do cut_args+=(--cut "$k"); done
  $ldrop model bench --variant resnet18 --stem cifar --width 0.25 --input-size 32 --num-classes 5 --batch 128 \
    --steps 30 --threads 2 "${cut_args[@]}" > "$out/model-bench-$r.txt"
  for k in "${cuts[@]}"; do
    $ldrop run configs/transfer/pretrain-cifar5.yaml --quiet --out "$out/run-$r-cut$k" --set train.epochs=2 \
      --set runtime.threads=2 --set policy.plugin=fixed --set policy.cut="$k" --set policy.epoch=1 \
      --set policy.drop_mode=cache --set policy.cost_guard=false > /dev/null
  done
done

/usr/bin/python3 - "$out" "$repeat" "${cuts[@]}" <<'EOF'
import json, sys
out, repeat, cuts = sys.argv[1], int(sys.argv[2]), [int(c) for c in sys.argv[3:]]
print(f"cache builds against the same stages in a training step ({out}; 2 threads)\n")
print(f"{'cut':>3} {'run':>3} {'cache':>10} {'step GFLOP/s':>13} {'build s':>8} {'alloc s':>8} "
      f"{'build GFLOP/s':>14} {'vs step':>8} {'w/o alloc':>10} {'vs step':>8}")
for r in range(1, repeat + 1):
    # model bench rows: cut, name, left %, s/step, img/s, speedup, predicted, build GFLOP/s, vs step, vs prefix
    rows = {}
    for line in open(f"{out}/model-bench-{r}.txt"):
        f = line.split()
        if len(f) >= 11 and f[0].isdigit() and f[9].endswith("x") and f[9] != "-":
            rows[int(f[0])] = float(f[7]) / float(f[9][:-1])  # the prefix's rate in a step
    for k in cuts:
        d = json.load(open(f"{out}/run-{r}-cut{k}/summary.json"))["drops"][0]
        flops, secs, alloc = d["cache_build_flops"], d["cache_build_seconds"], d["cache_allocate_seconds"]
        step = rows.get(k)
        all_rate, core_rate = flops / secs / 1e9, flops / (secs - alloc) / 1e9
        ratio = lambda x: f"{x / step:7.2f}x" if step else "      -"
        print(f"{k:>3} {r:>3} {d['cache_bytes'] / 2**20:7.0f} MiB {step or 0:13.1f} {secs:8.2f} {alloc:8.2f} "
              f"{all_rate:14.1f} {ratio(all_rate):>8} {core_rate:10.1f} {ratio(core_rate):>8}")
EOF
