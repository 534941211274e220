#!/usr/bin/env bash
# Builds if needed and runs the whole test suite (GoogleTest through CTest).
#
#   tools/test.sh [CTEST ARGS...]              the Release build in build/
#   tools/test.sh --sanitize [CTEST ARGS...]   AddressSanitizer + UndefinedBehaviorSanitizer
#                                              build in build-sanitize/ (clang; the fuzz
#                                              targets of tools/fuzz.sh are built there too)
#
# Sanitized runs: any ASan/UBSan report fails the test that triggered it
# (halt_on_error); tools/sanitize.supp lists the reports of LibTorch itself
# that are not ours, each with its reason.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
flags=()
if [[ ${1:-} == --sanitize ]]; then
  shift
  build=build-sanitize
  source tools/sanitize_flags.sh
  flags=("${sanitize_cmake_flags[@]}")
  # Leak checking is off: LibTorch keeps process-lifetime allocations (operator
  # registry, thread pools) that LeakSanitizer reports at exit.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_odr_violation=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:suppressions=$PWD/tools/sanitize.supp}
else
  flags=(-DCMAKE_BUILD_TYPE=Release)
fi
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S . -B "$build" "${flags[@]}"
fi
cmake --build "$build" -j"$(nproc)"
# The sanitized run leaves out the tests labelled not_sanitized: they time
# code that is not ours (tests/CMakeLists.txt says which and why).
skip=()
[[ $build != build-sanitize ]] || skip=(-LE not_sanitized)
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "${skip[@]}" "$@"
