#!/usr/bin/env bash
# Installs the SDK from the build tree into a scratch prefix, builds
# examples/drop-policy against that prefix alone, and trains with the plugin.
# Usage: example_plugin.sh BUILD_DIR SOURCE_DIR LDROP FIXTURE_TOOL
set -euo pipefail
build=$1 src=$2 ldrop=$3 fixture=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cmake --install "$build" --prefix "$work/sdk" --component sdk > "$work/install.log"
test -f "$work/sdk/include/learndrop/sdk.h" || { echo "SDK headers not installed"; exit 1; }
cmake -S "$src/examples/drop-policy" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/sdk" > "$work/configure.log" \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/example" -j2 > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
plugin=$(find "$work/example" -name 'ldp_freeze_after.so' | head -1)
test -n "$plugin" || { echo "plugin library not built"; exit 1; }

"$fixture" "$work/data"
cat > "$work/run.yaml" <<YAML
experiment: {name: example, seed: 1}
runtime: {threads: 1}
model: {plugin: vgg, variant: vgg11_bn, width: 0.0625, classifier: compact}
dataset: {plugin: mnist, root: $work/data}
train: {epochs: 3, batch_size: 32, lr: 0.05}
policy: {plugin: freeze-after, epoch: 1, stages: 3}
YAML
LEARNDROP_PLUGIN_PATH="$(dirname "$plugin")" "$ldrop" plugins describe freeze-after
LEARNDROP_PLUGIN_PATH="$(dirname "$plugin")" "$ldrop" run "$work/run.yaml" --out "$work/run" --quiet
grep -q '"dropped_stages": 3' "$work/run/summary.json" || { cat "$work/run/summary.json"; echo "expected 3 dropped stages"; exit 1; }
echo "example plugin built against the installed SDK and dropped 3 stages"
