#!/usr/bin/env bash
# Fuzzes LearnDrop's parsers with libFuzzer (clang), under AddressSanitizer +
# UndefinedBehaviorSanitizer, in build-sanitize/ beside the sanitized tests
# (tools/sanitize_flags.sh):
#   config      the YAML config loader with --set overrides
#   suite       the suite file
#   idx         idx files of the mnist plugin, raw and .gz
#   cifar       CIFAR-10 binary batches
#   jpeg        Imagenette JPEGs (libjpeg-turbo, the decoded-size bound)
#   disk_cache  the disk cache's header and row reader
# Each target starts from its committed seed corpus (tests/fuzz/corpus/NAME/)
# and grows a working corpus in build-sanitize/corpus/NAME/. A crash, a sanitizer
# report, or an exception that is not ld::Error fails the target; the input
# that did it is saved in build-sanitize/artifacts/NAME/. See docs/testing.md.
#
# Usage: tools/fuzz.sh [SECONDS] [TARGET...]   each target SECONDS (default 30), all targets by default
#        tools/fuzz.sh --seeds                 rewrite the committed seed corpora
set -euo pipefail
cd "$(dirname "$0")/.."
all=(config suite idx cifar jpeg disk_cache)
build=build-sanitize

seeds=0
if [[ ${1:-} == --seeds ]]; then
  seeds=1
  shift
fi
seconds=${1:-30}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2; }
shift || true
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (targets: ${all[*]})" >&2; exit 2; }
done

# The fuzz targets live in build-sanitize/, beside the sanitized tests: one
# clang build with ASan, UBSan and libFuzzer's coverage (tools/sanitize_flags.sh).
source tools/sanitize_flags.sh
if [[ ! -f $build/CMakeCache.txt ]]; then
  mkdir -p "$build"
  cmake -S . -B "$build" "${sanitize_cmake_flags[@]}" > "$build/configure.log" 2>&1 ||
    { cat "$build/configure.log" >&2; exit 1; }
fi
cmake --build "$build" -j"$(nproc)" --target fuzz_targets

# LibTorch keeps allocations for the whole process (thread pools, caches of
# kernels): per-input leak checks would report those, so leaks are not checked.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if ((seeds)); then
  for t in "${targets[@]}"; do
    # regress-* are inputs that once crashed a target: kept, not rewritten
    find "tests/fuzz/corpus/$t" -type f ! -name 'regress-*' -delete 2>/dev/null || true
    LDROP_FUZZ_WRITE_SEEDS=tests/fuzz/corpus/$t "$build/bin/fuzz_$t"
  done
  [[ " ${targets[*]} " != *" config "* ]] || cp configs/*.yaml configs/paper/base.yaml tests/fuzz/corpus/config/
  ls tests/fuzz/corpus/* | head -50
  exit 0
fi

printf '| %-10s | %7s | %11s | %8s | %6s | %s\n' target seconds inputs "inputs/s" corpus result
printf '|%s\n' "$(printf -- '---|%.0s' {1..6})"
failed=0
for t in "${targets[@]}"; do
  corpus=$build/corpus/$t
  artifacts=$build/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  cp -n tests/fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
  log=$build/fuzz_$t.log
  start=$SECONDS
  rc=0
  "$build/bin/fuzz_$t" "$corpus" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 > "$log" 2>&1 || rc=$?
  took=$((SECONDS - start))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  runs=${runs:-0}
  rate=$(awk -v r="$runs" -v s="$took" 'BEGIN { printf "%.0f", (s > 0 ? r / s : r) }')
  size=$(find "$corpus" -type f | wc -l)
  if ((rc == 0)); then
    result="0 crashes"
  else
    failed=1
    artifact=$(ls -t "$artifacts" | head -1 | sed "s|^|$artifacts/|")
    result="CRASH (exit $rc): $artifact, log $log"
    # CI keeps only what is printed: the report and the input itself, so that
    # a crash found there can be reproduced without its build folder.
    {
      echo "---- $t: the report in $log (its start and its end)"
      grep -v -e '^#[0-9]' -e '^INFO:' "$log" > "$log.report" || true
      awk '/ERROR:|runtime error|^fuzz: |deadly signal/ && !n { n = NR } n && NR < n + 25' "$log.report"
      echo "[...]"
      tail -n 10 "$log.report"
      if [[ -f $artifact ]]; then
        echo "---- $t: the input ($(stat -c %s "$artifact") bytes), base64; decode with: base64 -d > input"
        head -c 4096 "$artifact" | base64
      fi
      echo "----"
    } >&2
  fi
  printf '| %-10s | %7s | %11s | %8s | %6s | %s\n' "$t" "$took" "$runs" "$rate" "$size" "$result"
done
if ((failed)); then
  echo "fuzz.sh: a target crashed; reproduce with: $build/bin/fuzz_NAME ARTIFACT (the log names it)" >&2
  exit 1
fi
