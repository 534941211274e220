#!/usr/bin/env bash
# The reference runs of a restructuring: run them with the ldrop of one build,
# then with another's, and compare (tools/compare_runs.py). A change that only
# moves code must leave every metric and decision identical, timing aside
# (issue 31: "metrics ... identical to before the restructuring").
#
#   tools/refactor_runs.sh LDROP OUT      e.g. build/bin/ldrop /tmp/after
#   tools/compare_runs.py /tmp/before /tmp/after
#
# Runs (2 threads each, whatever the machine; threads change the sums):
#   quickstart   configs/quickstart.yaml: drops with a RAM cache
#   realistic    the first Learn&Drop run of configs/paper/realistic.yaml
#                (ResNet-18, seed 1), on $LEARNDROP_DATA/cifar10
#   online       configs/online/cifar10.yaml: a stream whose cache grows
#   resumed      the quickstart stopped by SIGTERM after its first drop
#                (test seam, docs/testing.md) and resumed from its checkpoint
# Data: LEARNDROP_DATA (default ../shared/data). About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ldrop=${1:?usage: tools/refactor_runs.sh LDROP OUT}
out=${2:?usage: tools/refactor_runs.sh LDROP OUT}
export LEARNDROP_DATA=${LEARNDROP_DATA:-../shared/data}
[[ -d $LEARNDROP_DATA/cifar10 ]] || { echo "refactor_runs: no $LEARNDROP_DATA/cifar10 (set LEARNDROP_DATA)" >&2; exit 2; }
rm -rf "$out"
mkdir -p "$out"
common=(--quiet --set runtime.threads=2)
run() {  # NAME ARGS...
  local name=$1
  shift
  echo "refactor_runs: $name" >&2
  "$ldrop" run "$@" "${common[@]}" --out "$out/$name" > "$out/$name.log" 2>&1 || {
    tail -20 "$out/$name.log" >&2
    return 1
  }
}
run quickstart configs/quickstart.yaml
run realistic configs/paper/realistic-base.yaml --set policy.plugin=learn-drop --set experiment.seed=1
run online configs/online/cifar10.yaml
# Stopped mid-epoch 5 (157 steps an epoch; the first drop comes at epoch 4),
# then resumed: the resumed run must equal the same run uninterrupted.
rc=0
LEARNDROP_TEST_SIGTERM_AT_STEP=700 "$ldrop" run configs/quickstart.yaml "${common[@]}" \
  --set train.checkpoint_every=1 --out "$out/resumed" > "$out/resumed.log" 2>&1 || rc=$?
((rc != 0)) || { echo "refactor_runs: the run meant to be stopped at step 700 finished" >&2; exit 1; }
"$ldrop" run --resume "$out/resumed" --quiet >> "$out/resumed.log" 2>&1 ||
  { tail -20 "$out/resumed.log" >&2; exit 1; }
echo "refactor_runs: done in $out" >&2
