#!/usr/bin/env bash
# The GPU checks of issue 11, run on a GPU machine after the device kit built
# the tree (../shared/device-kit/README.md, docs/gpu.md):
#   1. the CUDA tests (they skip themselves elsewhere) and the device-generic ones;
#   2. a short real training with a drop on the GPU, once per cache tier
#      (device, ram, disk), on CIFAR-10 ($LEARNDROP_DATA/cifar10) or, without
#      it, a generated CIFAR-format set (then only the mechanics are checked);
#   3. tools/bench/gpu.sh, the step-time table against plain PyTorch.
# Logs go to $OUT (default /tmp/gpu-check); summary.txt lists every step.
# Well under 10 minutes on an H100/H200.
#
# Usage (from the project root):  source /tmp/deps/env.sh; OUT=/tmp/dk bash tools/gpu/check.sh
#   BUILD=/tmp/ldrop-build (the kit's build folder)   PRECISION=bf16   STEPS=30
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-/tmp/ldrop-build}
OUT=${OUT:-/tmp/gpu-check}
PRECISION=${PRECISION:-bf16}
STEPS=${STEPS:-30}
mkdir -p "$OUT"
summary=$OUT/summary.txt
: >"$summary"
failed=0
step() {  # step NAME TIMEOUT COMMAND...: runs, logs to $OUT/NAME.log, records the result
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  printf '%-28s %s (%ss)\n' "$name" "$([[ $rc == 0 ]] && echo pass || echo "FAIL rc=$rc")" $((SECONDS - start)) |
    tee -a "$summary"
  [[ $rc == 0 ]] || failed=1
}
ldrop=$BUILD/bin/ldrop
[[ -x $ldrop ]] || { echo "check.sh: no $ldrop; build with the device kit first" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1
echo "GPU: $(head -1 "$OUT/gpu.txt")" | tee -a "$summary"

# 1. Tests: the CUDA ones must run here, not skip. The one test of a machine
# without a GPU (the missing-GPU error) is left out: it skips on a GPU machine.
step tests-cuda 240 "$BUILD/bin/ldrop_tests" \
  --gtest_filter='Device*:Precision*:GradScaler*:DeviceStager*:FeatureShiftGather*:*Cuda*:*CacheBackends*-Device.AMissingGpuIsAClearErrorNamingTheKey'
if grep -q '\[  SKIPPED \]' "$OUT/tests-cuda.log"; then
  echo "tests-cuda: some tests skipped on a GPU machine:" | tee -a "$summary"
  grep '\[  SKIPPED \]' "$OUT/tests-cuda.log" | tee -a "$summary"
  failed=1
fi

# 2. A short training with a drop on the GPU, per cache tier.
data=${LEARNDROP_DATA:-}
if [[ -n $data && -d $data/cifar10 ]]; then
  root=$data/cifar10
  echo "data: real CIFAR-10 at $root" | tee -a "$summary"
else
  root=$OUT/cifar-fixture
  "$BUILD/bin/ldrop_test_fixture" "$root" --cifar 1000
  echo "data: no \$LEARNDROP_DATA/cifar10; a generated CIFAR-format set (mechanics only)" | tee -a "$summary"
fi
for tier in device ram disk; do
  step "train-$tier" 180 "$ldrop" run configs/cifar10-resnet18.yaml --out "$OUT/run-$tier" \
    --set dataset.root="$root" --set runtime.device=cuda --set train.precision="$PRECISION" \
    --set train.epochs=3 --set policy.plugin=fixed --set policy.cut=4 --set policy.epoch=1 \
    --set cache.plugin="$tier" --set runtime.threads=8
done
for tier in device ram disk; do
  grep -h '"test_accuracy"\|"device"\|"train_seconds"' "$OUT/run-$tier/summary.json" 2>/dev/null |
    tr -d ' \n' | sed "s/^/$tier: /" | tee -a "$summary"
  echo | tee -a "$summary"
done

# 3. Step times against plain PyTorch.
step bench-gpu 300 env LDROP="$ldrop" bash tools/bench/gpu.sh "$PRECISION" "$STEPS"
cat "$OUT/bench-gpu.log" >>"$summary"

echo "logs in $OUT; $( ((failed)) && echo 'SOME CHECKS FAILED' || echo 'all checks passed')" | tee -a "$summary"
exit "$failed"
