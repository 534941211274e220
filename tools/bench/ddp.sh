#!/usr/bin/env bash
# Data-parallel training on this machine, side by side in one script:
# 1 rank x 2 threads against 2 ranks x 1 thread (ldrop run --nproc 2, c10d
# Gloo over localhost) on the quickstart, without a drop (policy none) and
# with one (policy fixed: cut C at the end of epoch 1). Prints a table of
# train time, wall time, FLOPs and test accuracy, and the ratio of the
# 2-rank run's train time to the 1-rank run's (below 1: data parallelism pays
# on this machine; above: its all-reduces and split batches cost more than a
# second thread inside one process).
#
# Usage: tools/bench/ddp.sh [EPOCHS] [CUT]   (default 3 epochs, cut 4 of vgg11_bn's 8 stages)
set -euo pipefail
cd "$(dirname "$0")/../.."
epochs=${1:-3}
cut=${2:-4}
ldrop=build/bin/ldrop
[[ -x $ldrop ]] || bash tools/setup.sh
out=bench-runs/ddp-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

common=(--quiet --set train.epochs="$epochs" --set train.checkpoint_every=0)
nodrop=(--set policy.plugin=none)
drop=(--set policy.plugin=fixed --set policy.cut="$cut" --set policy.epoch=1)
run() {  # NAME ARGS...
  local name=$1
  shift
  echo "== $name" >&2
  "$ldrop" run configs/quickstart.yaml "${common[@]}" --out "$out/$name" "$@" > "$out/$name.log" 2>&1 ||
    { cat "$out/$name.log" >&2; exit 1; }
}
run 1x2-none "${nodrop[@]}" --set runtime.threads=2
run 2x1-none "${nodrop[@]}" --set runtime.threads=1 --nproc 2
run 1x2-drop "${drop[@]}" --set runtime.threads=2
run 2x1-drop "${drop[@]}" --set runtime.threads=1 --nproc 2

/usr/bin/python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
def summary(name):
    with open(f"{out}/{name}/summary.json") as f:
        return json.load(f)
print(f"{'run':<10} {'ranks x threads':>15} {'train s':>9} {'wall s':>8} {'fwd GFLOP':>10} {'cut':>4} {'test acc':>9}")
rows = {}
for name in ["1x2-none", "2x1-none", "1x2-drop", "2x1-drop"]:
    s = summary(name)
    rows[name] = s
    print(f"{name:<10} {s['world_size']:>9} x {s['threads']:<3} {s['train_seconds']:>9.1f} {s['wall_seconds']:>8.1f} "
          f"{s['forward_flops'] / 1e9:>10.1f} {s['dropped_stages']:>4} {100 * s['test_accuracy']:>8.2f}%")
print()
for kind in ["none", "drop"]:
    one, two = rows[f"1x2-{kind}"], rows[f"2x1-{kind}"]
    print(f"{'without' if kind == 'none' else 'with'} a drop: train time 2 ranks x 1 thread / 1 rank x 2 threads = "
          f"{two['train_seconds'] / one['train_seconds']:.2f}  (wall {two['wall_seconds'] / one['wall_seconds']:.2f})")
EOF
echo "runs in $out"
