#!/usr/bin/env bash
# Trains the quickstart config twice in a row on this machine: full training
# (policy none) and Learn&Drop, then prints wall time, forward FLOPs and
# accuracy of both and the speedup ratio. Extra arguments go to both runs
# (e.g. --set train.epochs=3).
#
# Usage: tools/bench/speedup.sh [CONFIG] [--set KEY=VALUE]...
set -euo pipefail
cd "$(dirname "$0")/../.."
config=configs/quickstart.yaml
if [[ $# -gt 0 && $1 != --* ]]; then config=$1; shift; fi
ldrop=build/bin/ldrop
[[ -x $ldrop ]] || bash tools/setup.sh
out=bench-runs/speedup-$(date +%Y%m%d-%H%M%S)
echo "speedup: $config, runs in $out"
"$ldrop" run "$config" "$@" --set policy.plugin=none --out "$out/none" --quiet
"$ldrop" run "$config" "$@" --out "$out/learn-drop" --quiet
echo
"$ldrop" compare "$out/none" "$out/learn-drop" | tee "$out/table.txt"
