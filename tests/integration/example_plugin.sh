#!/usr/bin/env bash
# Installs the SDK from the build tree into a scratch prefix, builds
# examples/drop-policy and examples/cache-backend against that prefix alone,
# runs the SDK's cache conformance suite on the example cache, and trains
# with both plugins (a drop cached by the example backend).
# Usage: example_plugin.sh BUILD_DIR SOURCE_DIR LDROP FIXTURE_TOOL
set -euo pipefail
build=$1 src=$2 ldrop=$3 fixture=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/sdk" --component sdk > "$work/install.log"
test -f "$work/sdk/include/learndrop/sdk.h" || { echo "SDK headers not installed"; exit 1; }
for example in drop-policy cache-backend; do
  cmake -S "$src/examples/$example" -B "$work/$example" -DCMAKE_PREFIX_PATH="$work/sdk" > "$work/configure.log" \
    || { cat "$work/configure.log"; exit 1; }
  cmake --build "$work/$example" -j2 > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
done
policy=$(find "$work/drop-policy" -name 'ldp_plateau.so' | head -1)
cache=$(find "$work/cache-backend" -name 'ldp_row_list.so' | head -1)
test -n "$policy" && test -n "$cache" || { echo "plugin libraries not built"; exit 1; }
conformance="$work/cache-backend/row_list_conformance"
test -x "$conformance" || { echo "the example cache's conformance test was not built (GTest missing?)"; exit 1; }
"$conformance" --gtest_brief=1 || { echo "the example cache fails the SDK's conformance suite"; exit 1; }

"$fixture" "$work/data"
cat > "$work/run.yaml" <<YAML
experiment: {name: example, seed: 1}
runtime: {threads: 1}
model: {plugin: vgg, variant: vgg11_bn, width: 0.0625, classifier: compact}
dataset: {plugin: mnist, root: $work/data}
train: {epochs: 3, batch_size: 32, lr: 0.05}
policy: {plugin: plateau, threshold: 1.0e9, patience: 1, keep_stages: 5, drop_mode: cache, cost_guard: false}
cache: {plugin: row-list}
YAML
export LEARNDROP_PLUGIN_PATH="$(dirname "$policy"):$(dirname "$cache")"
"$ldrop" plugins describe plateau
"$ldrop" run "$work/run.yaml" --out "$work/run" --quiet
# plateau asks for every stage and applies no guard itself: the host's
# keep_stages (5 of the 8 stages) lets 3 go.
grep -q '"dropped_stages": 3' "$work/run/summary.json" || { cat "$work/run/summary.json"; echo "expected 3 dropped stages (the host's keep_stages)"; exit 1; }
grep -q '"cache": "row-list' "$work/run/summary.json" || { cat "$work/run/summary.json"; echo "expected the drop cached by row-list"; exit 1; }
echo "example plugins built against the installed SDK; the example cache passed conformance and cached a 3-stage drop, held to 3 by the host's keep_stages"
